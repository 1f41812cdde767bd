#include "proxy/load_balancer/round_robin.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "tests/unit/proxy/lb_test_support.hpp"

namespace drover::proxy {
namespace {

using testing::count_picks;
using testing::hosts_at;
using testing::index_of;
using testing::make_snapshot;

std::string pick_sequence(RoundRobin& rr, const ClusterSnapshot& s, int n, const ChooseContext& context = {}) {
    std::string out;
    for (int i = 0; i < n; ++i) {
        const HostEntry* e = rr.choose(s, context);
        out += e == nullptr ? '-' : static_cast<char>('a' + index_of(s, e));
    }
    return out;
}

std::size_t longest_run(const std::string& sequence, char c) {
    std::size_t longest = 0;
    std::size_t run = 0;
    for (const char x : sequence) {
        run = x == c ? run + 1 : 0;
        longest = std::max(longest, run);
    }
    return longest;
}

// The largest |picks_i(t) - t * w_i / W| over every prefix t of `picks` picks and every host.
double worst_lag(const std::vector<std::uint32_t>& weights, int picks) {
    RoundRobin rr;
    const auto s = make_snapshot(weights);
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    std::vector<double> counts(weights.size(), 0);
    double worst = 0;
    for (int t = 1; t <= picks; ++t) {
        ++counts[index_of(s, rr.choose(s, {}))];
        for (std::size_t i = 0; i < weights.size(); ++i) {
            worst = std::max(worst, std::abs(counts[i] - t * weights[i] / total));
        }
    }
    return worst;
}

TEST(RoundRobin, EqualWeightsTakeTurns) {
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 1});
    EXPECT_EQ(pick_sequence(rr, s, 6), "abcabc");
}

TEST(RoundRobin, WeightedOrderInterleaves) {
    // The heavy host is spread out, never a burst of five, and the light ones are kept apart too.
    RoundRobin rr;
    const auto s = make_snapshot({5, 1, 1});
    const std::string sequence = pick_sequence(rr, s, 70);
    EXPECT_EQ(sequence.substr(0, 14), "abaacaaabaacaa");
    EXPECT_LE(longest_run(sequence, 'a'), 3u) << sequence;
    EXPECT_EQ(longest_run(sequence, 'b'), 1u) << sequence;
    EXPECT_EQ(longest_run(sequence, 'c'), 1u) << sequence;
}

TEST(RoundRobin, EveryHostStaysWithinOnePickOfItsShare) {
    // Smoothness as a number: after any number of picks, no host is a whole pick ahead of or behind
    // its exact share. A scheduler that bursts (a a a a a b c) fails this at once.
    EXPECT_LT(worst_lag({5, 1, 1}, 700), 1.0);
    EXPECT_LT(worst_lag({3, 2, 1}, 600), 1.0);
    EXPECT_LT(worst_lag({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 2000), 1.0);
    EXPECT_LT(worst_lag({100, 1, 1, 1, 1}, 2000), 1.0);
    std::mt19937 gen(7);
    std::vector<std::uint32_t> weights(50);
    for (auto& w : weights) { w = std::uniform_int_distribution<std::uint32_t>(1, 20)(gen); }
    EXPECT_LT(worst_lag(weights, 5000), 1.0);
}

TEST(RoundRobin, SharesFollowWeights) {
    RoundRobin rr;
    const auto s = make_snapshot({3, 2, 1});
    EXPECT_EQ(count_picks(rr, s, 600), (std::vector<int>{300, 200, 100}));
}

TEST(RoundRobin, ManyWeightedHostsGetExactSharesPerPeriod) {
    std::mt19937 gen(11);
    std::vector<std::uint32_t> weights(1000);
    for (auto& w : weights) { w = std::uniform_int_distribution<std::uint32_t>(1, 10)(gen); }
    const int total = std::accumulate(weights.begin(), weights.end(), 0);
    RoundRobin rr;
    const auto s = make_snapshot(weights);
    const auto counts = count_picks(rr, s, 3 * total);
    for (std::size_t i = 0; i < weights.size(); ++i) {
        ASSERT_EQ(counts[i], 3 * static_cast<int>(weights[i])) << "host " << i;
    }
}

TEST(RoundRobin, ZeroWeightCountsAsOne) {
    RoundRobin rr;
    const auto s = make_snapshot({0, 2});
    EXPECT_EQ(count_picks(rr, s, 300), (std::vector<int>{100, 200}));
}

TEST(RoundRobin, ExcludedHostsAreSkipped) {
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 1});
    const auto tried = hosts_at(s, {0, 1});
    for (int i = 0; i < 5; ++i) {
        const HostEntry* e = rr.choose(s, ChooseContext{tried});
        ASSERT_NE(e, nullptr);
        EXPECT_EQ(e, &s.hosts[2]);
    }
}

TEST(RoundRobin, WeightedRetriesLeaveTheScheduleAlone) {
    RoundRobin rr;
    const auto s = make_snapshot({5, 1, 1});
    const auto tried = hosts_at(s, {0});
    // Without the heavy host the light ones take turns.
    EXPECT_EQ(pick_sequence(rr, s, 4, ChooseContext{tried}), "bcbc");
    // The schedule goes on exactly where it was: no burst of catch-up picks for anyone.
    EXPECT_EQ(pick_sequence(rr, s, 14), "abaacaaabaacaa");
}

