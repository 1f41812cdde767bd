// health/concurrency_limiter: admission at the limit, the gradient loop against a simulated closed-loop
// backend (queueing, faster and slower backends, idle clients), failures, the min RTT probe, and bounds.

#include "health/concurrency_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace drover::health {
namespace {

using namespace std::chrono_literals;
using Clock = ConcurrencyLimiter::Clock;
using Duration = ConcurrencyLimiter::Duration;

const Clock::time_point t0{std::chrono::hours(1000)};

double ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Limit seen over a stretch of simulated time.
struct Trace {
    std::uint32_t lo = std::numeric_limits<std::uint32_t>::max();
    std::uint32_t hi = 0;
    double sum = 0;
    std::uint64_t steps = 0;
    double mean() const { return steps == 0 ? 0.0 : sum / static_cast<double>(steps); }
};

// `clients` clients in a closed loop (each sends again as soon as its last request finished, and retries
// every step while refused) in front of a backend with `capacity` parallel slots and `service` time per
// request (each request's work drawn from 0.8-1.2 x service by a fixed LCG, so completions do not march
// in lockstep): with n requests in flight each progresses at min(1, capacity / n), so above capacity the
// latency is service x n / capacity (processor sharing). Time moves in 1 ms steps.
class ClosedLoop {
public:
    static constexpr Duration kStep = 1ms;

    ClosedLoop(ConcurrencyLimiter& limiter, std::size_t clients) : limiter_(limiter), clients_(clients) {}

    double capacity = 1e9;   // no queueing unless a test sets it
    Duration service = 10ms;
    bool failing = false;    // completions are reported as ok=false (timeouts)
    Clock::time_point now = t0;

    Trace run_for(Duration d) {
        Trace trace;
        for (Duration t{0}; t < d; t += kStep) {
            step();
            trace.lo = std::min(trace.lo, limiter_.limit());
            trace.hi = std::max(trace.hi, limiter_.limit());
            trace.sum += limiter_.limit();
            ++trace.steps;
        }
        return trace;
    }

private:
    struct Request {
        double work_left_ns;
        Clock::time_point sent;
    };

    void step() {
        while (active_.size() < clients_ && limiter_.try_acquire()) {
            rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
            const double spread = 0.8 + 0.4 * static_cast<double>(rng_ >> 11) / static_cast<double>(1ULL << 53);
            active_.push_back(Request{spread * static_cast<double>(service.count()), now});
        }
        const double rate = std::min(1.0, capacity / static_cast<double>(std::max<std::size_t>(1, active_.size())));
        const double progress = rate * static_cast<double>(kStep.count());
        now += kStep;
        std::erase_if(active_, [&](Request& r) {
            r.work_left_ns -= progress;
            if (r.work_left_ns > 1e-6) { return false; }
            limiter_.release(now, now - r.sent, !failing);
            return true;
        });
    }

