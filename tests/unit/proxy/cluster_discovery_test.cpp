// proxy/cluster: how successive endpoint sets become snapshots. Hosts are kept by address (a host that
// stays keeps its identity and counters), changes are counted, and SRV priority groups share the load
// by their health.

#include <gtest/gtest.h>

#include "proxy/cluster.hpp"
#include "proxy/load_balancer/maglev.hpp"
#include "tests/support/scripted_resolver.hpp"

namespace drover::proxy {
namespace {

namespace asio = boost::asio;

using drover::testing::ScriptedResolver;

discovery::Endpoint endpoint(const char* ip, std::uint16_t port, std::uint32_t weight = 1,
                             std::uint32_t priority = 0) {
    return discovery::Endpoint{{asio::ip::make_address(ip), port}, weight, priority};
}

class ClusterDiscoveryTest : public ::testing::Test {
protected:
    ClusterDiscoveryTest() {
        config::Cluster config;
        config.name = "web";
        // Discovery alone: no probes (no sockets in this test), no ramp, weights as listed.
        config.health_check.enabled = false;
        config.slow_start = std::chrono::milliseconds::zero();
        config.outlier_detection.max_ejection_percent = 1.0;
        auto scripted = std::make_unique<ScriptedResolver>();
        resolver = scripted.get();
        cluster = std::make_unique<Cluster>(
            config, std::move(scripted),
            [this](std::shared_ptr<const ClusterSnapshot> s) { published.push_back(s); }, control);
        cluster->start();
    }

    std::string hosts() const {
        std::string out;
        for (const auto& h : cluster->snapshot()->hosts) {
            if (!out.empty()) { out += ' '; }
            out += h.host->name() + "/w" + std::to_string(h.weight / kWeightScale);
        }
        return out;
    }

