// discovery/dns_resolver against a scripted DNS server on loopback, on one io_context like the control
// loop: answers become endpoint sets, re-resolution follows the TTL, and every kind of failure (SERVFAIL,
// REFUSED, NXDOMAIN, an empty answer, no answer at all) keeps the last good set and shows as stale.
// Names end with '.' so that the search domains of the machine's resolv.conf never come into play.

#include "discovery/dns_resolver.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "tests/unit/discovery/fake_dns_server.hpp"

namespace drover::discovery {
namespace {

using namespace std::chrono_literals;
using namespace fakes;
namespace asio = boost::asio;

// Runs the loop until `done` holds or `timeout` passes; false on timeout.
bool run_until(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) { return false; }
        if (io.stopped()) { io.restart(); }
        io.run_one_for(10ms);
    }
    return true;
}

std::string text(const EndpointSet& set) {
    std::string out;
    for (const auto& e : set) {
        if (!out.empty()) { out += ' '; }
        out += to_string(e.address);
        if (e.weight != 1) { out += "/w" + std::to_string(e.weight); }
        if (e.priority != 0) { out += "/p" + std::to_string(e.priority); }
    }
    return out;
}

FakeAnswer a(std::string address, std::uint32_t ttl = 1) {
    return FakeAnswer{kNoError, {address_record(std::move(address), ttl)}, false};
}
FakeAnswer rcode(int code) { return FakeAnswer{code, {}, false}; }

class DnsResolverTest : public ::testing::Test {
protected:
    // refresh 50ms..300ms keeps every case well under a second per step.
    config::DnsDiscovery settings(std::string name,
                                  config::DnsDiscovery::Type type = config::DnsDiscovery::Type::a) {
        config::DnsDiscovery c;
        c.name = std::move(name);
        c.type = type;
        if (type != config::DnsDiscovery::Type::srv) { c.port = 80; }
        c.servers = {server.address()};
        c.refresh_min = 50ms;
        c.refresh_max = 300ms;
        return c;
    }

    void start(config::DnsDiscovery c) {
        resolver = std::make_unique<DnsResolver>(io, "test", std::move(c), [] { return 0.5; });
        resolver->start([this](EndpointSet set) {
            updates.push_back(std::move(set));
        });
    }

    bool wait_updates(std::size_t n, std::chrono::milliseconds timeout = 3s) {
        return run_until(io, [&] { return updates.size() >= n; }, timeout);
    }
    bool wait_failures(std::uint32_t n, std::chrono::milliseconds timeout = 3s) {
        return run_until(io, [&] { return resolver->status().consecutive_failures >= n; }, timeout);
    }

    asio::io_context io{1};
    FakeDnsServer server{io};
    std::unique_ptr<DnsResolver> resolver;
    std::vector<EndpointSet> updates;
};

TEST_F(DnsResolverTest, ARecordsBecomeEndpointsAndChangesFollowTheTtl) {
    server.set("web.test", kA,
               FakeAnswer{kNoError, {address_record("127.0.0.3"), address_record("127.0.0.2")}, false});
    start(settings("web.test."));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.2:80 127.0.0.3:80");   // sorted: DNS order rotates
    auto status = resolver->status();
    EXPECT_EQ(status.kind, "dns");
    EXPECT_TRUE(status.resolved);
    EXPECT_FALSE(status.stale);
    EXPECT_TRUE(status.last_success);

    // Same answer again: refreshes happen (TTL 1s clamped to 300ms) but nothing is delivered.
    ASSERT_TRUE(run_until(io, [&] { return server.queries("web.test", kA) >= 3; }, 3s));
    EXPECT_EQ(updates.size(), 1u);

    server.set("web.test", kA, a("127.0.0.4"));
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.4:80");
    EXPECT_GE(resolver->status().successes, 3u);
}

TEST_F(DnsResolverTest, BothFamiliesForAPlusAaaa) {
    server.set("web.test", kA, a("127.0.0.2"));
    server.set("web.test", kAaaa, a("::1"));
    start(settings("web.test.", config::DnsDiscovery::Type::a_aaaa));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.2:80 [::1]:80");
}

TEST_F(DnsResolverTest, AnIpv4OnlyNameIsFineForAPlusAaaa) {
    server.set("web.test", kA, a("127.0.0.2"));   // AAAA: the name exists, no records (NODATA)
    start(settings("web.test.", config::DnsDiscovery::Type::a_aaaa));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.2:80");
}