    ConcurrencyLimiter& limiter_;
    std::size_t clients_;
    std::vector<Request> active_;
    std::uint64_t rng_ = 42;
};

ConcurrencyLimiter::Settings settings(std::uint32_t min_limit, std::uint32_t max_limit, std::uint32_t initial) {
    ConcurrencyLimiter::Settings s = ConcurrencyLimiter::Settings::from(config::AdaptiveConcurrency{min_limit, max_limit});
    s.initial_limit = initial;
    return s;
}

std::uint32_t fill(ConcurrencyLimiter& l) {
    std::uint32_t n = 0;
    while (l.try_acquire()) { ++n; }
    return n;
}

// Hand-driven window [t, t + window): fill up to the cap, then release everything in flight spread over
// the window, the last one exactly at its end so it closes; the first `failures` fail. Needs a window
// open at t (the previous one closed at t, or prime() opened it).
Clock::time_point window(ConcurrencyLimiter& l, Clock::time_point t, Duration latency, std::uint32_t failures = 0) {
    fill(l);
    const std::uint32_t n = l.in_flight();
    const Duration w = l.settings().window;
    for (std::uint32_t i = 1; i <= n; ++i) { l.release(t + w * i / n, latency, i > failures); }
    return t + w;
}

// Opens the first window at t with one sample.
void prime(ConcurrencyLimiter& l, Clock::time_point t, Duration latency) {
    ASSERT_TRUE(l.try_acquire());
    l.release(t, latency, true);
}

TEST(ConcurrencyLimiter, SettingsComeFromConfigWithDocumentedDefaults) {
    const auto s = ConcurrencyLimiter::Settings::from(config::AdaptiveConcurrency{8, 300});
    EXPECT_EQ(s.min_limit, 8u);
    EXPECT_EQ(s.max_limit, 300u);
    EXPECT_EQ(s.window, 100ms);
    EXPECT_DOUBLE_EQ(s.tolerance, 1.25);
    const auto d = ConcurrencyLimiter::Settings::from(config::AdaptiveConcurrency{});
    EXPECT_EQ(d.min_limit, 4u);
    EXPECT_EQ(d.max_limit, 1000u);
    // Out-of-range settings are clamped, never wedge admission.
    ConcurrencyLimiter l(settings(0, 0, 50));
    EXPECT_EQ(l.limit(), 1u);
    EXPECT_TRUE(l.try_acquire());
    EXPECT_FALSE(l.try_acquire());
}

TEST(ConcurrencyLimiter, TryAcquireRefusesAtTheLimitAndCountsRejections) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    EXPECT_EQ(l.limit(), 20u);
    EXPECT_EQ(fill(l), 20u);
    EXPECT_EQ(l.in_flight(), 20u);
    EXPECT_FALSE(l.try_acquire());
    EXPECT_FALSE(l.try_acquire());
    EXPECT_EQ(l.counters().admitted_total, 20u);
    EXPECT_EQ(l.counters().rejected_total, 3u);   // the one ending fill(), and two more
    l.release(t0, 1ms, true);
    EXPECT_TRUE(l.try_acquire());
    EXPECT_EQ(l.counters().admitted_total, 21u);
}

TEST(ConcurrencyLimiter, InFlightStaysConsistentAcrossReleases) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    for (int i = 0; i < 10; ++i) { ASSERT_TRUE(l.try_acquire()); }
    for (int i = 0; i < 4; ++i) { l.release(t0 + std::chrono::milliseconds(i), 5ms, true); }
    for (int i = 0; i < 3; ++i) { l.release(t0 + 5ms, 5ms, false); }
    l.release_ignored();
    EXPECT_EQ(l.in_flight(), 2u);
    l.release_ignored();
    l.release_ignored();
    EXPECT_EQ(l.in_flight(), 0u);
    l.release_ignored();   // a stray extra release does not wrap around
    EXPECT_EQ(l.in_flight(), 0u);
    EXPECT_EQ(fill(l), 20u);
}

TEST(ConcurrencyLimiter, SteadyLowLatencyUnderLoadGrowsToMaxAndStays) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    ClosedLoop sim(l, 2000);   // more clients than max_limit, a backend that never queues
    sim.run_for(40s);          // +0.2 x sqrt(limit) a window: 20 -> 1000 in about 27 s
    EXPECT_EQ(l.limit(), 1000u);
    const Trace after = sim.run_for(10s);
    EXPECT_EQ(after.lo, 1000u);
    EXPECT_NEAR(ms(l.min_rtt()), 10.0, 1.0);
    EXPECT_EQ(l.counters().limit_decreases, 0u);
    EXPECT_EQ(l.counters().min_rtt_probes, 0u);
}

// Above capacity latency grows as service x in_flight / capacity. The limit settles near
// tolerance x capacity + sqrt(limit) (about 1.37 x capacity at 100): documented band [0.7, 1.5] x capacity.
TEST(ConcurrencyLimiter, QueueingConvergesNearTheBackendCapacity) {
    for (const double capacity : {50.0, 100.0, 300.0}) {
        SCOPED_TRACE(capacity);
        ConcurrencyLimiter l(settings(4, 1000, 20));
        ClosedLoop sim(l, 1000);
        sim.capacity = capacity;
        sim.run_for(30s);
        const Trace settled = sim.run_for(30s);
        EXPECT_GE(settled.lo, 0.7 * capacity);
        EXPECT_LE(settled.hi, 1.5 * capacity);
        EXPECT_GE(settled.mean(), 0.9 * capacity);   // and it keeps the backend busy
        // The no-load latency is not mistaken for the queueing one...
        EXPECT_NEAR(ms(l.min_rtt()), 10.0, 1.0);
        // ...and a limit hovering over a queue it has already sized does not set off probes.
        EXPECT_LE(l.counters().min_rtt_probes, 1u);
    }
}

