#include "proxy/load_balancer/round_robin.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace drover::proxy {
namespace {

ClusterSnapshot make_snapshot(std::vector<std::uint32_t> weights, std::uint64_t version = 1) {
    ClusterSnapshot s;
    s.version = version;
    std::uint16_t port = 9000;
    for (auto w : weights) {
        auto host = std::make_shared<const discovery::Host>(
            boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port++));
        s.hosts.push_back({host, w});
    }
    return s;
}

std::string pick_sequence(RoundRobin& rr, const ClusterSnapshot& s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        const HostEntry* e = rr.choose(s, {});
        out += static_cast<char>('a' + (e - s.hosts.data()));
    }
    return out;
}

TEST(RoundRobin, EqualWeightsTakeTurns) {
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 1});
    EXPECT_EQ(pick_sequence(rr, s, 6), "abcabc");
}

TEST(RoundRobin, SmoothWeightedInterleaves) {
    // The NGINX sequence for 5,1,1: the heavy host is spread out, never a burst of five.
    RoundRobin rr;
    const auto s = make_snapshot({5, 1, 1});
    EXPECT_EQ(pick_sequence(rr, s, 7), "aabacaa");
}

TEST(RoundRobin, SharesFollowWeights) {
    RoundRobin rr;
    const auto s = make_snapshot({3, 2, 1});
    std::map<char, int> counts;
    for (char c : pick_sequence(rr, s, 600)) { ++counts[c]; }
    EXPECT_EQ(counts['a'], 300);
    EXPECT_EQ(counts['b'], 200);
    EXPECT_EQ(counts['c'], 100);
}

TEST(RoundRobin, ExcludedHostsAreSkipped) {
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 1});
    const discovery::Host* tried[] = {s.hosts[0].host.get(), s.hosts[1].host.get()};
    for (int i = 0; i < 5; ++i) {
        const HostEntry* e = rr.choose(s, ChooseContext{tried});
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(e, &s.hosts[2]);
    }
}

TEST(RoundRobin, AllExcludedOrEmptyGivesNothing) {
    RoundRobin rr;
    const auto s = make_snapshot({1});
    const discovery::Host* tried[] = {s.hosts[0].host.get()};
    EXPECT_EQ(rr.choose(s, ChooseContext{tried}), nullptr);
    const auto empty = make_snapshot({});
    EXPECT_EQ(rr.choose(empty, {}), nullptr);
}

TEST(RoundRobin, NewSnapshotResetsState) {
    RoundRobin rr;
    const auto a = make_snapshot({1, 1}, 1);
    rr.choose(a, {});
    const auto b = make_snapshot({1, 1, 1}, 2);
    EXPECT_EQ(pick_sequence(rr, b, 3), "abc");
}

}  // namespace
}  // namespace drover::proxy