TEST_F(DnsResolverTest, AFamilyThatFailsKeepsItsLastAddresses) {
    server.set("web.test", kA, a("127.0.0.2"));
    server.set("web.test", kAaaa, a("::1"));
    start(settings("web.test.", config::DnsDiscovery::Type::a_aaaa));
    ASSERT_TRUE(wait_updates(1));
    server.set("web.test", kA, a("127.0.0.3"));
    server.set("web.test", kAaaa, rcode(kServFail));   // the v6 half fails: the v6 hosts stay
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.3:80 [::1]:80");
    EXPECT_FALSE(resolver->status().stale);
    EXPECT_NE(resolver->status().last_error.find("AAAA web.test.: SERVFAIL"), std::string::npos)
        << resolver->status().last_error;
    server.set("web.test", kAaaa, a("::2"));   // back, with another address
    ASSERT_TRUE(wait_updates(3));
    EXPECT_EQ(text(updates[2]), "127.0.0.3:80 [::2]:80");
}

TEST_F(DnsResolverTest, BothFamiliesFailingIsAFailure) {
    server.set("web.test", kA, a("127.0.0.2"));
    server.set("web.test", kAaaa, a("::1"));
    start(settings("web.test.", config::DnsDiscovery::Type::a_aaaa));
    ASSERT_TRUE(wait_updates(1));
    server.set("web.test", kA, rcode(kRefused));
    server.set("web.test", kAaaa, rcode(kServFail));
    ASSERT_TRUE(wait_failures(1));
    EXPECT_EQ(updates.size(), 1u);
    EXPECT_TRUE(resolver->status().stale);
}

TEST_F(DnsResolverTest, AFamilyThatNeverAnswersDoesNotKeepTheNameUnresolved) {
    // dnsmasq answers REFUSED for AAAA of a name it only has an IPv4 address for.
    server.set("web.test", kA, a("127.0.0.2"));
    server.set("web.test", kAaaa, rcode(kRefused));
    start(settings("web.test.", config::DnsDiscovery::Type::a_aaaa));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.2:80");
    EXPECT_TRUE(resolver->status().resolved);
    EXPECT_NE(resolver->status().last_error.find("AAAA web.test.: REFUSED"), std::string::npos)
        << resolver->status().last_error;
}

TEST_F(DnsResolverTest, EveryKindOfFailureKeepsTheLastSetUntilASuccessfulAnswerChangesIt) {
    server.set("web.test", kA, a("127.0.0.2"));
    start(settings("web.test."));
    ASSERT_TRUE(wait_updates(1));

    const std::pair<FakeAnswer, std::string> failures[] = {
        {rcode(kServFail), "SERVFAIL"},
        {rcode(kRefused), "REFUSED"},
        {rcode(kNxDomain), "NXDOMAIN"},
        {rcode(kNoError), "empty answer"},
    };
    std::uint64_t failed = 0;
    for (const auto& [answer, expected] : failures) {
        server.set("web.test", kA, answer);
        ASSERT_TRUE(run_until(io, [&] {
            const auto s = resolver->status();
            return s.failures > failed && s.last_error.find(expected) != std::string::npos;
        }, 3s)) << expected << ": " << resolver->status().last_error;
        failed = resolver->status().failures;
        const auto s = resolver->status();
        EXPECT_TRUE(s.stale) << expected;
        EXPECT_TRUE(s.resolved) << expected;
        EXPECT_EQ(updates.size(), 1u) << expected << ": a failure must not deliver a set";
    }
    // Four failures in a row: the channel has been recreated at least once, and still works.
    EXPECT_GE(resolver->status().consecutive_failures, 4u);
    server.set("web.test", kA, a("127.0.0.5"));
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.5:80");
    const auto s = resolver->status();
    EXPECT_FALSE(s.stale);
    EXPECT_EQ(s.consecutive_failures, 0u);
    EXPECT_NE(s.last_error.find("empty answer"), std::string::npos);   // the last failure stays visible
}

