#pragma once
// ConcurrencyLimiter: how many requests a worker may have outstanding to one cluster, learned from latency
// (a gradient controller, after Envoy's adaptive_concurrency filter and Netflix's Gradient2). Owns the
// limit, the in-flight count, the learned no-load latency (min RTT) and the current sampling window.
//
// Not thread-safe, by design: each worker owns one limiter per cluster and calls it on the data path
// (try_acquire() before sending, exactly one of release()/release_ignored() for every true it returned).
// The control loop only reads limit() and counters() for /metrics. Time is passed in; nothing here reads
// a clock. Durations are nanoseconds so the shell passes `now - sent_at` from steady_clock unconverted.
//
// The loop, once per window (>= `window` long, >= `min_samples` completions, closed by release()):
//   sample   = `percentile` of the window's successful latencies
//   min_rtt  = the same statistic measured without queueing; a lower sample replaces it at once
//   gradient = clamp(tolerance x min_rtt / sample, min_gradient, 1)
//   target   = limit x gradient + sqrt(limit)        (the sqrt is headroom: room to find more capacity)
//   limit    = clamp(limit + smoothing x (target - limit), min_limit, max_limit)
// With a backend of C parallel slots the limit settles near tolerance x C + sqrt(limit): a queue of
// (tolerance - 1) x C is the price of keeping every slot busy (the closed-loop simulation in
// tests/unit/health/concurrency_limiter_test.cpp settles at 1.3-1.45 x C for C = 50-300 and checks
// [0.7, 1.5] x C). Three refinements over the textbook loop:
//
// 1. Floors on the way down. The gradient never goes below min_gradient and is smoothed, so one slow
//    window costs at most smoothing x (1 - min_gradient) of the limit (10% by default), never half.
// 2. App-limited windows teach nothing about the limit. If the peak in-flight of a window stayed below
//    app_limited_ratio x limit, the limit was not what held traffic back: it neither grows (an idle worker
//    would otherwise ratchet it to max_limit, then let a burst through unchecked) nor shrinks. Such a
//    window may still lower min_rtt. Failures in it do not shrink the limit either: fast failures at low
//    load (connection refused) are outlier detection's business, while a hung backend fills the slots and
//    so is never app-limited.
// 3. Re-learning min RTT when it matters, gently. A latency rise looks the same whether the backend got
//    slower or we are queueing at it; the gradient alone would walk the limit down to min_limit if the
//    backend merely slowed down. Envoy re-measures on a timer by dropping to a handful of requests, which
//    costs most of the throughput for the measurement. Letting the floor drift up (Gradient2's long average)
//    is free but cannot tell the two causes apart: under a standing queue floor, limit and queue ratchet
//    up together. Here the limiter runs an experiment instead, and only when there is something to
//    explain: the gradient has been below 1 for `probe_after` windows in a row and the limit fell by
//    `probe_fall` over them (or sits at min_limit, where it cannot fall). A hovering limit, which is what
//    a standing queue the loop has already sized looks like, does not qualify. The probe caps admission at
//    probe_factor x limit (half) for about `window` plus three of the last sample RTTs, and measures the
//    same percentile over requests admitted under the cap (earlier ones waited in the old queue), early
//    enough that all of them finished (the first completions alone would be the fastest ones).
//    With light traffic the probe admits under its cap until min_samples of its requests finished (at
//    most max_window): a probe that ended with too few would learn nothing and come back a few windows
//    later, halving admission again each time.
//    Halving is the experiment: if latency did not drop by more than the tolerance when load halved, it
//    is the backend's own latency and becomes min_rtt, up or down. If it did drop, there was a queue, and
//    the measurement may still hold some of it: min_rtt only takes it if lower, and the streak the next
//    probe needs doubles (up to 64x; it halves again after as long a calm stretch). Halving leaves no
//    queue at the limit's resting point, tolerance x C + sqrt(limit) < 2C with the default tolerance
//    for C >= ~10, and keeps half the throughput meanwhile.
//    Limitation: workers probe independently. A probe halves only its own worker's share, so with several
//    workers queueing at one backend it can take their queue for the backend's latency and raise min_rtt;
//    the first window that finds the queue drained lowers it again at once. If that shows in the e2e runs,
//    the fix is a limiter shared by the workers of a cluster, or probes aligned to the clock.
//
// Failures (release(.., ok=false): timeouts, resets) are the one signal stronger than latency: a window
// where they are at least failure_ratio of its completions cuts the limit by `backoff` (x0.9) at once,
// no smoothing; their latency is not sampled. release_ignored() frees the slot and teaches nothing.

#include <array>
#include <chrono>
#include <cstdint>

#include "config/config.hpp"

namespace drover::health {

class ConcurrencyLimiter {
public:
    using Clock = std::chrono::steady_clock;
    using Duration = std::chrono::nanoseconds;
    // Latencies kept per window for the percentile; past this the window keeps the most recent ones.
    static constexpr std::size_t kMaxSamples = 256;

