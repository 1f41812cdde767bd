// health/outlier_detector: streaks, ejection backoff and its cap, max-ejection percent, decay, early
// return. Randomness is a fixed value per test, so every ejection time is exact.

#include "health/outlier_detector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace drover::health {
namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;
using Action = OutlierDetector::Decision::Action;
using Clock = OutlierDetector::Clock;

const Clock::time_point t0{std::chrono::hours(1000)};

OutlierDetector::Settings plain_settings() {
    OutlierDetector::Settings s;
    s.consecutive_failures = 3;
    s.base_ejection_time = 5s;
    s.max_ejection_time = 300s;
    s.max_ejection_percent = 1.0;
    s.decay_interval = 30s;
    s.jitter = 0.0;
    return s;
}

OutlierDetector detector(OutlierDetector::Settings s, int hosts, double random = 0.5) {
    OutlierDetector d(s, [random] { return random; });
    for (int i = 0; i < hosts; ++i) { d.add_host("h" + std::to_string(i)); }
    return d;
}

// Drives `n` failures of `outcome` into host, returning the last decision.
OutlierDetector::Decision fail(OutlierDetector& d, const std::string& host, Outcome outcome, int n,
                               Clock::time_point now) {
    OutlierDetector::Decision last;
    for (int i = 0; i < n; ++i) { last = d.record(host, outcome, now); }
    return last;
}

TEST(OutlierDetector, OriginsOfOutcomes) {
    EXPECT_EQ(origin_of(Outcome::success), Origin::none);
    EXPECT_EQ(origin_of(Outcome::connect_failed), Origin::local);
    EXPECT_EQ(origin_of(Outcome::timeout), Origin::local);
    EXPECT_EQ(origin_of(Outcome::reset), Origin::local);
    EXPECT_EQ(origin_of(Outcome::bad_response), Origin::backend);
    EXPECT_EQ(origin_of(Outcome::status_5xx), Origin::backend);
    EXPECT_EQ(to_string(Outcome::status_5xx), "status_5xx");
    EXPECT_EQ(to_string(Origin::local), "local_origin");
}

TEST(OutlierDetector, EjectsAtOnceOnTheThresholdFailure) {
    auto d = detector(plain_settings(), 4);
    EXPECT_EQ(d.record("h0", Outcome::connect_failed, t0).action, Action::none);
    EXPECT_EQ(d.record("h0", Outcome::timeout, t0).action, Action::none);
    EXPECT_FALSE(d.is_ejected("h0"));
    const auto decision = d.record("h0", Outcome::reset, t0);
    EXPECT_EQ(decision.action, Action::ejected);
    EXPECT_EQ(decision.streak, Origin::local);
    EXPECT_EQ(decision.failures, 3u);
    EXPECT_EQ(decision.ejection_count, 1u);
    EXPECT_EQ(decision.ejected_until, t0 + 5s);
    EXPECT_TRUE(d.is_ejected("h0"));
    EXPECT_EQ(d.ejected_count(), 1u);
    EXPECT_EQ(d.counters().ejections_total, 1u);
    EXPECT_EQ(d.counters().ejections_local_origin_total, 1u);
    EXPECT_EQ(d.status("h0").last_ejection_streak, Origin::local);
}

TEST(OutlierDetector, NewSettingsApplyToTheNextDecisionAndKeepCurrentEjections) {
    auto d = detector(plain_settings(), 4);
    fail(d, "h0", Outcome::connect_failed, 3, t0);
    ASSERT_TRUE(d.is_ejected("h0"));
    auto stricter = plain_settings();
    stricter.consecutive_failures = 1;
    stricter.base_ejection_time = 20s;
    d.set_settings(stricter);
    EXPECT_TRUE(d.is_ejected("h0"));
    EXPECT_EQ(d.status("h0").ejected_until, t0 + 5s);   // decided under the old settings
    const auto decision = d.record("h1", Outcome::status_5xx, t0);
    EXPECT_EQ(decision.action, Action::ejected);         // one failure is enough now
    EXPECT_EQ(decision.ejected_until, t0 + 20s);
    stricter.consecutive_failures = 0;                   // treated as 1, as at construction
    d.set_settings(stricter);
    EXPECT_EQ(d.settings().consecutive_failures, 1u);
}

TEST(OutlierDetector, LocalAndBackendStreaksAreCountedApart) {
    auto d = detector(plain_settings(), 4);
    // Two of each, interleaved: neither streak reaches three.
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(d.record("h0", Outcome::connect_failed, t0).action, Action::none);
        EXPECT_EQ(d.record("h0", Outcome::status_5xx, t0).action, Action::none);
    }
    EXPECT_EQ(d.status("h0").local_origin_failures, 2u);
    EXPECT_EQ(d.status("h0").backend_origin_failures, 2u);
    // The third backend failure ejects, on the backend streak.
    const auto decision = d.record("h0", Outcome::bad_response, t0);
    EXPECT_EQ(decision.action, Action::ejected);
    EXPECT_EQ(decision.streak, Origin::backend);
    EXPECT_EQ(d.counters().ejections_backend_origin_total, 1u);
    EXPECT_EQ(d.counters().ejections_local_origin_total, 0u);
}

