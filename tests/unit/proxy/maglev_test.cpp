#include "proxy/load_balancer/maglev.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "proxy/load_balancer/hash.hpp"
#include "tests/unit/proxy/lb_test_support.hpp"

namespace drover::proxy {
namespace {

using testing::count_picks;
using testing::hosts_at;
using testing::index_of;
using testing::make_snapshot;
using testing::uniform;

constexpr int kKeys = 100000;

ClusterSnapshot with_table(ClusterSnapshot s) {
    s.maglev = std::make_shared<const MaglevTable>(s.hosts);
    return s;
}

std::uint64_t key(int i) { return mix64(static_cast<std::uint64_t>(i)); }

// The host (by name) each of kKeys keys maps to.
std::vector<std::string> assignment(const ClusterSnapshot& s) {
    Maglev lb(1);
    std::vector<std::string> out;
    out.reserve(kKeys);
    for (int i = 0; i < kKeys; ++i) { out.push_back(lb.choose(s, ChooseContext{{}, key(i)})->host->name()); }
    return out;
}

// How many slots of the table each host owns.
std::vector<int> slot_counts(const MaglevTable& table, std::size_t hosts) {
    std::vector<int> counts(hosts, 0);
    for (std::uint32_t slot = 0; slot < table.size(); ++slot) { ++counts[table.host_at(slot)]; }
    return counts;
}

TEST(MaglevTable, SizeIsAPrimeOfAtLeastAHundredSlotsPerHost) {
    EXPECT_EQ(MaglevTable::size_for(1), 65537u);
    EXPECT_EQ(MaglevTable::size_for(655), 65537u);
    EXPECT_EQ(MaglevTable::size_for(1000), 100003u);
    EXPECT_EQ(MaglevTable::size_for(10000), 1000003u);
    EXPECT_EQ(MaglevTable::size_for(3, 7), 307u);
    const MaglevTable table(make_snapshot(uniform(3)).hosts);
    EXPECT_EQ(table.size(), 65537u);
    EXPECT_EQ(table.host_count(), 3u);
}

TEST(MaglevTable, EqualWeightsSplitTheSlotsEvenly) {
    const auto s = make_snapshot(uniform(7));
    const MaglevTable table(s.hosts);
    for (const int c : slot_counts(table, 7)) { EXPECT_NEAR(c, 65537 / 7, 65537 / 700); }
}

TEST(MaglevTable, SlotsFollowWeights) {
    const auto s = make_snapshot({1, 2, 3, 4});
    const MaglevTable table(s.hosts);
    const auto counts = slot_counts(table, 4);
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_NEAR(counts[i], 65537.0 * static_cast<double>(i + 1) / 10, 65537 / 100) << "host " << i;
    }
}

TEST(MaglevTable, TheLightestHostStillGetsASlot) {
    std::vector<std::uint32_t> weights(8, 10000);
    weights[3] = 1;
    const auto s = make_snapshot(weights);
    const MaglevTable table(s.hosts);
    EXPECT_GE(slot_counts(table, 8)[3], 1);
}

TEST(MaglevTable, DiscoveryOrderDoesNotMatter) {
    auto s = make_snapshot(uniform(20));
    const auto before = assignment(with_table(s));
    std::reverse(s.hosts.begin(), s.hosts.end());
    EXPECT_EQ(assignment(with_table(s)), before);
}

TEST(Maglev, SameKeySameHost) {
    const auto s = with_table(make_snapshot(uniform(10)));
    Maglev a(1);
    Maglev b(2);   // another worker: the seed only drives the keyless fallback
    for (int i = 0; i < 1000; ++i) {
        const HostEntry* first = a.choose(s, ChooseContext{{}, key(i)});
        EXPECT_EQ(a.choose(s, ChooseContext{{}, key(i)}), first);
        EXPECT_EQ(b.choose(s, ChooseContext{{}, key(i)}), first);
    }
    // A rebuilt table for the same hosts (the next snapshot) agrees too.
    EXPECT_EQ(assignment(with_table(make_snapshot(uniform(10), 2))), assignment(s));
}

TEST(Maglev, KeysSpreadEvenly) {
    const auto s = with_table(make_snapshot(uniform(5)));
    std::vector<int> counts(5, 0);
    Maglev lb(1);
    for (int i = 0; i < kKeys; ++i) { ++counts[index_of(s, lb.choose(s, ChooseContext{{}, key(i)}))]; }
    for (const int c : counts) { EXPECT_NEAR(c, kKeys / 5, kKeys / 100); }
}

TEST(Maglev, WeightedKeyShares) {
    const auto s = with_table(make_snapshot({1, 3}));
    std::vector<int> counts(2, 0);
    Maglev lb(1);
    for (int i = 0; i < kKeys; ++i) { ++counts[index_of(s, lb.choose(s, ChooseContext{{}, key(i)}))]; }
    EXPECT_NEAR(counts[0], kKeys / 4, kKeys / 100);
    EXPECT_NEAR(counts[1], kKeys * 3 / 4, kKeys / 100);
}

TEST(Maglev, OneHostLeavingMovesAboutOneNthOfTheKeys) {
    constexpr int kHosts = 10;
    auto s = make_snapshot(uniform(kHosts));
    const auto before = assignment(with_table(s));
    const std::string gone = s.hosts[4].host->name();
    s.hosts.erase(s.hosts.begin() + 4);
    s.version = 2;
    const auto after = assignment(with_table(s));
    int moved = 0;
    int survivors_moved = 0;
    int survivors = 0;
    for (int i = 0; i < kKeys; ++i) {
        moved += before[i] != after[i] ? 1 : 0;
        if (before[i] != gone) {
            ++survivors;
            survivors_moved += before[i] != after[i] ? 1 : 0;
        }
    }
    EXPECT_LT(moved, kKeys * 1.5 / kHosts);                  // ~1/N: the departed host's keys...
    EXPECT_GE(moved, kKeys - survivors);                      // ...which must all move
    EXPECT_LT(survivors_moved, survivors / 50);               // and under 2% of everyone else's
}

TEST(Maglev, OneHostJoiningTakesAboutItsShare) {
    constexpr int kHosts = 10;
    auto s = make_snapshot(uniform(kHosts + 1));
    s.hosts.pop_back();
    const auto before = assignment(with_table(s));
    const auto grown = make_snapshot(uniform(kHosts + 1), 2);
    const auto after = assignment(with_table(grown));
    int moved = 0;
    for (int i = 0; i < kKeys; ++i) { moved += before[i] != after[i] ? 1 : 0; }
    EXPECT_LT(moved, kKeys * 1.5 / (kHosts + 1));
}

// Slow start (and overload) hold back a share of a host's keys: the table stays, the held-back keys go
// on to the next slot's host, and as the share grows the host gains keys without giving any back.
TEST(Maglev, AHostRampingUpTakesItsShareOfItsKeysAndOnlyGains) {
    constexpr int kHosts = 4;
    auto s = with_table(make_snapshot(uniform(kHosts)));
    const auto full = assignment(s);
    const std::string ramping = s.hosts[0].host->name();
    std::vector<std::string> previous;
    for (const double share : {0.0, 0.1, 0.25, 0.5, 0.9, 1.0}) {
        s.hosts[0].key_share = std::max<std::uint32_t>(1, static_cast<std::uint32_t>(share * HostEntry::kFullShare));
        const auto now = assignment(s);
        int on_ramping = 0;
        for (int i = 0; i < kKeys; ++i) {
            on_ramping += now[i] == ramping ? 1 : 0;
            // Keys of the other hosts stay where they were; the ramping host's go elsewhere or stay.
            if (full[i] != ramping) { ASSERT_EQ(now[i], full[i]) << "share " << share << ", key " << i; }
            if (!previous.empty() && previous[i] == ramping) { ASSERT_EQ(now[i], ramping) << "share " << share; }
        }
        EXPECT_NEAR(on_ramping, kKeys / kHosts * share, kKeys / kHosts * 0.03 + 50) << share;
        previous = now;
    }
}

TEST(Maglev, HostsThatAllHoldBackStillServeTheirKeys) {
    auto s = with_table(make_snapshot(uniform(3)));
    const auto full = assignment(s);
    for (auto& entry : s.hosts) { entry.key_share = 1; }
    Maglev lb(1);
    for (int i = 0; i < 1000; ++i) { EXPECT_EQ(lb.choose(s, ChooseContext{{}, key(i)})->host->name(), full[i]); }
}

TEST(Maglev, RetryWalksToTheNextSlotAndIsStable) {
    const auto s = with_table(make_snapshot(uniform(6)));
    Maglev lb(1);
    int different_second_choices = 0;
    const HostEntry* previous_second = nullptr;
    for (int i = 0; i < 200; ++i) {
        const HostEntry* first = lb.choose(s, ChooseContext{{}, key(i)});
        const std::vector<const discovery::Host*> tried{first->host.get()};
        const HostEntry* second = lb.choose(s, ChooseContext{tried, key(i)});
        ASSERT_NE(second, nullptr);
        EXPECT_NE(second, first);
        EXPECT_EQ(lb.choose(s, ChooseContext{tried, key(i)}), second);   // the same key retries alike
        different_second_choices += second != previous_second ? 1 : 0;
        previous_second = second;
    }
    EXPECT_GT(different_second_choices, 100);   // the retries of different keys spread out
}

TEST(Maglev, WithoutAKeyFallsBackToWeightedRandom) {
    const auto s = with_table(make_snapshot({1, 3}));
    Maglev lb(9);
    const auto counts = count_picks(lb, s, kKeys);
    EXPECT_NEAR(counts[0], kKeys / 4, kKeys / 100);
    // A snapshot without a table (never built for a maglev cluster by Cluster) does the same.
    const auto bare = make_snapshot({1, 3}, 2);
    EXPECT_NEAR(count_picks(lb, bare, kKeys, ChooseContext{{}, key(1)})[0], kKeys / 4, kKeys / 100);
}

TEST(Maglev, AllExcludedOrEmptyGivesNothing) {
    const auto s = with_table(make_snapshot(uniform(3)));
    Maglev lb(1);
    const auto tried = hosts_at(s, {0, 1, 2});
    EXPECT_EQ(lb.choose(s, ChooseContext{tried, key(1)}), nullptr);
    EXPECT_EQ(lb.choose(s, ChooseContext{tried}), nullptr);
    const auto empty = with_table(make_snapshot({}, 2));
    EXPECT_EQ(lb.choose(empty, ChooseContext{{}, key(1)}), nullptr);
    EXPECT_EQ(lb.choose(empty, {}), nullptr);
}

TEST(Maglev, AHostWithoutSlotsIsStillFoundWhenTheRestAreExcluded) {
    // Host 0 (weight 1 next to 1000s) owns a handful of slots; with the others excluded, a retry still
    // finds it (the walk, or if it had none, the random fallback).
    const auto s = with_table(make_snapshot({1, 1000, 1000}));
    Maglev lb(1);
    const auto tried = hosts_at(s, {1, 2});
    EXPECT_EQ(lb.choose(s, ChooseContext{tried, key(5)}), &s.hosts[0]);
}

TEST(HashAddress, V4MappedV6HashesAsV4) {
    const auto v4 = boost::asio::ip::make_address("192.0.2.7");
    const auto mapped = boost::asio::ip::make_address("::ffff:192.0.2.7");
    EXPECT_EQ(hash_address(v4), hash_address(mapped));
    EXPECT_NE(hash_address(v4), hash_address(boost::asio::ip::make_address("192.0.2.8")));
    EXPECT_NE(hash_address(boost::asio::ip::make_address("2001:db8::1")),
              hash_address(boost::asio::ip::make_address("2001:db8::2")));
}

}  // namespace
}  // namespace drover::proxy
