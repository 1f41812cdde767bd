#include "proxy/load_balancer/random.hpp"

#include <gtest/gtest.h>

#include "tests/unit/proxy/lb_test_support.hpp"

namespace drover::proxy {
namespace {

using testing::count_picks;
using testing::hosts_at;
using testing::make_snapshot;
using testing::uniform;

constexpr int kPicks = 100000;

TEST(WeightedRandom, UniformSharesAreEven) {
    WeightedRandom lb(1);
    const auto s = make_snapshot(uniform(4));
    for (const int c : count_picks(lb, s, kPicks)) { EXPECT_NEAR(c, kPicks / 4, kPicks / 100); }
}

TEST(WeightedRandom, SharesFollowWeights) {
    WeightedRandom lb(2);
    const auto s = make_snapshot({1, 2, 3, 4});
    const auto counts = count_picks(lb, s, kPicks);
    for (std::size_t i = 0; i < counts.size(); ++i) {
        EXPECT_NEAR(counts[i], kPicks * static_cast<int>(i + 1) / 10, kPicks / 100) << "host " << i;
    }
}

TEST(WeightedRandom, ManyHostsEachGetTheirShare) {
    WeightedRandom lb(3);
    std::vector<std::uint32_t> weights(100, 1);
    weights[7] = 50;   // half of all traffic
    const auto s = make_snapshot(weights);
    const auto counts = count_picks(lb, s, kPicks);
    EXPECT_NEAR(counts[7], kPicks * 50 / 149, kPicks / 100);
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (i != 7) { EXPECT_NEAR(counts[i], kPicks / 149, 200) << "host " << i; }
    }
}

TEST(WeightedRandom, SkewedWeights) {
    WeightedRandom lb(8);
    const auto s = make_snapshot({1, 1000, 7, 50});
    const auto counts = count_picks(lb, s, 10 * kPicks);
    const double total = 1058;
    EXPECT_NEAR(counts[0], 10 * kPicks * 1 / total, 100);
    EXPECT_NEAR(counts[1], 10 * kPicks * 1000 / total, 1000);
    EXPECT_NEAR(counts[2], 10 * kPicks * 7 / total, 300);
    EXPECT_NEAR(counts[3], 10 * kPicks * 50 / total, 700);
}

TEST(WeightedRandom, SameSeedSameSequence) {
    WeightedRandom a(42);
    WeightedRandom b(42);
    WeightedRandom c(43);
    const auto s = make_snapshot({1, 2, 3});
    int same_as_other_seed = 0;
    for (int i = 0; i < 100; ++i) {
        const HostEntry* x = a.choose(s, {});
        EXPECT_EQ(x, b.choose(s, {}));
        same_as_other_seed += x == c.choose(s, {}) ? 1 : 0;
    }
    EXPECT_LT(same_as_other_seed, 80);
}

TEST(WeightedRandom, ExcludedHostsAreNeverChosenAndTheRestKeepTheirProportions) {
    WeightedRandom lb(4);
    const auto s = make_snapshot({4, 1, 3});
    const auto tried = hosts_at(s, {0});
    const auto counts = count_picks(lb, s, kPicks, ChooseContext{tried});
    EXPECT_EQ(counts[0], 0);
    EXPECT_NEAR(counts[1], kPicks / 4, kPicks / 100);
    EXPECT_NEAR(counts[2], kPicks * 3 / 4, kPicks / 100);
}

TEST(WeightedRandom, FindsTheOneHostLeftAmongMany) {
    // Most draws hit excluded hosts: the exact draw among the eligible ones takes over.
    WeightedRandom lb(5);
    const auto s = make_snapshot(uniform(5));
    const auto tried = hosts_at(s, {0, 1, 2, 4});
    for (int i = 0; i < 100; ++i) { EXPECT_EQ(lb.choose(s, ChooseContext{tried}), &s.hosts[3]); }
}

TEST(WeightedRandom, AllExcludedOrEmptyGivesNothing) {
    WeightedRandom lb(6);
    const auto s = make_snapshot({1, 2});
    const auto tried = hosts_at(s, {0, 1});
    EXPECT_EQ(lb.choose(s, ChooseContext{tried}), nullptr);
    EXPECT_EQ(lb.choose(make_snapshot({}, 2), {}), nullptr);
}

TEST(WeightedRandom, NewSnapshotRebuildsTheWeights) {
    WeightedRandom lb(7);
    const auto a = make_snapshot({1, 9}, 1);
    EXPECT_NEAR(count_picks(lb, a, kPicks)[1], kPicks * 9 / 10, kPicks / 100);
    const auto b = make_snapshot({9, 1}, 2);
    EXPECT_NEAR(count_picks(lb, b, kPicks)[0], kPicks * 9 / 10, kPicks / 100);
}

}  // namespace
}  // namespace drover::proxy