TEST(OutlierDetector, ASuccessResetsBothStreaks) {
    auto d = detector(plain_settings(), 4);
    fail(d, "h0", Outcome::timeout, 2, t0);
    fail(d, "h0", Outcome::status_5xx, 2, t0);
    EXPECT_EQ(d.record("h0", Outcome::success, t0).action, Action::none);
    EXPECT_EQ(d.status("h0").local_origin_failures, 0u);
    EXPECT_EQ(d.status("h0").backend_origin_failures, 0u);
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 2, t0).action, Action::none);
    EXPECT_EQ(d.record("h0", Outcome::timeout, t0).action, Action::ejected);
}

TEST(OutlierDetector, OutcomesWhileEjectedAreIgnored) {
    auto d = detector(plain_settings(), 4);
    fail(d, "h0", Outcome::timeout, 3, t0);
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 10, t0 + 1s).action, Action::none);
    EXPECT_EQ(d.counters().ejections_total, 1u);
    EXPECT_EQ(d.status("h0").local_origin_failures, 0u);
}

TEST(OutlierDetector, TickReturnsHostsWhoseEjectionEnded) {
    auto d = detector(plain_settings(), 4);
    fail(d, "h0", Outcome::timeout, 3, t0);
    fail(d, "h1", Outcome::status_5xx, 3, t0 + 2s);
    EXPECT_EQ(d.next_deadline(), t0 + 5s);
    EXPECT_TRUE(d.tick(t0 + 4999ms).empty());
    EXPECT_EQ(d.tick(t0 + 5s), std::vector<HostId>{"h0"});
    EXPECT_FALSE(d.is_ejected("h0"));
    EXPECT_EQ(d.next_deadline(), t0 + 7s);
    EXPECT_EQ(d.tick(t0 + 8s), std::vector<HostId>{"h1"});
    EXPECT_EQ(d.ejected_count(), 0u);
    EXPECT_EQ(d.next_deadline(), Clock::time_point::max());
    EXPECT_TRUE(d.tick(t0 + 9s).empty());
}

TEST(OutlierDetector, EjectionTimeGrowsWithEachEjectionUpToTheCap) {
    auto s = plain_settings();
    s.max_ejection_time = 12s;
    s.decay_interval = 1h;   // no decay within this test
    auto d = detector(s, 4);
    auto now = t0;
    const ms expected[] = {5s, 10s, 12s, 12s};
    for (std::uint32_t n = 1; n <= 4; ++n) {
        const auto decision = fail(d, "h0", Outcome::connect_failed, 3, now);
        ASSERT_EQ(decision.action, Action::ejected);
        EXPECT_EQ(decision.ejection_count, n);
        EXPECT_EQ(decision.ejected_until - now, expected[n - 1]) << "ejection " << n;
        now = decision.ejected_until;
        EXPECT_EQ(d.tick(now).size(), 1u);
    }
}

TEST(OutlierDetector, HugeEjectionCountsDoNotOverflowPastTheCap) {
    auto s = plain_settings();
    s.decay_interval = 0ms;   // no decay
    auto d = detector(s, 4);
    auto now = t0;
    for (int n = 0; n < 100; ++n) {
        const auto decision = fail(d, "h0", Outcome::connect_failed, 3, now);
        now = decision.ejected_until;
        d.tick(now);
    }
    EXPECT_EQ(d.status("h0").ejection_count, 100u);
    EXPECT_EQ(fail(d, "h0", Outcome::connect_failed, 3, now).ejected_until - now, 300s);
}

TEST(OutlierDetector, EjectionTimeIsJitteredWithinBounds) {
    auto s = plain_settings();
    s.jitter = 0.10;
    auto low = detector(s, 2, 0.0);
    EXPECT_EQ(fail(low, "h0", Outcome::timeout, 3, t0).ejected_until, t0 + 4500ms);
    auto mid = detector(s, 2, 0.5);
    EXPECT_EQ(fail(mid, "h0", Outcome::timeout, 3, t0).ejected_until, t0 + 5000ms);
    auto high = detector(s, 2, 0.999999);
    EXPECT_EQ(fail(high, "h0", Outcome::timeout, 3, t0).ejected_until, t0 + 5500ms);
}