    asio::io_context control;
    ScriptedResolver* resolver = nullptr;
    std::unique_ptr<Cluster> cluster;
    std::vector<std::shared_ptr<const ClusterSnapshot>> published;
};

TEST_F(ClusterDiscoveryTest, NoHostsUntilDiscoveryAnswers) {
    EXPECT_TRUE(cluster->snapshot()->hosts.empty());
    EXPECT_TRUE(published.empty());
    EXPECT_EQ(cluster->discovery_status().kind, "scripted");
}

TEST_F(ClusterDiscoveryTest, HostsAreDiffedByAddressAndChangesCounted) {
    resolver->push({endpoint("127.0.0.2", 80), endpoint("127.0.0.3", 80)});
    ASSERT_EQ(published.size(), 1u);
    EXPECT_EQ(hosts(), "127.0.0.2:80/w1 127.0.0.3:80/w1");
    const auto survivor = cluster->snapshot()->hosts[1].host;
    survivor->stats().connections_total.store(7);

    resolver->push({endpoint("127.0.0.3", 80, 4), endpoint("127.0.0.4", 80)});
    ASSERT_EQ(published.size(), 2u);
    EXPECT_EQ(hosts(), "127.0.0.3:80/w4 127.0.0.4:80/w1");
    EXPECT_EQ(cluster->snapshot()->hosts[0].host, survivor);   // same Host: its counters carry on
    EXPECT_EQ(survivor->stats().connections_total.load(), 7u);
    EXPECT_GT(published[1]->version, published[0]->version);

    const auto& changes = cluster->host_changes();
    EXPECT_EQ(changes.added, 3u);
    EXPECT_EQ(changes.removed, 1u);
    EXPECT_EQ(changes.weight, 1u);

    // The old snapshot still holds the removed host: live connections keep it alive.
    EXPECT_EQ(published[0]->hosts[0].host->name(), "127.0.0.2:80");
}

TEST_F(ClusterDiscoveryTest, AHealthyBestPriorityGroupServesAlone) {
    resolver->push({endpoint("127.0.0.5", 9001, 5, 10), endpoint("127.0.0.6", 9002, 1, 10),
                    endpoint("127.0.0.7", 9003, 1, 20)});
    EXPECT_EQ(hosts(), "127.0.0.5:9001/w5 127.0.0.6:9002/w1");
    // The best group disappears from DNS: the next one serves.
    resolver->push({endpoint("127.0.0.7", 9003, 1, 20)});
    EXPECT_EQ(hosts(), "127.0.0.7:9003/w1");
}

TEST_F(ClusterDiscoveryTest, TheNextPriorityGroupServesWhileTheBestHasNoAvailableHost) {
    resolver->push({endpoint("127.0.0.5", 9001, 1, 10), endpoint("127.0.0.6", 9002, 1, 10),
                    endpoint("127.0.0.7", 9003, 1, 20)});
    const auto best = cluster->snapshot()->hosts;
    ASSERT_EQ(best.size(), 2u);
    // Real traffic fails on both hosts of the best group: both are ejected, the backup group takes over.
    for (const auto& entry : best) {
        for (int i = 0; i < 3; ++i) { cluster->on_outcome(entry.host, health::Outcome::connect_failed); }
    }
    EXPECT_EQ(hosts(), "127.0.0.7:9003/w1");
    EXPECT_EQ(cluster->outlier().ejected_count(), 2u);
}

TEST_F(ClusterDiscoveryTest, PanicIsTheClustersNotTheBestGroups) {
    // Two of the best group's three hosts ejected: that group has 1 of 3 up, but the cluster has 2 of
    // 4, not below the 50% threshold. No panic: the group serves on its one available host, rather
    // than on its dead ones too (use_all) or on none (fail_closed), and what its health (1.4 x 1/3)
    // does not cover spills to the backup group.
    resolver->push({endpoint("127.0.0.5", 9001, 1, 10), endpoint("127.0.0.6", 9002, 1, 10),
                    endpoint("127.0.0.7", 9003, 1, 10), endpoint("127.0.0.8", 9004, 1, 20)});
    const auto best = cluster->snapshot()->hosts;
    ASSERT_EQ(best.size(), 3u);
    for (std::size_t h = 0; h < 2; ++h) {
        for (int i = 0; i < 3; ++i) { cluster->on_outcome(best[h].host, health::Outcome::connect_failed); }
    }
    const auto& hosts = cluster->snapshot()->hosts;
    ASSERT_EQ(hosts.size(), 2u);
    EXPECT_EQ(hosts[0].host->name(), "127.0.0.7:9003");
    EXPECT_EQ(hosts[1].host->name(), "127.0.0.8:9004");
    // Weights 1 + 1 shared 46.7 / 53.3, in hundredths.
    EXPECT_EQ(hosts[0].weight, 93u);
    EXPECT_EQ(hosts[1].weight, 107u);
    EXPECT_FALSE(cluster->snapshot()->panic);
    EXPECT_DOUBLE_EQ(cluster->selection().healthy_fraction, 0.5);
    ASSERT_EQ(cluster->selection().priorities.size(), 2u);
    EXPECT_NEAR(cluster->selection().priorities[0].load, 1.4 / 3, 1e-9);
}

TEST_F(ClusterDiscoveryTest, AFailureStreakIsEjectedAtOnceAndASuccessResetsIt) {
    resolver->push({endpoint("127.0.0.2", 80), endpoint("127.0.0.3", 80)});
    const auto host = cluster->snapshot()->hosts[0].host;
    cluster->on_outcome(host, health::Outcome::timeout);
    cluster->on_outcome(host, health::Outcome::timeout);
    EXPECT_TRUE(host->stats().failing.load());   // workers now report successes too
    cluster->on_outcome(host, health::Outcome::success);
    EXPECT_FALSE(host->stats().failing.load());
    cluster->on_outcome(host, health::Outcome::status_5xx);
    cluster->on_outcome(host, health::Outcome::status_5xx);
    EXPECT_EQ(hosts(), "127.0.0.2:80/w1 127.0.0.3:80/w1");
    cluster->on_outcome(host, health::Outcome::status_5xx);
    EXPECT_EQ(hosts(), "127.0.0.3:80/w1");
    const auto* record = cluster->find_host("127.0.0.2:80");
    ASSERT_NE(record, nullptr);
    EXPECT_EQ(record->events.back().what, "ejected");
}

TEST_F(ClusterDiscoveryTest, AnEmptySetEmptiesTheCluster) {
    // Only max_stale sends one; resolvers never report a failure as an empty set.
    resolver->push({endpoint("127.0.0.2", 80)});
    resolver->push({});
    EXPECT_TRUE(cluster->snapshot()->hosts.empty());
    EXPECT_EQ(cluster->host_changes().removed, 1u);
}

// A maglev table takes milliseconds to build: a rebuild that leaves the hosts and their weights as
// they were (a DNS refresh with the same answer) keeps the table; any change to them makes a new one.
config::Cluster maglev_config() {
    config::Cluster config;
    config.name = "web";
    config.load_balancing = config::LbPolicy::maglev;
    config.health_check.enabled = false;
    config.slow_start = std::chrono::milliseconds::zero();
    return config;
}

TEST(ClusterMaglev, TableIsKeptWhenHostsAndWeightsAreUnchanged) {
    asio::io_context control;
    const auto config = maglev_config();
    auto scripted = std::make_unique<ScriptedResolver>();
    auto* resolver = scripted.get();
    std::vector<std::shared_ptr<const ClusterSnapshot>> published;
    Cluster cluster(config, std::move(scripted), [&](std::shared_ptr<const ClusterSnapshot> s) { published.push_back(s); },
                    control);
    cluster.start();

    resolver->push({endpoint("127.0.0.2", 80), endpoint("127.0.0.3", 80)});
    resolver->push({endpoint("127.0.0.2", 80), endpoint("127.0.0.3", 80)});
    ASSERT_EQ(published.size(), 2u);
    ASSERT_NE(published[0]->maglev, nullptr);
    EXPECT_GT(published[1]->version, published[0]->version);   // still a new snapshot...
    EXPECT_EQ(published[1]->maglev, published[0]->maglev);     // ...with the same table

    resolver->push({endpoint("127.0.0.2", 80, 2), endpoint("127.0.0.3", 80)});   // reweighted
    resolver->push({endpoint("127.0.0.2", 80, 2), endpoint("127.0.0.4", 80)});   // replaced
    resolver->push({endpoint("127.0.0.2", 80, 2)});                              // removed
    ASSERT_EQ(published.size(), 5u);
    for (std::size_t i = 2; i < published.size(); ++i) {
        ASSERT_NE(published[i]->maglev, nullptr);
        EXPECT_NE(published[i]->maglev, published[i - 1]->maglev) << "snapshot " << i;
        EXPECT_EQ(published[i]->maglev->host_count(), published[i]->hosts.size()) << "snapshot " << i;
    }
    cluster.stop();
}

// Slow start and overload do not reshape maglev's table: they hold back a share of the host's keys
// (HostEntry::key_share), relative to the least held-back host, so hosts that all ramp at once (at
// start-up) hold nothing back.
TEST(ClusterMaglev, HeldBackHostsKeepTheirSlotsAndPassOnAShareOfTheirKeys) {
    asio::io_context control;
    auto config = maglev_config();
    config.slow_start = std::chrono::seconds(30);
    auto scripted = std::make_unique<ScriptedResolver>();
    auto* resolver = scripted.get();
    Cluster cluster(config, std::move(scripted), [](std::shared_ptr<const ClusterSnapshot>) {}, control);
    cluster.start();
    resolver->push({endpoint("127.0.0.2", 80), endpoint("127.0.0.3", 80)});
    for (const auto& entry : cluster.snapshot()->hosts) { EXPECT_EQ(entry.key_share, HostEntry::kFullShare); }
    const auto table = cluster.snapshot()->maglev;
    // Overloaded (a 503 with Retry-After): its share of keys drops, its slots stay.
    cluster.on_overload(cluster.snapshot()->hosts[0].host, std::chrono::seconds(5));
    const auto& hosts = cluster.snapshot()->hosts;
    ASSERT_EQ(hosts.size(), 2u);
    EXPECT_LT(hosts[0].key_share, HostEntry::kFullShare);
    EXPECT_GT(hosts[0].key_share, 0u);
    EXPECT_EQ(hosts[1].key_share, HostEntry::kFullShare);
    EXPECT_EQ(cluster.snapshot()->maglev, table);
    cluster.stop();
}

// Maglev takes configured weights (its table ignores slow start and overload), but spilled load across
// priority groups still shapes them: the backup group gets its share, not its raw weight.
TEST(ClusterMaglev, PriorityGroupsShareTheTableByLoad) {
    asio::io_context control;
    auto config = maglev_config();
    config.outlier_detection.max_ejection_percent = 1.0;
    auto scripted = std::make_unique<ScriptedResolver>();
    auto* resolver = scripted.get();
    Cluster cluster(config, std::move(scripted), [](std::shared_ptr<const ClusterSnapshot>) {}, control);
    cluster.start();
    resolver->push({endpoint("127.0.0.5", 9001, 1, 0), endpoint("127.0.0.6", 9002, 1, 0),
                    endpoint("127.0.0.7", 9003, 1, 0), endpoint("127.0.0.8", 9004, 3, 1)});
    EXPECT_EQ(cluster.snapshot()->hosts.size(), 3u);   // the best group alone
    for (int i = 0; i < 3; ++i) { cluster.on_outcome(cluster.snapshot()->hosts[0].host, health::Outcome::connect_failed); }
    for (int i = 0; i < 3; ++i) { cluster.on_outcome(cluster.snapshot()->hosts[0].host, health::Outcome::connect_failed); }
    // 1 of 3 left in the best group: 46.7% there, 53.3% to the backup, whose weight 3 counts for
    // nothing against the other group (weights 1 + 3 shared 46.7 / 53.3, in hundredths).
    const auto& hosts = cluster.snapshot()->hosts;
    ASSERT_EQ(hosts.size(), 2u);
    EXPECT_EQ(hosts[0].host->name(), "127.0.0.7:9003");
    EXPECT_EQ(hosts[0].weight, 187u);
    EXPECT_EQ(hosts[1].weight, 213u);
    ASSERT_NE(cluster.snapshot()->maglev, nullptr);
    EXPECT_EQ(cluster.snapshot()->maglev->host_count(), 2u);
    cluster.stop();
}

}  // namespace
}  // namespace drover::proxy