TEST(RoundRobin, RetryOfADeadHeavyHostDoesNotDriftTheSchedule) {
    // Each request first takes its scheduled host; when that is the dead one, the retry excludes it.
    RoundRobin rr;
    const auto s = make_snapshot({5, 1, 1});
    const auto dead = hosts_at(s, {0});
    std::vector<int> first(3, 0);
    for (int request = 0; request < 7000; ++request) {
        const HostEntry* e = rr.choose(s, {});
        ++first[index_of(s, e)];
        if (index_of(s, e) == 0) { ASSERT_NE(rr.choose(s, ChooseContext{dead}), nullptr); }
    }
    EXPECT_EQ(first, (std::vector<int>{5000, 1000, 1000}));
    EXPECT_LE(longest_run(pick_sequence(rr, s, 700), 'a'), 3u);
}

TEST(RoundRobin, UniformRetriesLeaveTheRotationAlone) {
    // [dead, live]: each connection's first pick, and a retry when that was the dead one. The dead
    // host must keep its turn, not get every first pick.
    RoundRobin rr;
    const auto s = make_snapshot({1, 1});
    const auto dead = hosts_at(s, {0});
    std::vector<int> first(2, 0);
    for (int request = 0; request < 100; ++request) {
        const HostEntry* e = rr.choose(s, {});
        ++first[index_of(s, e)];
        if (index_of(s, e) == 0) { EXPECT_EQ(rr.choose(s, ChooseContext{dead}), &s.hosts[1]); }
    }
    EXPECT_EQ(first, (std::vector<int>{50, 50}));
}

TEST(RoundRobin, ExcludingEveryStartedTurnTakesTheNextOne) {
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 2});
    ASSERT_EQ(pick_sequence(rr, s, 1), "c");
    // a and b have started their turns, c has not; a retry that tried a and b still gets c.
    const auto tried = hosts_at(s, {0, 1});
    EXPECT_EQ(pick_sequence(rr, s, 3, ChooseContext{tried}), "ccc");
}

TEST(RoundRobin, AllExcludedOrEmptyGivesNothing) {
    RoundRobin rr;
    const auto s = make_snapshot({1});
    const auto tried = hosts_at(s, {0});
    EXPECT_EQ(rr.choose(s, ChooseContext{tried}), nullptr);
    const auto weighted = make_snapshot({1, 2}, 2);
    const auto both = hosts_at(weighted, {0, 1});
    EXPECT_EQ(rr.choose(weighted, ChooseContext{both}), nullptr);
    EXPECT_NE(rr.choose(weighted, {}), nullptr);   // the failed pick left the schedule intact
    const auto empty = make_snapshot({}, 3);
    EXPECT_EQ(rr.choose(empty, {}), nullptr);
}

TEST(RoundRobin, ANewSnapshotKeepsTheRotationGoing) {
    RoundRobin rr;
    const auto a = make_snapshot({1, 1}, 1);
    rr.choose(a, {});
    const auto b = make_snapshot({1, 1, 1}, 2);
    EXPECT_EQ(pick_sequence(rr, b, 3), "bca");   // not back to the first host at every change
    const auto c = make_snapshot({1, 3}, 3);
    EXPECT_EQ(pick_sequence(rr, c, 8), "babbbabb");   // new hosts: a fresh schedule
}

// The same hosts with new weights, as the next snapshot of a cluster is.
ClusterSnapshot reweighted(const ClusterSnapshot& s, const std::vector<std::uint32_t>& weights, std::uint64_t version) {
    ClusterSnapshot next;
    next.version = version;
    for (std::size_t i = 0; i < weights.size(); ++i) { next.hosts.push_back({s.hosts[i].host, weights[i]}); }
    return next;
}

TEST(RoundRobin, SharesHoldWhileSnapshotsChangeEveryFewPicks) {
    // An overloaded host at a tenth of the weight, whose busy answers rebuild the snapshot every
    // couple of picks: it keeps its tenth. (Restarting the schedule at each change gave it a turn
    // within the first three picks every time: a third of all picks.)
    RoundRobin rr;
    const auto first = make_snapshot({10, 10, 10}, 1);
    std::vector<int> counts(3, 0);
    for (int i = 0; i < 30; ++i) { ++counts[index_of(first, rr.choose(first, {}))]; }
    counts.assign(3, 0);
    std::uint64_t version = 2;
    for (int round = 0; round < 1050; ++round) {
        const auto s = reweighted(first, {10, 10, 1}, version++);
        for (int i = 0; i < 2; ++i) { ++counts[index_of(s, rr.choose(s, {}))]; }
    }
    EXPECT_NEAR(counts[2], 100, 5);
    EXPECT_NEAR(counts[0], 1000, 10);
    // And back: the host ramps up again to its full share, without a burst to make up for the past.
    std::vector<int> after(3, 0);
    for (int round = 0; round < 300; ++round) {
        const auto s = reweighted(first, {10, 10, 10}, version++);
        for (int i = 0; i < 3; ++i) { ++after[index_of(s, rr.choose(s, {}))]; }
    }
    EXPECT_NEAR(after[2], 300, 5);
}

TEST(RoundRobin, ACarriedPlaceIsAtMostOneTurn) {
    // A host excluded by every retry for a long time is behind its share, but a new snapshot does not
    // owe it a burst: it gets its turns at its share again.
    RoundRobin rr;
    const auto s = make_snapshot({1, 1, 3}, 1);
    for (int i = 0; i < 500; ++i) { rr.choose(s, {}); }
    const auto next = reweighted(s, {1, 1, 3}, 2);
    const std::string sequence = pick_sequence(rr, next, 50);
    EXPECT_LE(longest_run(sequence, 'c'), 2u) << sequence;
    EXPECT_EQ(count_picks(rr, next, 500), (std::vector<int>{100, 100, 300}));
}

}  // namespace
}  // namespace drover::proxy