TEST(OutlierDetector, JitterAtTheCapOnlyGoesDown) {
    auto s = plain_settings();
    s.jitter = 0.10;
    s.base_ejection_time = 20s;
    s.max_ejection_time = 20s;
    auto low = detector(s, 2, 0.0);
    EXPECT_EQ(fail(low, "h0", Outcome::timeout, 3, t0).ejected_until, t0 + 16s);
    auto high = detector(s, 2, 0.999999);
    EXPECT_EQ(fail(high, "h0", Outcome::timeout, 3, t0).ejected_until, t0 + 20s);
}

TEST(OutlierDetector, MaxEjectedRoundsDown) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    EXPECT_EQ(detector(s, 0).max_ejected(), 0u);
    EXPECT_EQ(detector(s, 1).max_ejected(), 0u);
    EXPECT_EQ(detector(s, 2).max_ejected(), 1u);
    EXPECT_EQ(detector(s, 3).max_ejected(), 1u);
    EXPECT_EQ(detector(s, 4).max_ejected(), 2u);
    EXPECT_EQ(detector(s, 5).max_ejected(), 2u);
    s.max_ejection_percent = 0.3;
    EXPECT_EQ(detector(s, 10).max_ejected(), 3u);   // 0.3 x 10 is 3, not 2.9999
    s.max_ejection_percent = 1.0;
    EXPECT_EQ(detector(s, 3).max_ejected(), 3u);
    s.max_ejection_percent = 0.0;
    EXPECT_EQ(detector(s, 3).max_ejected(), 0u);
}

TEST(OutlierDetector, CapRefusesAndCountsAndKeepsTheStreak) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    auto d = detector(s, 2);
    EXPECT_EQ(fail(d, "h0", Outcome::connect_failed, 3, t0).action, Action::ejected);
    const auto refused = fail(d, "h1", Outcome::connect_failed, 3, t0);
    EXPECT_EQ(refused.action, Action::refused_by_cap);
    EXPECT_EQ(refused.streak, Origin::local);
    EXPECT_EQ(refused.failures, 3u);
    EXPECT_FALSE(d.is_ejected("h1"));
    EXPECT_EQ(d.counters().ejections_refused_by_cap_total, 1u);
    // Each further failure tries again; the refusal was reported, so it is not reported or counted
    // again (a dead host behind the cap fails every request sent to it).
    EXPECT_EQ(d.record("h1", Outcome::connect_failed, t0).action, Action::none);
    EXPECT_EQ(d.record("h1", Outcome::status_5xx, t0).action, Action::none);
    EXPECT_EQ(d.counters().ejections_refused_by_cap_total, 1u);
    // Once h0 is back, h1's next failure ejects it at once.
    d.tick(t0 + 5s);
    const auto later = d.record("h1", Outcome::connect_failed, t0 + 5s);
    EXPECT_EQ(later.action, Action::ejected);
    EXPECT_EQ(later.failures, 5u);
    EXPECT_EQ(d.counters().ejections_total, 2u);
}

TEST(OutlierDetector, ANewStreakRefusedByTheCapIsReportedAgain) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    auto d = detector(s, 2);
    fail(d, "h0", Outcome::connect_failed, 3, t0);
    EXPECT_EQ(fail(d, "h1", Outcome::connect_failed, 3, t0).action, Action::refused_by_cap);
    EXPECT_EQ(d.record("h1", Outcome::success, t0).action, Action::none);   // the streak ends
    EXPECT_EQ(fail(d, "h1", Outcome::status_5xx, 3, t0).action, Action::refused_by_cap);
    EXPECT_EQ(d.counters().ejections_refused_by_cap_total, 2u);
}

TEST(OutlierDetector, ASingleHostClusterIsNeverEjected) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    auto d = detector(s, 1);
    EXPECT_EQ(fail(d, "h0", Outcome::connect_failed, 3, t0).action, Action::refused_by_cap);
    EXPECT_EQ(d.ejected_count(), 0u);
}

TEST(OutlierDetector, ThreeHostsAtHalfEjectOnlyOne) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    auto d = detector(s, 3);
    EXPECT_EQ(fail(d, "h0", Outcome::status_5xx, 3, t0).action, Action::ejected);
    EXPECT_EQ(fail(d, "h1", Outcome::status_5xx, 3, t0).action, Action::refused_by_cap);
    EXPECT_EQ(fail(d, "h2", Outcome::timeout, 3, t0).action, Action::refused_by_cap);
    EXPECT_EQ(d.counters().ejections_refused_by_cap_total, 2u);
}