TEST(ConcurrencyLimiter, FasterBackendLowersMinRttAtOnceAndRaisesTheLimit) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    ClosedLoop sim(l, 1000);
    sim.capacity = 100;
    sim.service = 20ms;
    sim.run_for(30s);
    EXPECT_NEAR(ms(l.min_rtt()), 20.0, 2.0);
    const std::uint32_t before = l.limit();
    EXPECT_LE(before, 150u);

    // Scaled out onto faster hosts: twice the slots, half the service time.
    sim.capacity = 200;
    sim.service = 10ms;
    sim.run_for(500ms);
    EXPECT_NEAR(ms(l.min_rtt()), 10.0, 1.0);
    sim.run_for(20s);
    const Trace settled = sim.run_for(20s);
    EXPECT_GT(settled.lo, before);
    EXPECT_GE(settled.lo, 0.7 * 200);
    EXPECT_LE(settled.hi, 1.5 * 200);
}

TEST(ConcurrencyLimiter, SlowerBackendDoesNotCollapseTheLimit) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    ClosedLoop sim(l, 2000);
    sim.run_for(30s);
    ASSERT_EQ(l.limit(), 1000u);

    // Latency doubles, but nothing queues: no reason to hold fewer requests.
    sim.service = 20ms;
    const Trace dip = sim.run_for(15s);
    EXPECT_GE(dip.lo, 500u);   // a short dip while the probe re-learns, far from min_limit
    EXPECT_NEAR(ms(l.min_rtt()), 20.0, 2.0);
    EXPECT_GE(l.counters().min_rtt_probes, 1u);
    EXPECT_EQ(l.limit(), 1000u);   // and back
}

// What the probe buys: the same trace with probing disabled walks down towards min_limit.
TEST(ConcurrencyLimiter, WithoutTheProbeASlowerBackendWouldCollapseTheLimit) {
    auto s = settings(4, 1000, 20);
    s.probe_after = std::numeric_limits<std::uint32_t>::max();
    ConcurrencyLimiter l(s);
    ClosedLoop sim(l, 2000);
    sim.run_for(30s);
    sim.service = 20ms;
    sim.run_for(15s);
    EXPECT_LE(l.limit(), 20u);
    EXPECT_EQ(l.counters().min_rtt_probes, 0u);
}

TEST(ConcurrencyLimiter, SlowerBackendWithLimitedCapacityKeepsTheLimitNearCapacity) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    ClosedLoop sim(l, 1000);
    sim.capacity = 100;
    sim.run_for(30s);
    // Same slots, each twice as slow: the right concurrency is still about 100.
    sim.service = 20ms;
    sim.run_for(20s);
    const Trace settled = sim.run_for(20s);
    EXPECT_GE(settled.lo, 70u);
    EXPECT_LE(settled.hi, 150u);
    EXPECT_NEAR(ms(l.min_rtt()), 20.0, 2.0);
}

TEST(ConcurrencyLimiter, IdleSystemDoesNotGrowTheLimit) {
    ConcurrencyLimiter l(settings(4, 1000, 20));
    ClosedLoop sim(l, 2);   // never more than 2 in flight against a limit of 20
    const Trace idle = sim.run_for(60s);
    EXPECT_EQ(idle.hi, 20u);
    EXPECT_EQ(idle.lo, 20u);
    EXPECT_EQ(l.counters().limit_increases, 0u);
    EXPECT_GT(l.counters().app_limited_windows, 100u);
    EXPECT_NEAR(ms(l.min_rtt()), 10.0, 1.0);   // still learns the no-load latency
    // Slow responses while idle do not shrink it either: the limit was not what held traffic back.
    sim.service = 100ms;
    sim.run_for(30s);
    EXPECT_EQ(l.limit(), 20u);
}

TEST(ConcurrencyLimiter, FailuresUnderLoadCutTheLimit) {
    ConcurrencyLimiter l(settings(4, 1000, 500));
    prime(l, t0, 10ms);
    auto t = window(l, t0, 10ms);
    const std::uint32_t before = l.limit();
    EXPECT_EQ(before, 504u);   // 500 + 0.2 x sqrt(500)
    t = window(l, t, 10ms, 50);   // 10% timeouts
    EXPECT_EQ(l.limit(), 454u);   // 504.47 x 0.9, no smoothing
    EXPECT_EQ(l.counters().limit_decreases, 1u);
    // One timeout in 454 (under failure_ratio) is noise, not overload.
    window(l, t, 10ms, 1);
    EXPECT_GT(l.limit(), 454u);
}

