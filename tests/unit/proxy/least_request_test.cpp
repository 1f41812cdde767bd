#include "proxy/load_balancer/least_request.hpp"

#include <gtest/gtest.h>

#include "tests/unit/proxy/lb_test_support.hpp"

namespace drover::proxy {
namespace {

using testing::count_picks;
using testing::hosts_at;
using testing::make_snapshot;
using testing::uniform;

constexpr int kPicks = 100000;

void set_active(const ClusterSnapshot& s, const std::vector<std::int64_t>& active) {
    for (std::size_t i = 0; i < active.size(); ++i) { s.hosts[i].host->stats().requests_active.store(active[i]); }
}

TEST(LeastRequest, IdleEqualHostsShareEvenly) {
    LeastRequest lb(1);
    const auto s = make_snapshot(uniform(4));
    for (const int c : count_picks(lb, s, kPicks)) { EXPECT_NEAR(c, kPicks / 4, kPicks / 100); }
}

TEST(LeastRequest, BusierHostsGetLess) {
    // Two distinct hosts are drawn and the less busy one wins, so the host ranked r-th best (of n)
    // wins 2 (n - 1 - r) / (n (n - 1)) of the picks: 6/12, 4/12, 2/12 and 0/12 here.
    LeastRequest lb(2);
    const auto s = make_snapshot(uniform(4));
    set_active(s, {0, 1, 3, 7});
    const auto counts = count_picks(lb, s, kPicks);
    EXPECT_NEAR(counts[0], kPicks * 6 / 12, kPicks / 100);
    EXPECT_NEAR(counts[1], kPicks * 4 / 12, kPicks / 100);
    EXPECT_NEAR(counts[2], kPicks * 2 / 12, kPicks / 100);
    EXPECT_EQ(counts[3], 0);
}

TEST(LeastRequest, ASlowReplicaIsRoutedAround) {
    // Ten replicas, one piling up requests: drawn against any other it loses, so it gets nothing
    // until its queue drains, and the other nine share its traffic evenly.
    LeastRequest lb(3);
    const auto s = make_snapshot(uniform(10));
    set_active(s, {2, 2, 2, 2, 40, 2, 2, 2, 2, 2});
    const auto counts = count_picks(lb, s, kPicks);
    EXPECT_EQ(counts[4], 0);
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (i != 4) { EXPECT_NEAR(counts[i], kPicks / 9, kPicks / 100) << "host " << i; }
    }
}

TEST(LeastRequest, IdleHostsShareByWeight) {
    // Nothing in flight (a client sending one request at a time): the first draw, made by weight,
    // wins every tie. A host ramping up at a tenth of its weight gets a tenth of a share, where
    // comparing weight / (active + 1) gave the heavier host every pick.
    LeastRequest lb(4);
    const auto ramping = make_snapshot({10, 1});
    const auto counts = count_picks(lb, ramping, kPicks);
    EXPECT_NEAR(counts[1], kPicks / 11, kPicks / 100);
    const auto mixed = make_snapshot({1, 1, 4}, 2);
    const auto shares = count_picks(lb, mixed, kPicks);
    EXPECT_NEAR(shares[2], kPicks * 4 / 6, kPicks / 100);
    EXPECT_NEAR(shares[0], kPicks / 6, kPicks / 100);
}

TEST(LeastRequest, UnderLoadFewerActiveForTheWeightWins) {
    // active / weight: 3/4, 0/2 and 1/1: the weight-2 host wins every pair it is in, the weight-4 host
    // the pair with the weight-1 one, drawn with probability 4/7 * 1/3 + 1/7 * 4/6 = 2/7.
    LeastRequest lb(9);
    const auto loaded = make_snapshot({4, 2, 1}, 2);
    set_active(loaded, {3, 0, 1});
    const auto shares = count_picks(lb, loaded, kPicks);
    EXPECT_NEAR(shares[1], kPicks * 5 / 7, kPicks / 100);
    EXPECT_NEAR(shares[0], kPicks * 2 / 7, kPicks / 100);
    EXPECT_EQ(shares[2], 0);
}

TEST(LeastRequest, MixedWeightsNeverDrawTheSameHostTwiceOrAnExcludedOne) {
    LeastRequest lb(10);
    const auto s = make_snapshot({100, 1, 1});
    set_active(s, {5, 9, 0});
    // The heavy host is drawn first nearly always; the second draw must find another host, and the
    // idle one wins whenever it is that other.
    const auto tried = hosts_at(s, {2});
    const auto counts = count_picks(lb, s, kPicks, ChooseContext{tried});
    EXPECT_EQ(counts[2], 0);
    EXPECT_GT(counts[0], kPicks * 9 / 10);   // 5/100 beats 9/1
    EXPECT_EQ(lb.choose(s, ChooseContext{hosts_at(s, {0, 1})}), &s.hosts[2]);
}

TEST(LeastRequest, TwoHostsAlwaysCompareBoth) {
    LeastRequest lb(5);
    const auto s = make_snapshot(uniform(2));
    set_active(s, {5, 4});
    for (int i = 0; i < 100; ++i) { EXPECT_EQ(lb.choose(s, {}), &s.hosts[1]); }
}

TEST(LeastRequest, ExcludedHostsAreNeverChosen) {
    LeastRequest lb(6);
    const auto s = make_snapshot(uniform(4));
    set_active(s, {0, 9, 9, 9});   // the best host is the one already tried
    const auto tried = hosts_at(s, {0});
    const auto counts = count_picks(lb, s, kPicks, ChooseContext{tried});
    EXPECT_EQ(counts[0], 0);
    for (std::size_t i = 1; i < 4; ++i) { EXPECT_NEAR(counts[i], kPicks / 3, kPicks / 100); }
}

TEST(LeastRequest, OneEligibleHostIsChosenWithoutASecondDraw) {
    LeastRequest lb(7);
    const auto s = make_snapshot(uniform(6));
    const auto tried = hosts_at(s, {0, 1, 2, 4, 5});
    for (int i = 0; i < 100; ++i) { EXPECT_EQ(lb.choose(s, ChooseContext{tried}), &s.hosts[3]); }
    const auto single = make_snapshot({1}, 2);
    EXPECT_EQ(lb.choose(single, {}), &single.hosts[0]);
}

TEST(LeastRequest, AllExcludedOrEmptyGivesNothing) {
    LeastRequest lb(8);
    const auto s = make_snapshot({1, 2, 3});
    const auto tried = hosts_at(s, {0, 1, 2});
    EXPECT_EQ(lb.choose(s, ChooseContext{tried}), nullptr);
    EXPECT_EQ(lb.choose(make_snapshot({}, 2), {}), nullptr);
}

}  // namespace
}  // namespace drover::proxy