TEST(OutlierDetector, RemovingAnEjectedHostFreesItsSlot) {
    auto s = plain_settings();
    s.max_ejection_percent = 0.5;
    auto d = detector(s, 4);
    fail(d, "h0", Outcome::timeout, 3, t0);
    fail(d, "h1", Outcome::timeout, 3, t0);
    EXPECT_EQ(d.ejected_count(), 2u);
    d.remove_host("h0");
    EXPECT_EQ(d.ejected_count(), 1u);
    EXPECT_EQ(d.host_count(), 3u);
    d.remove_host("h0");   // twice is harmless
    d.add_host("h4");      // back to 4 hosts: 2 may be ejected
    EXPECT_EQ(fail(d, "h2", Outcome::timeout, 3, t0).action, Action::ejected);
}

TEST(OutlierDetector, RecordAddsUnknownHosts) {
    OutlierDetector d(plain_settings(), [] { return 0.5; });
    d.record("new", Outcome::success, t0);
    EXPECT_EQ(d.host_count(), 1u);
    EXPECT_FALSE(d.status("missing").ejected);
}

TEST(OutlierDetector, UnejectBringsAHostBackEarly) {
    auto d = detector(plain_settings(), 4);
    fail(d, "h0", Outcome::timeout, 3, t0);
    EXPECT_TRUE(d.uneject("h0", t0 + 1s));
    EXPECT_FALSE(d.is_ejected("h0"));
    EXPECT_EQ(d.ejected_count(), 0u);
    EXPECT_EQ(d.counters().unejections_early_total, 1u);
    EXPECT_TRUE(d.tick(t0 + 5s).empty());   // the old deadline no longer fires
    EXPECT_FALSE(d.uneject("h0", t0 + 2s));
    EXPECT_FALSE(d.uneject("missing", t0 + 2s));
    EXPECT_EQ(d.counters().unejections_early_total, 1u);
    // n was kept: the next ejection is longer.
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 3, t0 + 2s).ejected_until, t0 + 12s);
}

TEST(OutlierDetector, DecayTakesOneStepPerIntervalOfGoodBehaviour) {
    auto d = detector(plain_settings(), 4);   // decay 30 s
    // Ejected three times in a row: n = 3.
    auto now = t0;
    for (int i = 0; i < 3; ++i) {
        now = fail(d, "h0", Outcome::timeout, 3, now).ejected_until;
        d.tick(now);
    }
    EXPECT_EQ(d.status("h0").ejection_count, 3u);
    const auto back = now;
    d.tick(back + 29s);
    EXPECT_EQ(d.status("h0").ejection_count, 3u);
    d.tick(back + 30s);
    EXPECT_EQ(d.status("h0").ejection_count, 2u);
    // Rare ticks decay just as much as frequent ones: 65 s = two full steps from the start.
    d.tick(back + 65s);
    EXPECT_EQ(d.status("h0").ejection_count, 1u);
    d.tick(back + 1h);
    EXPECT_EQ(d.status("h0").ejection_count, 0u);
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 3, back + 1h).ejected_until, back + 1h + 5s);
}

TEST(OutlierDetector, AFlappingHostKeepsItsGrowingEjectionTime) {
    auto d = detector(plain_settings(), 4);
    auto until = fail(d, "h0", Outcome::timeout, 3, t0).ejected_until;
    d.tick(until);
    // Back for less than a decay interval, fails again: 10 s, not 5 s.
    const auto again = until + 29s;
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 3, again).ejected_until, again + 10s);
}

TEST(OutlierDetector, DecayIsAppliedOnRecordWithoutATick) {
    auto d = detector(plain_settings(), 4);
    const auto until = fail(d, "h0", Outcome::timeout, 3, t0).ejected_until;
    d.tick(until);
    const auto later = until + 31s;
    EXPECT_EQ(fail(d, "h0", Outcome::timeout, 3, later).ejection_count, 1u);
}

TEST(OutlierDetector, SettingsFromConfig) {
    config::OutlierDetection c;
    c.consecutive_failures = 7;
    c.base_ejection_time = 2s;
    c.max_ejection_time = 60s;
    c.max_ejection_percent = 0.25;
    const auto s = OutlierDetector::Settings::from(c);
    EXPECT_EQ(s.consecutive_failures, 7u);
    EXPECT_EQ(s.base_ejection_time, 2s);
    EXPECT_EQ(s.max_ejection_time, 60s);
    EXPECT_DOUBLE_EQ(s.max_ejection_percent, 0.25);
    EXPECT_EQ(s.decay_interval, 12s);
    EXPECT_DOUBLE_EQ(s.jitter, 0.10);
}

TEST(OutlierDetector, ZeroConsecutiveFailuresIsTreatedAsOne) {
    auto s = plain_settings();
    s.consecutive_failures = 0;
    auto d = detector(s, 4);
    EXPECT_EQ(d.record("h0", Outcome::success, t0).action, Action::none);
    EXPECT_EQ(d.record("h0", Outcome::timeout, t0).action, Action::ejected);
}

}  // namespace
}  // namespace drover::health
