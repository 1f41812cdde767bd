// health/overload: a busy host's share drops and climbs back over its Retry-After period.

#include "health/overload.hpp"

#include <gtest/gtest.h>

namespace drover::health {
namespace {

using namespace std::chrono_literals;
using Clock = Overload::Clock;

const Clock::time_point t0{std::chrono::hours(1000)};

TEST(Overload, AHostNeverOverloadedHasFullWeight) {
    Overload o;
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0), 1.0);
    EXPECT_FALSE(o.recovering("h0", t0));
}

TEST(Overload, DropsToTheFloorAndRecoversLinearlyOverRetryAfter) {
    Overload o;   // floor 0.1
    o.on_overload("h0", 10s, t0);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0), 0.1);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 2500ms), 0.325);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 5s), 0.55);
    EXPECT_TRUE(o.recovering("h0", t0 + 9999ms));
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 10s), 1.0);
    EXPECT_FALSE(o.recovering("h0", t0 + 10s));
    EXPECT_DOUBLE_EQ(o.weight_factor("h1", t0), 1.0);   // other hosts untouched
    EXPECT_EQ(o.counters().overloads_total, 1u);
}

TEST(Overload, FactorIsAlwaysInZeroToOne) {
    Overload o;
    o.on_overload("h0", 3s, t0);
    for (int i = -100; i < 4000; i += 7) {
        const double f = o.weight_factor("h0", t0 + std::chrono::milliseconds(i));
        EXPECT_GT(f, 0.0);
        EXPECT_LE(f, 1.0);
    }
}

TEST(Overload, RetryAfterIsClampedToTheConfiguredPeriods) {
    Overload o;   // min 1 s, max 60 s
    o.on_overload("short", 0s, t0);
    EXPECT_DOUBLE_EQ(o.weight_factor("short", t0 + 500ms), 0.55);
    EXPECT_DOUBLE_EQ(o.weight_factor("short", t0 + 1s), 1.0);
    o.on_overload("long", 1h, t0);
    EXPECT_DOUBLE_EQ(o.weight_factor("long", t0 + 30s), 0.55);
    EXPECT_DOUBLE_EQ(o.weight_factor("long", t0 + 60s), 1.0);
}

TEST(Overload, ANewSignalRestartsFromTheFloorAndKeepsTheLaterEnd) {
    Overload o;
    o.on_overload("h0", 10s, t0);
    o.on_overload("h0", 2s, t0 + 5s);   // ends before t0 + 10 s: the old end stands
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 5s), 0.1);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 7500ms), 0.55);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 10s), 1.0);
    o.on_overload("h0", 20s, t0 + 10s);   // a longer one extends it
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 20s), 0.55);
    EXPECT_EQ(o.counters().overloads_total, 3u);
}

TEST(Overload, CustomFloorAndInvalidFloorsAreClamped) {
    Overload o(Overload::Settings{0.5, 1s, 60s});
    o.on_overload("h0", 4s, t0);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0), 0.5);
    EXPECT_DOUBLE_EQ(o.weight_factor("h0", t0 + 2s), 0.75);
    Overload zero(Overload::Settings{0.0, 1s, 60s});   // 0 would be an ejection: kept above it
    zero.on_overload("h0", 4s, t0);
    EXPECT_GT(zero.weight_factor("h0", t0), 0.0);
}

TEST(Overload, PruneDropsRecoveredHostsAndRemoveForgets) {
    Overload o;
    o.on_overload("a", 1s, t0);
    o.on_overload("b", 10s, t0);
    o.on_overload("c", 10s, t0);
    EXPECT_EQ(o.prune(t0 + 500ms), 3u);
    EXPECT_EQ(o.prune(t0 + 1s), 2u);
    o.remove_host("b");
    EXPECT_DOUBLE_EQ(o.weight_factor("b", t0 + 1s), 1.0);
    EXPECT_EQ(o.prune(t0 + 10s), 0u);
}

}  // namespace
}  // namespace drover::health