TEST_F(DnsResolverTest, NoAnswerAtAllTimesOutAndKeepsTheSet) {
    server.set("web.test", kA, a("127.0.0.2"));
    start(settings("web.test."));
    ASSERT_TRUE(wait_updates(1));
    server.set_all(FakeAnswer{kNoError, {}, true});
    ASSERT_TRUE(wait_failures(1, 8s));   // c-ares: two tries, 1 s then 2 s
    EXPECT_NE(resolver->status().last_error.find("timed out"), std::string::npos)
        << resolver->status().last_error;
    EXPECT_TRUE(resolver->status().stale);
    EXPECT_EQ(updates.size(), 1u);
    server.clear_all();
    server.set("web.test", kA, a("127.0.0.9"));
    ASSERT_TRUE(wait_updates(2, 8s));
    EXPECT_EQ(text(updates[1]), "127.0.0.9:80");
}

TEST_F(DnsResolverTest, NeverResolvedDeliversNothing) {
    start(settings("nothing.test."));
    ASSERT_TRUE(wait_failures(3));
    EXPECT_TRUE(updates.empty());
    const auto s = resolver->status();
    EXPECT_FALSE(s.resolved);
    EXPECT_FALSE(s.stale);
    EXPECT_FALSE(s.last_success);
    EXPECT_NE(s.last_error.find("A nothing.test.: NXDOMAIN"), std::string::npos) << s.last_error;
    // The name appears: the first answer is delivered.
    server.set("nothing.test", kA, a("127.0.0.7"));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.7:80");
}

TEST_F(DnsResolverTest, SrvTargetsResolveToAddressesWithTheirPortsWeightsAndPriorities) {
    FakeAnswer srv;
    srv.records = {srv_record(10, 5, 9001, "b1.test"), srv_record(10, 1, 9002, "b2.test"),
                   srv_record(20, 0, 9003, "b3.test")};
    server.set("_svc._tcp.test", kSrv, srv);
    server.set("b1.test", kA, a("127.0.0.5"));
    server.set("b2.test", kA, a("127.0.0.6"));
    server.set("b2.test", kAaaa, a("::1"));
    server.set("b3.test", kA, a("127.0.0.7"));
    start(settings("_svc._tcp.test.", config::DnsDiscovery::Type::srv));
    ASSERT_TRUE(wait_updates(1));
    // Every group is delivered with its priority (the cluster serves the best one); weight 0 -> 1.
    EXPECT_EQ(text(updates[0]), "127.0.0.5:9001/w5/p10 127.0.0.6:9002/p10 127.0.0.7:9003/p20 [::1]:9002/p10");
}

TEST_F(DnsResolverTest, SrvTargetThatCannotBeLookedUpKeepsItsLastAddresses) {
    FakeAnswer srv;
    srv.records = {srv_record(0, 1, 9001, "b1.test"), srv_record(0, 1, 9002, "b2.test")};
    server.set("_svc._tcp.test", kSrv, srv);
    server.set("b1.test", kA, a("127.0.0.5"));
    server.set("b2.test", kA, a("127.0.0.6"));
    server.set("b3.test", kA, rcode(kServFail));
    start(settings("_svc._tcp.test.", config::DnsDiscovery::Type::srv));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(updates[0].size(), 2u);
    server.set("b2.test", kA, rcode(kServFail));
    srv.records.push_back(srv_record(0, 1, 9003, "b3.test"));   // new, and failing from the start
    server.set("_svc._tcp.test", kSrv, srv);
    ASSERT_TRUE(run_until(io, [&] {
        return resolver->status().last_error.find("target A b3.test.: SERVFAIL") != std::string::npos;
    }, 3s)) << resolver->status().last_error;
    EXPECT_EQ(updates.size(), 1u);   // b2 is not dropped because its lookup failed; b3 adds nothing
    EXPECT_NE(resolver->status().last_error.find("target A b2.test.: SERVFAIL"), std::string::npos)
        << resolver->status().last_error;
    // A target that no longer exists (NXDOMAIN) is a host gone: the rest is delivered.
    server.set("b2.test", kAaaa, rcode(kNxDomain));
    server.set("b2.test", kA, rcode(kNxDomain));
    ASSERT_TRUE(wait_updates(2));
    EXPECT_EQ(text(updates[1]), "127.0.0.5:9001");
}

