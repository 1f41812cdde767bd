// discovery/refresh_schedule: when DNS is asked again, backoff after failures, and what staleness means.
// Time and randomness are passed in, so every case is exact.

#include "discovery/refresh_schedule.hpp"

#include <gtest/gtest.h>

namespace drover::discovery {
namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

const RefreshClock::time_point t0{std::chrono::hours(1000)};

// --- next_refresh ------------------------------------------------------------------------------------

TEST(NextRefresh, TtlInsideTheBoundsIsUsedWithAtMostTenPercentSpread) {
    EXPECT_EQ(next_refresh(10s, 1s, 30s, 0.5), 10s);   // the middle of the spread is the TTL itself
    EXPECT_EQ(next_refresh(10s, 1s, 30s, 0.0), 9s);
    EXPECT_EQ(next_refresh(10s, 1s, 30s, 0.999999), 11s);
}

TEST(NextRefresh, TtlIsClampedToMinAndMax) {
    EXPECT_EQ(next_refresh(0s, 1s, 30s, 0.0), 1s);     // TTL 0 ("do not cache") never means a busy loop
    EXPECT_EQ(next_refresh(300ms, 1s, 30s, 0.0), 1s);
    EXPECT_EQ(next_refresh(24h, 1s, 30s, 0.999999), 30s);
}

TEST(NextRefresh, SpreadStaysInsideTheBoundsButDoesNotVanishAtThem) {
    // Pinned at min: spread only upwards, so sidecars at refresh.min still fall out of lockstep.
    EXPECT_EQ(next_refresh(0s, 1s, 30s, 0.0), 1s);
    EXPECT_EQ(next_refresh(0s, 1s, 30s, 0.999999), 1100ms);
    // Pinned at max: spread only downwards.
    EXPECT_EQ(next_refresh(1h, 1s, 30s, 0.0), 27s);
    EXPECT_EQ(next_refresh(1h, 1s, 30s, 0.999999), 30s);
    // min == max: no room at all.
    EXPECT_EQ(next_refresh(10s, 5s, 5s, 0.7), 5s);
}

TEST(NextRefresh, EveryRandomValueGivesADelayInsideTheBounds) {
    for (int i = 0; i <= 100; ++i) {
        const double r = i / 100.0;
        for (const auto ttl :
             {ms{0}, ms{1}, ms{900}, ms{1000}, ms{15000}, ms{29999}, ms{30000}, ms{3600000}}) {
            const auto d = next_refresh(ttl, 1s, 30s, r);
            EXPECT_GE(d, 1s) << "ttl " << ttl.count() << " random " << r;
            EXPECT_LE(d, 30s) << "ttl " << ttl.count() << " random " << r;
        }
    }
}

TEST(NextRefresh, DifferentRandomValuesSpreadTheDelay) {
    EXPECT_LT(next_refresh(10s, 1s, 30s, 0.1), next_refresh(10s, 1s, 30s, 0.9));
}

// --- retry_backoff -----------------------------------------------------------------------------------

TEST(RetryBackoff, DoublesFromMinAndIsCappedAtMax) {
    // random 0.5 sits in the middle of the spread, which is the unjittered value away from the bounds.
    EXPECT_EQ(retry_backoff(1, 1s, 30s, 0.0), 1s);   // at min: only upward spread, 0.0 is min itself
    EXPECT_EQ(retry_backoff(2, 1s, 30s, 0.5), 2s);
    EXPECT_EQ(retry_backoff(3, 1s, 30s, 0.5), 4s);
    EXPECT_EQ(retry_backoff(4, 1s, 30s, 0.5), 8s);
    EXPECT_EQ(retry_backoff(5, 1s, 30s, 0.5), 16s);
    EXPECT_EQ(retry_backoff(6, 1s, 30s, 0.999999), 30s);
    EXPECT_EQ(retry_backoff(6, 1s, 30s, 0.0), 27s);
    EXPECT_EQ(retry_backoff(1000, 1s, 30s, 0.999999), 30s);   // no overflow however long DNS is down
    EXPECT_EQ(retry_backoff(UINT32_MAX, 250ms, 1h, 0.999999), 1h);
}

TEST(RetryBackoff, IsJittered) {
    EXPECT_EQ(retry_backoff(3, 1s, 30s, 0.0), 3600ms);
    EXPECT_EQ(retry_backoff(3, 1s, 30s, 0.999999), 4400ms);
}

// --- RefreshSchedule ---------------------------------------------------------------------------------

RefreshSchedule make(std::optional<ms> max_stale = std::nullopt, std::uint32_t recreate_after = 3) {
    return RefreshSchedule{RefreshSchedule::Settings{1s, 30s, max_stale, recreate_after}};
}

TEST(RefreshSchedule, StartsUnresolvedAndNotStale) {
    auto s = make();
    EXPECT_FALSE(s.resolved());
    EXPECT_FALSE(s.serving());
    EXPECT_FALSE(s.stale());
    EXPECT_EQ(s.consecutive_failures(), 0u);
    EXPECT_FALSE(s.last_success());
}

TEST(RefreshSchedule, SuccessSchedulesAtTheTtl) {
    auto s = make();
    const auto d = s.on_success(5s, t0, 0.5);
    EXPECT_EQ(d.delay, 5s);
    EXPECT_FALSE(d.drop_stale);
    EXPECT_FALSE(d.recreate_channel);
    EXPECT_TRUE(s.resolved());
    EXPECT_TRUE(s.serving());
    EXPECT_FALSE(s.stale());
    EXPECT_EQ(s.last_success(), t0);
}

TEST(RefreshSchedule, SuccessWithoutTtlWaitsTheLongestAllowed) {
    auto s = make();
    EXPECT_EQ(s.on_success(std::nullopt, t0, 0.999999).delay, 30s);
}

TEST(RefreshSchedule, FailuresBeforeAnySuccessBackOffButAreNotStale) {
    auto s = make();
    EXPECT_EQ(s.on_failure(t0, 0.0).delay, 1s);
    EXPECT_EQ(s.on_failure(t0 + 1s, 0.5).delay, 2s);
    EXPECT_EQ(s.on_failure(t0 + 3s, 0.5).delay, 4s);
    EXPECT_EQ(s.consecutive_failures(), 3u);
    EXPECT_FALSE(s.resolved());
    EXPECT_FALSE(s.stale());   // nothing to be stale: the cluster has no hosts
}

TEST(RefreshSchedule, FailureAfterSuccessKeepsServingTheStaleSet) {
    auto s = make();
    s.on_success(5s, t0, 0.5);
    const auto d = s.on_failure(t0 + 5s, 0.0);
    EXPECT_FALSE(d.drop_stale);   // no max_stale: a stale set serves until DNS answers again
    EXPECT_TRUE(s.serving());
    EXPECT_TRUE(s.stale());
    EXPECT_EQ(s.stale_since(), t0 + 5s);
    EXPECT_EQ(s.last_success(), t0);
    // Stale forever without max_stale, however many failures.
    for (int i = 0; i < 100; ++i) { EXPECT_FALSE(s.on_failure(t0 + std::chrono::hours(i), 0.5).drop_stale); }
    EXPECT_TRUE(s.serving());
    EXPECT_EQ(s.stale_since(), t0 + 5s);   // from the first failure, not the latest
}

TEST(RefreshSchedule, SuccessClearsStalenessAndResetsTheBackoff) {
    auto s = make();
    s.on_success(5s, t0, 0.5);
    s.on_failure(t0 + 5s, 0.5);
    s.on_failure(t0 + 6s, 0.5);
    EXPECT_EQ(s.on_failure(t0 + 8s, 0.5).delay, 4s);
    s.on_success(5s, t0 + 12s, 0.5);
    EXPECT_FALSE(s.stale());
    EXPECT_EQ(s.consecutive_failures(), 0u);
    EXPECT_EQ(s.last_success(), t0 + 12s);
    EXPECT_EQ(s.on_failure(t0 + 17s, 0.0).delay, 1s);   // backoff starts over
    EXPECT_EQ(s.stale_since(), t0 + 17s);
}

TEST(RefreshSchedule, MaxStaleDropsTheSetAtTheFirstFailurePastIt) {
    auto s = make(10s);
    s.on_success(5s, t0, 0.5);
    auto d = s.on_failure(t0 + 5s, 0.5);   // stale from t0+5s; deadline t0+15s
    EXPECT_FALSE(d.drop_stale);
    d = s.on_failure(t0 + 14s, 0.5);
    EXPECT_FALSE(d.drop_stale);
    EXPECT_TRUE(s.stale());
    d = s.on_failure(t0 + 15s, 0.5);
    EXPECT_TRUE(d.drop_stale);
    EXPECT_FALSE(s.serving());
    EXPECT_FALSE(s.stale());   // nothing served any more
    EXPECT_TRUE(s.resolved());
    // Dropped once; later failures have nothing left to drop.
    EXPECT_FALSE(s.on_failure(t0 + 30s, 0.5).drop_stale);
    // A success serves again, and a later stale period is measured afresh.
    s.on_success(5s, t0 + 40s, 0.5);
    EXPECT_TRUE(s.serving());
    EXPECT_FALSE(s.on_failure(t0 + 45s, 0.5).drop_stale);
    EXPECT_TRUE(s.on_failure(t0 + 55s, 0.5).drop_stale);
}

TEST(RefreshSchedule, RetriesAreScheduledNoLaterThanTheMaxStaleDeadline) {
    auto s = make(10s);
    s.on_success(5s, t0, 0.5);
    s.on_failure(t0, 0.5);                                   // stale since t0, deadline t0+10s
    for (int i = 0; i < 4; ++i) { s.on_failure(t0 + 1s, 0.5); }   // the backoff nears 30s
    EXPECT_EQ(s.on_failure(t0 + 7s, 0.5).delay, 3s);         // but the deadline is 3s away
    EXPECT_EQ(s.on_failure(t0 + 9500ms, 0.5).delay, 500ms);
}

TEST(RefreshSchedule, ChannelIsRecreatedEveryNFailuresInARow) {
    auto s = make(std::nullopt, 3);
    std::vector<bool> recreate;
    for (int i = 0; i < 7; ++i) {
        recreate.push_back(s.on_failure(t0 + std::chrono::seconds(i), 0.5).recreate_channel);
    }
    EXPECT_EQ(recreate, (std::vector<bool>{false, false, true, false, false, true, false}));
    s.on_success(5s, t0 + 10s, 0.5);
    EXPECT_FALSE(s.on_failure(t0 + 15s, 0.5).recreate_channel);   // the count starts over
    EXPECT_FALSE(s.on_failure(t0 + 16s, 0.5).recreate_channel);
    EXPECT_TRUE(s.on_failure(t0 + 17s, 0.5).recreate_channel);
}

TEST(RefreshSchedule, RecreateAfterZeroMeansNever) {
    auto s = make(std::nullopt, 0);
    for (int i = 0; i < 10; ++i) { EXPECT_FALSE(s.on_failure(t0, 0.5).recreate_channel); }
}

}  // namespace
}  // namespace drover::discovery