    struct Settings {
        std::uint32_t min_limit = 4;        // config::AdaptiveConcurrency::min_limit
        std::uint32_t max_limit = 1000;     // config::AdaptiveConcurrency::max_limit
        std::uint32_t initial_limit = 20;   // clamped to [min_limit, max_limit]
        Duration window{std::chrono::milliseconds(100)};   // how often the limit may move
        std::uint32_t min_samples = 10;     // completions a window (or a probe) needs to count
        Duration max_window{std::chrono::seconds(5)};       // a window or probe still short of samples by
                                                            // then is dropped: its data is stale
        double percentile = 0.5;            // of the window's latencies; the median shrugs off outliers
        double tolerance = 1.25;            // latency up to tolerance x min_rtt is not queueing
        double min_gradient = 0.5;          // one window can at most halve the target
        double smoothing = 0.2;             // share of the way to the target taken per window
        double app_limited_ratio = 0.5;     // peak in-flight below this share of the limit: no change
        double failure_ratio = 0.01;        // failures / completions in a window that mean overload
        double backoff = 0.9;               // limit factor for such a window
        std::uint32_t probe_after = 5;      // consecutive windows with gradient < 1 before a probe...
        double probe_fall = 0.2;            // ...that also cut the limit by this share (or left it at min)
        double probe_factor = 0.5;          // admission cap during a probe, as a share of the limit

        static Settings from(const config::AdaptiveConcurrency& config);
    };

    struct Counters {
        std::uint64_t admitted_total = 0;
        std::uint64_t rejected_total = 0;
        std::uint64_t limit_increases = 0;       // windows that raised limit()
        std::uint64_t limit_decreases = 0;       // windows that lowered it (gradient or failures)
        std::uint64_t min_rtt_probes = 0;        // probes started
        std::uint64_t app_limited_windows = 0;   // windows that left the limit alone for lack of load
    };

    ConcurrencyLimiter() : ConcurrencyLimiter(Settings{}) {}
    explicit ConcurrencyLimiter(Settings settings);

    // True: a slot is taken and the caller must hand it back with release() or release_ignored().
    // False: counted as rejected; the caller sheds or queues.
    bool try_acquire() {
        if (in_flight_ >= cap_) {
            ++counters_.rejected_total;
            return false;
        }
        ++in_flight_;
        if (in_flight_ > window_peak_) { window_peak_ = in_flight_; }
        ++counters_.admitted_total;
        return true;
    }

    // A request that held a slot finished at `now` after `latency`. ok=false (timeout, reset, dropped)
    // is a sign of overload and its latency is ignored. May close a window and move the limit.
    void release(Clock::time_point now, Duration latency, bool ok);
    // Finished, but says nothing about the backend (the client went away, a local error).
    void release_ignored() {
        if (in_flight_ > 0) { --in_flight_; }
    }

    std::uint32_t limit() const { return limit_u32_; }
    // What try_acquire() admits up to now: the limit, or less during a probe.
    std::uint32_t cap() const { return cap_; }
    std::uint32_t in_flight() const { return in_flight_; }
    // Zero until the first window closed.
    Duration min_rtt() const { return Duration(min_rtt_); }
    Duration sample_rtt() const { return Duration(sample_rtt_); }
    bool probing() const { return probing_; }
    const Settings& settings() const { return settings_; }
    const Counters& counters() const { return counters_; }

private:
    void close_window(Clock::time_point now);
    void start_probe(Clock::time_point now);
    void finish_probe(Clock::time_point now);
    void open_window(Clock::time_point now);
    void set_limit(double limit);
    std::int64_t take_percentile();
    void add_sample(std::int64_t latency_ns);

    Settings settings_;
    double limit_;                    // kept fractional so small steps accumulate
    std::uint32_t limit_u32_ = 0;     // floor(limit_), what callers see
    std::uint32_t cap_ = 0;           // admission cap: the limit, or the probe's share of it
    std::uint32_t in_flight_ = 0;

    // Current window, or the probe's measurement while probing_ (then window_start_ is when it began).
    bool window_open_ = false;
    Clock::time_point window_start_{};
    std::uint32_t window_peak_ = 0;   // highest in-flight seen since the window opened
    std::uint64_t window_ok_ = 0;     // successful completions (all of them, not only those kept)
    std::uint64_t window_failed_ = 0;
    std::array<std::int64_t, kMaxSamples> samples_{};

    std::int64_t min_rtt_ = 0;        // ns; 0: not learned yet
    std::int64_t sample_rtt_ = 0;     // ns; the last window's statistic

    bool probing_ = false;
    Clock::time_point probe_admit_until_{};   // requests admitted later are not measured...
    Clock::time_point probe_until_{};         // ...and by then the ones before finished
    std::uint32_t pressure_streak_ = 0;   // consecutive loaded windows with gradient < 1
    double streak_from_ = 0;              // the limit before the streak began
    std::uint32_t calm_streak_ = 0;       // consecutive loaded windows with gradient == 1
    std::uint32_t probe_after_ = 0;       // current streak needed; grows after probes that find a queue

    Counters counters_;
};

}  // namespace drover::health
