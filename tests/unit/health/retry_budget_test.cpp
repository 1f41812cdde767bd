// health/retry_budget: the fraction of requests that may be retries, the floor for quiet clusters, and
// the sliding window.

#include "health/retry_budget.hpp"

#include <gtest/gtest.h>

namespace drover::health {
namespace {

using namespace std::chrono_literals;
using Clock = RetryBudget::Clock;

// On a bucket boundary, so window arithmetic below is exact.
const Clock::time_point t0{std::chrono::hours(1000)};

int acquire_all(RetryBudget& b, Clock::time_point now, int limit = 100000) {
    int n = 0;
    while (n < limit && b.try_acquire_retry(now)) { ++n; }
    return n;
}

TEST(RetryBudget, QuietClusterStillGetsTheMinimumRate) {
    RetryBudget b;   // 20%, 10 s, 3 retries/s -> a floor of 30 per window
    EXPECT_EQ(b.allowed_retries(t0), 30u);
    EXPECT_EQ(acquire_all(b, t0), 30);
    EXPECT_FALSE(b.try_acquire_retry(t0));
    EXPECT_EQ(b.counters().retries_total, 30u);
    EXPECT_EQ(b.counters().exhausted_total, 2u);   // the one ending acquire_all, and the one above
}

TEST(RetryBudget, FloorWinsWhileTheFractionIsSmaller) {
    RetryBudget b;
    for (int i = 0; i < 50; ++i) { b.on_request(t0); }   // 20% of 50 = 10 < 30
    EXPECT_EQ(b.allowed_retries(t0), 30u);
}

TEST(RetryBudget, BusyClusterIsBoundedByTheFraction) {
    RetryBudget b;
    for (int i = 0; i < 1000; ++i) { b.on_request(t0 + std::chrono::milliseconds(i)); }
    const auto now = t0 + 1s;
    EXPECT_EQ(b.requests_in_window(now), 1000u);
    EXPECT_EQ(b.allowed_retries(now), 200u);
    EXPECT_EQ(acquire_all(b, now), 200);
    EXPECT_EQ(b.retries_in_window(now), 200u);
    EXPECT_EQ(b.counters().exhausted_total, 1u);
    // More requests make room for more retries, one in five.
    for (int i = 0; i < 10; ++i) { b.on_request(now); }
    EXPECT_EQ(acquire_all(b, now), 2);
}

TEST(RetryBudget, BudgetRoundsDown) {
    RetryBudget b(RetryBudget::Settings{0.20, 10s, 0.0});
    for (int i = 0; i < 4; ++i) { b.on_request(t0); }
    EXPECT_EQ(b.allowed_retries(t0), 0u);   // 0.8 of a retry is none
    b.on_request(t0);
    EXPECT_EQ(b.allowed_retries(t0), 1u);
}

TEST(RetryBudget, OldBucketsSlideOutOfTheWindow) {
    RetryBudget b;
    for (int i = 0; i < 1000; ++i) { b.on_request(t0); }
    EXPECT_EQ(acquire_all(b, t0), 200);
    // Still inside the window 9.999 s later.
    EXPECT_EQ(b.requests_in_window(t0 + 9999ms), 1000u);
    EXPECT_FALSE(b.try_acquire_retry(t0 + 9999ms));
    // The t0 bucket leaves the window at t0 + 10 s: only the floor remains, and no retries are held.
    EXPECT_EQ(b.requests_in_window(t0 + 10s), 0u);
    EXPECT_EQ(b.retries_in_window(t0 + 10s), 0u);
    EXPECT_EQ(b.allowed_retries(t0 + 10s), 30u);
    EXPECT_TRUE(b.try_acquire_retry(t0 + 10s));
}

TEST(RetryBudget, WindowSlidesBucketByBucket) {
    RetryBudget b(RetryBudget::Settings{1.0, 10s, 0.0});
    for (int s = 0; s < 10; ++s) { b.on_request(t0 + std::chrono::seconds(s)); }
    EXPECT_EQ(b.requests_in_window(t0 + 9s), 10u);
    EXPECT_EQ(b.requests_in_window(t0 + 10s), 9u);
    EXPECT_EQ(b.requests_in_window(t0 + 15s), 4u);
    EXPECT_EQ(b.requests_in_window(t0 + 18s), 1u);
    EXPECT_EQ(b.requests_in_window(t0 + 1h), 0u);
}

TEST(RetryBudget, ReusedBucketsAreClearedAfterALongSilence) {
    RetryBudget b(RetryBudget::Settings{1.0, 10s, 0.0});
    for (int i = 0; i < 5; ++i) { b.on_request(t0); }
    // Same slot of the ring, ten windows later: the old count must not leak in.
    b.on_request(t0 + 100s);
    EXPECT_EQ(b.requests_in_window(t0 + 100s), 1u);
    EXPECT_EQ(b.allowed_retries(t0 + 100s), 1u);
}

TEST(RetryBudget, ZeroBudgetAndZeroFloorNeverRetries) {
    RetryBudget b(RetryBudget::Settings{0.0, 10s, 0.0});
    for (int i = 0; i < 100; ++i) { b.on_request(t0); }
    EXPECT_FALSE(b.try_acquire_retry(t0));
    EXPECT_EQ(b.counters().exhausted_total, 1u);
    EXPECT_EQ(b.counters().requests_total, 100u);
}

TEST(RetryBudget, ExhaustionIsCountedEveryTime) {
    RetryBudget b(RetryBudget::Settings{0.0, 10s, 0.1});   // floor: 1 per window
    EXPECT_TRUE(b.try_acquire_retry(t0));
    for (int i = 0; i < 5; ++i) { EXPECT_FALSE(b.try_acquire_retry(t0)); }
    EXPECT_EQ(b.counters().exhausted_total, 5u);
    EXPECT_EQ(b.counters().retries_total, 1u);
}

}  // namespace
}  // namespace drover::health