TEST(ConcurrencyLimiter, SustainedTimeoutsWalkTheLimitDownToMinLimit) {
    ConcurrencyLimiter l(settings(4, 1000, 200));
    ClosedLoop sim(l, 1000);
    sim.run_for(5s);
    sim.failing = true;
    const Trace failing = sim.run_for(10s);
    EXPECT_EQ(l.limit(), 4u);
    EXPECT_EQ(failing.lo, 4u);
}

TEST(ConcurrencyLimiter, FastFailuresAtLowLoadLeaveTheLimitAlone) {
    ConcurrencyLimiter l(settings(4, 1000, 100));
    ClosedLoop sim(l, 5);
    sim.failing = true;
    sim.run_for(10s);
    EXPECT_EQ(l.limit(), 100u);
}

TEST(ConcurrencyLimiter, OneSlowWindowCostsAtMostTenPercent) {
    ConcurrencyLimiter l(settings(4, 1000, 500));
    prime(l, t0, 10ms);
    auto t = window(l, t0, 10ms);
    const std::uint32_t before = l.limit();
    t = window(l, t, 1s);   // 100x slower for one window: the gradient bottoms out at 0.5
    EXPECT_GE(l.limit(), before * 9 / 10);
    EXPECT_LT(l.limit(), before);
    EXPECT_EQ(l.sample_rtt(), 1s);
    EXPECT_EQ(l.min_rtt(), 10ms);
    window(l, t, 10ms);   // and it grows again right after
    EXPECT_FALSE(l.probing());
}

// Floor learned at 10 ms, then five windows at 20 ms cut the limit by a quarter: the fifth window closes
// with 5 requests still out, and the probe starts. Returns when it started.
Clock::time_point start_probe_after_slowdown(ConcurrencyLimiter& l) {
    prime(l, t0, 10ms);
    auto t = window(l, t0, 10ms);
    EXPECT_EQ(l.min_rtt(), 10ms);
    const std::uint32_t before = l.limit();
    for (int i = 0; i < 4; ++i) { t = window(l, t, 20ms); }
    EXPECT_FALSE(l.probing());
    EXPECT_EQ(l.counters().min_rtt_probes, 0u);
    fill(l);
    const std::uint32_t n = l.in_flight() - 5;
    for (std::uint32_t i = 1; i <= n; ++i) { l.release(t + 100ms * i / n, 20ms, true); }
    EXPECT_TRUE(l.probing());
    EXPECT_EQ(l.counters().min_rtt_probes, 1u);
    EXPECT_LE(l.limit(), before * 8 / 10);
    return t + 100ms;
}

TEST(ConcurrencyLimiter, ProbeCapsAdmissionAtHalfAndMeasuresOnlyRequestsAdmittedUnderIt) {
    ConcurrencyLimiter l(settings(4, 1000, 100));
    const auto t = start_probe_after_slowdown(l);
    const std::uint32_t limit = l.limit();   // kept as it is: only admission is capped
    EXPECT_EQ(l.in_flight(), 5u);
    EXPECT_EQ(fill(l) + 5, (limit + 1) / 2);

    // The five sent before the probe queued behind the old load: ignored however slow.
    for (int i = 0; i < 5; ++i) { l.release(t + 10ms, 50ms, true); }
    // Ten sent under the cap: the backend really is at 20 ms now.
    for (int i = 0; i < 10; ++i) { l.release(t + 30ms, 20ms, true); }
    // One admitted after the probe's admission span (window + last sample = 120 ms) is not measured; the
    // probe ends at 120 ms + 2 x 20 ms.
    l.release(t + 159ms, 10ms, true);
    EXPECT_TRUE(l.probing());
    l.release(t + 160ms, 10ms, true);
    EXPECT_FALSE(l.probing());
    EXPECT_EQ(l.min_rtt(), 20ms);   // halving the load left latency where it was: the backend slowed
    EXPECT_EQ(l.limit(), limit);
    fill(l);
    EXPECT_EQ(l.in_flight(), limit);   // full admission is back
}

