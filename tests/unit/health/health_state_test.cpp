// health/health_state: rise/fall, the first-pass rule, transition history, probe scheduling.
// Time and randomness are passed in, so every case is exact.

#include "health/health_state.hpp"

#include <gtest/gtest.h>

#include <set>

namespace drover::health {
namespace {

using namespace std::chrono_literals;
using ms = std::chrono::milliseconds;

const Clock::time_point t0{std::chrono::hours(1000)};

TEST(HealthState, StartsUnknownWithNoHistory) {
    HealthState s(2, 3);
    EXPECT_EQ(s.health(), Health::unknown);
    EXPECT_EQ(s.consecutive_passes(), 0u);
    EXPECT_EQ(s.consecutive_failures(), 0u);
    EXPECT_TRUE(s.history().empty());
}

TEST(HealthState, NewThresholdsKeepTheHealthAndApplyFromTheNextProbe) {
    HealthState s(1, 3);
    s.record(true, t0);
    s.record(false, t0 + 1s);
    EXPECT_EQ(s.health(), Health::healthy);
    s.set_thresholds(1, 2);   // a reload makes the fall faster
    EXPECT_EQ(s.health(), Health::healthy);
    EXPECT_EQ(s.consecutive_failures(), 1u);
    EXPECT_EQ(s.record(false, t0 + 2s), Transition::became_unhealthy);
    s.set_thresholds(0, 0);   // 0 would flip without evidence: treated as 1
    EXPECT_EQ(s.record(true, t0 + 3s), Transition::became_healthy);
}

TEST(HealthState, FirstPassFromUnknownIsHealthyAtOnce) {
    HealthState s(3, 3);   // rise 3 applies to recovery, not to a host that has never served
    EXPECT_EQ(s.record(true, t0), Transition::became_healthy);
    EXPECT_EQ(s.health(), Health::healthy);
    ASSERT_EQ(s.history().size(), 1u);
    EXPECT_EQ(s.history()[0].from, Health::unknown);
    EXPECT_EQ(s.history()[0].to, Health::healthy);
    EXPECT_EQ(s.history()[0].at, t0);
    EXPECT_EQ(s.history()[0].reason, "first check passed");
}

TEST(HealthState, FailuresWhileUnknownStayUnknownButAreCounted) {
    HealthState s(2, 2);
    for (int i = 0; i < 10; ++i) { EXPECT_EQ(s.record(false, t0 + ms(i), "connection refused"), Transition::none); }
    EXPECT_EQ(s.health(), Health::unknown);
    EXPECT_EQ(s.consecutive_failures(), 10u);
    EXPECT_TRUE(s.history().empty());
    EXPECT_EQ(s.record(true, t0 + 1s), Transition::became_healthy);
    EXPECT_EQ(s.consecutive_failures(), 0u);
}

TEST(HealthState, HealthyBecomesUnhealthyAfterExactlyTheFallThreshold) {
    HealthState s(2, 3);
    s.record(true, t0);
    EXPECT_EQ(s.record(false, t0 + 1s), Transition::none);
    EXPECT_EQ(s.record(false, t0 + 2s), Transition::none);
    EXPECT_EQ(s.health(), Health::healthy);
    EXPECT_EQ(s.record(false, t0 + 3s, "timeout"), Transition::became_unhealthy);
    EXPECT_EQ(s.health(), Health::unhealthy);
    EXPECT_EQ(s.history().back().reason, "3 consecutive checks failed: timeout");
    // Further failures do not transition again.
    EXPECT_EQ(s.record(false, t0 + 4s), Transition::none);
}

TEST(HealthState, APassInTheMiddleResetsTheFailureStreak) {
    HealthState s(2, 2);
    s.record(true, t0);
    s.record(false, t0 + 1s);
    s.record(true, t0 + 2s);
    EXPECT_EQ(s.record(false, t0 + 3s), Transition::none);
    EXPECT_EQ(s.health(), Health::healthy);
    EXPECT_EQ(s.record(false, t0 + 4s), Transition::became_unhealthy);
}

TEST(HealthState, UnhealthyRecoversAfterExactlyTheRiseThreshold) {
    HealthState s(3, 1);
    s.record(true, t0);
    EXPECT_EQ(s.record(false, t0 + 1s), Transition::became_unhealthy);
    EXPECT_EQ(s.record(true, t0 + 2s), Transition::none);
    EXPECT_EQ(s.record(true, t0 + 3s), Transition::none);
    EXPECT_EQ(s.health(), Health::unhealthy);
    EXPECT_EQ(s.record(true, t0 + 4s, "200"), Transition::became_healthy);
    EXPECT_EQ(s.history().back().reason, "3 consecutive checks passed: 200");
    EXPECT_EQ(s.history().back().from, Health::unhealthy);
}

TEST(HealthState, AFailureInTheMiddleResetsThePassStreak) {
    HealthState s(2, 1);
    s.record(true, t0);
    s.record(false, t0 + 1s);
    s.record(true, t0 + 2s);
    s.record(false, t0 + 3s);
    EXPECT_EQ(s.record(true, t0 + 4s), Transition::none);
    EXPECT_EQ(s.record(true, t0 + 5s), Transition::became_healthy);
}

TEST(HealthState, ThresholdsOfOneFlipOnEveryOppositeResult) {
    HealthState s(1, 1);
    EXPECT_EQ(s.record(true, t0), Transition::became_healthy);
    EXPECT_EQ(s.record(false, t0), Transition::became_unhealthy);
    EXPECT_EQ(s.record(true, t0), Transition::became_healthy);
}

TEST(HealthState, ZeroThresholdsAreTreatedAsOne) {
    HealthState s(0, 0);
    s.record(true, t0);
    EXPECT_EQ(s.record(false, t0), Transition::became_unhealthy);
    EXPECT_EQ(s.record(true, t0), Transition::became_healthy);
}

TEST(HealthState, ConfigThresholdsAreUsed) {
    config::HealthCheck check;
    check.healthy_threshold = 1;
    check.unhealthy_threshold = 4;
    HealthState s(check);
    s.record(true, t0);
    for (int i = 0; i < 3; ++i) { EXPECT_EQ(s.record(false, t0), Transition::none); }
    EXPECT_EQ(s.record(false, t0), Transition::became_unhealthy);
    EXPECT_EQ(s.record(true, t0), Transition::became_healthy);
}

TEST(HealthState, HistoryKeepsTheLastNTransitionsOldestFirst) {
    HealthState s(1, 1, 3);
    s.record(true, t0 + 1s);    // unknown -> healthy
    s.record(false, t0 + 2s);   // -> unhealthy
    s.record(true, t0 + 3s);    // -> healthy
    s.record(false, t0 + 4s);   // -> unhealthy; the first one falls out
    ASSERT_EQ(s.history().size(), 3u);
    EXPECT_EQ(s.history()[0].at, t0 + 2s);
    EXPECT_EQ(s.history()[0].to, Health::unhealthy);
    EXPECT_EQ(s.history()[2].at, t0 + 4s);
    EXPECT_EQ(s.history()[2].reason, "1 consecutive checks failed");
}

TEST(HealthState, HistoryOfZeroKeepsNothing) {
    HealthState s(1, 1, 0);
    s.record(true, t0);
    EXPECT_TRUE(s.history().empty());
    EXPECT_EQ(s.health(), Health::healthy);
}

TEST(HealthState, ReasonForFirstPassCarriesTheDetail) {
    HealthState s(2, 2);
    s.record(true, t0, "HTTP 200");
    EXPECT_EQ(s.history()[0].reason, "first check passed: HTTP 200");
}

TEST(HealthState, Names) {
    EXPECT_EQ(to_string(Health::unknown), "unknown");
    EXPECT_EQ(to_string(Health::healthy), "healthy");
    EXPECT_EQ(to_string(Health::unhealthy), "unhealthy");
    EXPECT_EQ(to_string(Transition::became_healthy), "became_healthy");
    EXPECT_EQ(to_string(Transition::became_unhealthy), "became_unhealthy");
    EXPECT_EQ(to_string(Transition::none), "none");
}

// --- next_probe_delay ------------------------------------------------------------------------------

config::HealthCheck check_1s() {
    config::HealthCheck c;
    c.interval = 1s;
    c.unhealthy_interval = 250ms;
    c.jitter = 0.10;
    return c;
}

TEST(NextProbeDelay, HealthyUsesTheIntervalPlusMinusJitter) {
    HealthState s(1, 1);
    s.record(true, t0);
    const auto c = check_1s();
    EXPECT_EQ(s.next_probe_delay(c, 0.0), 900ms);
    EXPECT_EQ(s.next_probe_delay(c, 0.5), 1000ms);
    EXPECT_EQ(s.next_probe_delay(c, 0.999999), 1100ms);
    EXPECT_EQ(s.next_probe_delay(c, 0.25), 950ms);
}

TEST(NextProbeDelay, UnhealthyAndUnknownUseTheUnhealthyInterval) {
    const auto c = check_1s();
    HealthState unknown(1, 1);
    EXPECT_EQ(unknown.next_probe_delay(c, 0.5), 250ms);
    HealthState down(1, 1);
    down.record(true, t0);
    down.record(false, t0);
    EXPECT_EQ(down.next_probe_delay(c, 0.0), 225ms);
    EXPECT_EQ(down.next_probe_delay(c, 0.5), 250ms);
    EXPECT_EQ(down.next_probe_delay(c, 0.999999), 275ms);
}

TEST(NextProbeDelay, StaysInsideTheJitterBoundsForAnyRandom) {
    HealthState s(1, 1);
    s.record(true, t0);
    const auto c = check_1s();
    for (int i = 0; i < 1000; ++i) {
        const auto d = s.next_probe_delay(c, i / 1000.0);
        EXPECT_GE(d, 900ms);
        EXPECT_LE(d, 1100ms);
    }
}

TEST(NextProbeDelay, NoJitterIsExactAndFullJitterNeverReachesZero) {
    HealthState s(1, 1);
    s.record(true, t0);
    auto c = check_1s();
    c.jitter = 0.0;
    EXPECT_EQ(s.next_probe_delay(c, 0.0), 1000ms);
    EXPECT_EQ(s.next_probe_delay(c, 0.99), 1000ms);
    c.jitter = 1.0;
    EXPECT_EQ(s.next_probe_delay(c, 0.0), 1ms);   // never a busy loop
    c.jitter = 5.0;                               // clamped to 1
    EXPECT_EQ(s.next_probe_delay(c, 0.0), 1ms);
    EXPECT_EQ(s.next_probe_delay(c, 0.5), 1000ms);
}

TEST(FirstProbeDelay, IsUniformOverTheInterval) {
    EXPECT_EQ(first_probe_delay(1s, 0.0), 0ms);
    EXPECT_EQ(first_probe_delay(1s, 0.5), 500ms);
    EXPECT_EQ(first_probe_delay(1s, 0.999999), 999ms);
    EXPECT_EQ(first_probe_delay(1s, 1.0), 999ms);   // a sloppy source cannot reach the interval
    EXPECT_EQ(first_probe_delay(0ms, 0.7), 0ms);
}

TEST(FirstProbeDelay, SpreadsManyHostsAcrossTheWholeInterval) {
    // 100 hosts with evenly spread randoms land 10 ms apart: no two probe together.
    std::set<ms> delays;
    for (int i = 0; i < 100; ++i) { delays.insert(first_probe_delay(1s, i / 100.0)); }
    EXPECT_EQ(delays.size(), 100u);
    EXPECT_EQ(*delays.begin(), 0ms);
    EXPECT_EQ(*delays.rbegin(), 990ms);
}

}  // namespace
}  // namespace drover::health