TEST_F(DnsResolverTest, SrvTargetDotMeansNoServiceAndEmptiesTheSet) {
    FakeAnswer srv;
    srv.records = {srv_record(0, 1, 9001, "b1.test")};
    server.set("_svc._tcp.test", kSrv, srv);
    server.set("b1.test", kA, a("127.0.0.5"));
    start(settings("_svc._tcp.test.", config::DnsDiscovery::Type::srv));
    ASSERT_TRUE(wait_updates(1));
    srv.records = {srv_record(0, 0, 0, "")};   // the root, ".": RFC 2782 "decidedly not available"
    server.set("_svc._tcp.test", kSrv, srv);
    ASSERT_TRUE(wait_updates(2));
    EXPECT_TRUE(updates[1].empty());
    EXPECT_FALSE(resolver->status().stale);
}

TEST_F(DnsResolverTest, SrvRecordsOnOneAddressAddTheirWeights) {
    FakeAnswer srv;
    srv.records = {srv_record(10, 1, 9001, "b1.test"), srv_record(10, 3, 9001, "alias.test"),
                   srv_record(20, 7, 9001, "b1.test")};   // also in a worse group: the best one counts
    server.set("_svc._tcp.test", kSrv, srv);
    server.set("b1.test", kA, a("127.0.0.5"));
    server.set("alias.test", kA, a("127.0.0.5"));
    start(settings("_svc._tcp.test.", config::DnsDiscovery::Type::srv));
    ASSERT_TRUE(wait_updates(1));
    EXPECT_EQ(text(updates[0]), "127.0.0.5:9001/w4/p10");
}

TEST_F(DnsResolverTest, SrvTargetsAreFullNamesNotSearchedInTheSearchList) {
    // In a Kubernetes pod: search domains and ndots:5. "b1.test" has one dot, so a name search would
    // ask "b1.test.svc.test" first, and here that exists, with another address.
    ::setenv("LOCALDOMAIN", "svc.test", 1);
    ::setenv("RES_OPTIONS", "ndots:5", 1);
    FakeAnswer srv;
    srv.records = {srv_record(0, 1, 9001, "b1.test")};
    server.set("_svc._tcp.test", kSrv, srv);
    server.set("b1.test", kA, a("127.0.0.5"));
    server.set("b1.test.svc.test", kA, a("127.0.0.99"));
    start(settings("_svc._tcp.test.", config::DnsDiscovery::Type::srv));
    const bool updated = wait_updates(1);
    ::unsetenv("LOCALDOMAIN");
    ::unsetenv("RES_OPTIONS");
    ASSERT_TRUE(updated);
    EXPECT_EQ(text(updates[0]), "127.0.0.5:9001");
}

TEST_F(DnsResolverTest, MaxStaleDropsTheStaleSet) {
    server.set("web.test", kA, a("127.0.0.2"));
    auto c = settings("web.test.");
    c.max_stale = 200ms;
    start(c);
    ASSERT_TRUE(wait_updates(1));
    server.set("web.test", kA, rcode(kServFail));
    ASSERT_TRUE(wait_updates(2));
    EXPECT_TRUE(updates[1].empty());
    const auto s = resolver->status();
    EXPECT_EQ(s.stale_drops, 1u);
    EXPECT_FALSE(s.stale);
    EXPECT_TRUE(s.resolved);
    server.set("web.test", kA, a("127.0.0.2"));
    ASSERT_TRUE(wait_updates(3));
    EXPECT_EQ(text(updates[2]), "127.0.0.2:80");
}

TEST_F(DnsResolverTest, UnreachableServerIsAFailure) {
    auto c = settings("web.test.");
    c.servers = {config::Address{"127.0.0.1", 1}};   // nothing listens: ICMP port unreachable
    start(c);
    ASSERT_TRUE(wait_failures(1, 8s));
    EXPECT_TRUE(updates.empty());
    EXPECT_FALSE(resolver->status().last_error.empty());
}

TEST_F(DnsResolverTest, StoppingOrDestroyingMidQueryIsSafe) {
    server.set_all(FakeAnswer{kNoError, {}, true});   // queries stay in flight
    start(settings("web.test."));
    ASSERT_TRUE(run_until(io, [&] { return server.total_queries() >= 1; }, 3s));
    resolver->stop();
    resolver.reset();
    // The coroutine wakes up to a stopped resolver and ends; nothing is delivered, nothing crashes.
    io.restart();
    io.run_for(100ms);
    EXPECT_TRUE(updates.empty());
}

}  // namespace
}  // namespace drover::discovery