TEST(ConcurrencyLimiter, ProbeThatFindsAQueueKeepsMinRtt) {
    ConcurrencyLimiter l(settings(4, 1000, 100));
    const auto t = start_probe_after_slowdown(l);
    fill(l);
    // At half the load latency fell from 20 to 12 ms: that was queueing, and 12 ms may still hold some.
    while (l.in_flight() > 0) { l.release(t + 30ms, 12ms, true); }
    ASSERT_TRUE(l.try_acquire());
    l.release(t + 160ms, 12ms, true);
    EXPECT_FALSE(l.probing());
    EXPECT_EQ(l.min_rtt(), 10ms);

    // The brake: the next probe waits for twice the streak (10 windows), however far the limit falls.
    auto next = t + 160ms;
    for (int i = 0; i < 9; ++i) { next = window(l, next, 20ms); }
    EXPECT_FALSE(l.probing());
    window(l, next, 20ms);
    EXPECT_TRUE(l.probing());
    EXPECT_EQ(l.counters().min_rtt_probes, 2u);
}

TEST(ConcurrencyLimiter, ProbeWithoutTrafficLearnsNothing) {
    ConcurrencyLimiter l(settings(4, 1000, 100));
    const auto t = start_probe_after_slowdown(l);
    while (l.in_flight() > 0) { l.release_ignored(); }
    ASSERT_TRUE(l.try_acquire());
    l.release(t + 6s, 1ms, true);
    EXPECT_FALSE(l.probing());
    EXPECT_EQ(l.min_rtt(), 10ms);
}

TEST(ConcurrencyLimiter, ProbeUnderLightTrafficWaitsForEnoughSamples) {
    // A backend gone from 10 to 20 ms with a few requests a window: the probe's span ends with fewer than
    // min_samples measured. It keeps admitting under its cap until it has them, then learns the new
    // latency, instead of ending with nothing learned and coming back a few windows later.
    ConcurrencyLimiter l(settings(4, 1000, 100));
    const auto t = start_probe_after_slowdown(l);
    const std::uint32_t limit = l.limit();
    while (l.in_flight() > 0) { l.release(t + 10ms, 50ms, true); }   // sent before the probe: not measured
    auto now = t + 10ms;
    int sent = 0;
    while (l.probing() && sent < 80) {   // one request every 60 ms, at 20 ms each
        EXPECT_EQ(l.cap(), (limit + 1) / 2);
        now += 60ms;
        ASSERT_TRUE(l.try_acquire());
        l.release(now + 20ms, 20ms, true);
        ++sent;
    }
    EXPECT_FALSE(l.probing());
    EXPECT_GT(sent, 10) << "it went on past its 160 ms span";
    EXPECT_LT(now - t, 5s) << "and ended within max_window";
    EXPECT_EQ(l.cap(), limit);
    EXPECT_EQ(l.min_rtt(), 20ms);
    EXPECT_EQ(l.counters().min_rtt_probes, 1u);
}

TEST(ConcurrencyLimiter, NeverLeavesTheConfiguredBounds) {
    ConcurrencyLimiter l(settings(4, 50, 20));
    std::uint64_t x = 12345;   // fixed LCG: the trace is the same every run
    auto next = [&x] {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        return x >> 33;
    };
    auto now = t0;
    for (int i = 0; i < 400000; ++i) {
        // Alternating phases: calm (1-3 ms, rare failures) and stormy (10-200 ms, one in ten fails).
        const bool storm = (i / 40000) % 2 == 1;
        const auto want = next() % 80;
        while (l.in_flight() < want && l.try_acquire()) {}
        now += std::chrono::microseconds(next() % 400);
        if (l.in_flight() > 0) {
            const auto latency = storm ? std::chrono::microseconds(10000 + next() % 190000)
                                       : std::chrono::microseconds(1000 + next() % 2000);
            if (next() % 50 == 0) {
                l.release_ignored();
            } else {
                l.release(now, latency, next() % (storm ? 10 : 5000) != 0);
            }
        }
        ASSERT_GE(l.limit(), 4u);
        ASSERT_LE(l.limit(), 50u);
        ASSERT_LE(l.in_flight(), 50u);
    }
    // Both bounds were pushed against, not merely never reached.
    EXPECT_GT(l.counters().limit_increases, 10u);
    EXPECT_GT(l.counters().limit_decreases, 10u);
}

}  // namespace
}  // namespace drover::health
