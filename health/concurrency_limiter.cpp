#include "health/concurrency_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace drover::health {

namespace {

// Probes that keep finding a standing queue back off to at most this many times `probe_after` windows
// (64 x 5 x 100 ms = 32 s by default), so a long overload costs a probe every half minute, not every
// half second.
constexpr std::uint32_t kMaxProbeBackoff = 64;

}  // namespace

ConcurrencyLimiter::Settings ConcurrencyLimiter::Settings::from(const config::AdaptiveConcurrency& config) {
    Settings s;
    s.min_limit = config.min_limit;
    s.max_limit = config.max_limit;
    return s;
}

ConcurrencyLimiter::ConcurrencyLimiter(Settings settings) : settings_(settings) {
    Settings& s = settings_;
    // Config validation rejects these; clamp anyway so a bad Settings cannot wedge admission at 0.
    s.min_limit = std::max<std::uint32_t>(1, s.min_limit);
    s.max_limit = std::max(s.max_limit, s.min_limit);
    s.initial_limit = std::clamp(s.initial_limit, s.min_limit, s.max_limit);
    s.window = std::max(s.window, Duration(1));
    s.max_window = std::max(s.max_window, s.window);
    s.min_samples = std::max<std::uint32_t>(1, s.min_samples);
    s.percentile = std::clamp(s.percentile, 0.0, 1.0);
    s.tolerance = std::max(1.0, s.tolerance);   // below 1 the limit would shrink with no queue at all
    s.min_gradient = std::clamp(s.min_gradient, 0.01, 1.0);
    s.smoothing = std::clamp(s.smoothing, 0.01, 1.0);
    s.app_limited_ratio = std::clamp(s.app_limited_ratio, 0.0, 1.0);
    s.failure_ratio = std::clamp(s.failure_ratio, 0.0, 1.0);
    s.backoff = std::clamp(s.backoff, 0.01, 1.0);
    s.probe_after = std::max<std::uint32_t>(1, s.probe_after);
    s.probe_factor = std::clamp(s.probe_factor, 0.01, 1.0);
    s.probe_fall = std::clamp(s.probe_fall, 0.0, 1.0);

    probe_after_ = s.probe_after;
    limit_ = 0;
    set_limit(static_cast<double>(s.initial_limit));
}

void ConcurrencyLimiter::set_limit(double limit) {
    limit_ = std::clamp(limit, static_cast<double>(settings_.min_limit), static_cast<double>(settings_.max_limit));
    limit_u32_ = static_cast<std::uint32_t>(limit_);
    if (!probing_) { cap_ = limit_u32_; }
}

void ConcurrencyLimiter::open_window(Clock::time_point now) {
    window_open_ = true;
    window_start_ = now;
    window_peak_ = in_flight_;
    window_ok_ = 0;
    window_failed_ = 0;
}

void ConcurrencyLimiter::add_sample(std::int64_t latency_ns) {
    // kMaxSamples is a power of two: the ring index is a mask, and past it the newest samples win.
    samples_[static_cast<std::size_t>(window_ok_ % kMaxSamples)] = std::max<std::int64_t>(0, latency_ns);
    ++window_ok_;
}

std::int64_t ConcurrencyLimiter::take_percentile() {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(window_ok_, kMaxSamples));
    // Nearest rank: the smallest sample with at least `percentile` of the others at or below it.
    const auto rank = static_cast<std::size_t>(std::ceil(settings_.percentile * static_cast<double>(n)));
    const std::size_t index = std::clamp<std::size_t>(rank, 1, n) - 1;
    const auto first = samples_.begin();
    std::nth_element(first, first + static_cast<std::ptrdiff_t>(index), first + static_cast<std::ptrdiff_t>(n));
    return samples_[index];
}

void ConcurrencyLimiter::release(Clock::time_point now, Duration latency, bool ok) {
    if (in_flight_ > 0) { --in_flight_; }

    if (probing_) {
        // Only requests admitted under the probe's cap measure it: older ones waited in the old queue.
        const Clock::time_point admitted = now - latency;
        if (ok && admitted >= window_start_ && admitted <= probe_admit_until_) { add_sample(latency.count()); }
        if (now < probe_until_) { return; }
        if (window_ok_ < settings_.min_samples && now - window_start_ < settings_.max_window) {
            // Light traffic: too few requests admitted under the cap have finished for a verdict. Admit
            // under it a while longer (max_window at most in all), rather than learn nothing and probe
            // again a few windows later, halving admission each time for nothing.
            const Duration tail = probe_until_ - probe_admit_until_;
            probe_admit_until_ = now + settings_.window;
            probe_until_ = probe_admit_until_ + tail;
            return;
        }
        finish_probe(now);
        return;
    }

    if (!window_open_) { open_window(now); }
    if (ok) {
        add_sample(latency.count());
    } else {
        ++window_failed_;
    }
    const Duration elapsed = now - window_start_;
    if (elapsed < settings_.window) { return; }
    if (window_ok_ + window_failed_ >= settings_.min_samples) {
        close_window(now);
    } else if (elapsed >= settings_.max_window) {
        open_window(now);
    }
}

void ConcurrencyLimiter::close_window(Clock::time_point now) {
    const std::uint32_t before = limit_u32_;
    const auto completions = static_cast<double>(window_ok_ + window_failed_);

    if (window_ok_ > 0) {
        sample_rtt_ = take_percentile();
        // A faster backend shows at once, loaded or not: a low latency is never an artefact of queueing.
        if (min_rtt_ == 0 || sample_rtt_ < min_rtt_) { min_rtt_ = std::max<std::int64_t>(1, sample_rtt_); }
    }

    if (static_cast<double>(window_peak_) < settings_.app_limited_ratio * limit_) {
        ++counters_.app_limited_windows;
    } else if (window_failed_ > 0 && static_cast<double>(window_failed_) >= settings_.failure_ratio * completions) {
        set_limit(limit_ * settings_.backoff);
    } else if (window_ok_ > 0) {
        const double gradient = std::clamp(
            settings_.tolerance * static_cast<double>(min_rtt_) / static_cast<double>(std::max<std::int64_t>(1, sample_rtt_)),
            settings_.min_gradient, 1.0);
        if (gradient < 1.0) {
            if (pressure_streak_++ == 0) { streak_from_ = limit_; }
            calm_streak_ = 0;
        } else {
            pressure_streak_ = 0;
            // As long a calm stretch as the streak we wait for: whatever queue the last probes found is
            // shrinking, so the next probe may come sooner.
            if (++calm_streak_ >= probe_after_) {
                probe_after_ = std::max(settings_.probe_after, probe_after_ / 2);
                calm_streak_ = 0;
            }
        }
        const double target = limit_ * gradient + std::sqrt(limit_);
        set_limit(limit_ + settings_.smoothing * (target - limit_));
    }

    if (limit_u32_ > before) { ++counters_.limit_increases; }
    if (limit_u32_ < before) { ++counters_.limit_decreases; }

    open_window(now);
    const bool fell = limit_ <= (1.0 - settings_.probe_fall) * streak_from_ || limit_u32_ == settings_.min_limit;
    if (pressure_streak_ >= probe_after_ && fell) { start_probe(now); }
}

void ConcurrencyLimiter::start_probe(Clock::time_point now) {
    probing_ = true;
    ++counters_.min_rtt_probes;
    const auto share = static_cast<std::uint32_t>(std::ceil(static_cast<double>(limit_u32_) * settings_.probe_factor));
    cap_ = std::max(settings_.min_limit, share);
    pressure_streak_ = 0;
    calm_streak_ = 0;
    open_window(now);
    // The last sample was taken under more load than the probe allows, so it bounds the probe's latency:
    // one of it for the old queue to drain, `window` of admissions, two more for those to finish. Capped
    // so a probe lasts at most window + max_window.
    const Duration rtt = std::min(Duration(sample_rtt_), settings_.max_window / 3);
    probe_admit_until_ = now + settings_.window + rtt;
    probe_until_ = probe_admit_until_ + 2 * rtt;
}

void ConcurrencyLimiter::finish_probe(Clock::time_point now) {
    probing_ = false;
    cap_ = limit_u32_;
    if (window_ok_ >= settings_.min_samples) {
        const std::int64_t measured = std::max<std::int64_t>(1, take_percentile());
        if (measured < min_rtt_ || settings_.tolerance * static_cast<double>(measured) >= static_cast<double>(sample_rtt_)) {
            // Lower is always a real no-load latency. Higher counts only if halving the load did not bring
            // latency down past the tolerance: then it is the backend's, not a queue's.
            min_rtt_ = measured;
            probe_after_ = settings_.probe_after;
        } else {
            // A standing queue the gradient is already working off: wait longer before the next probe.
            probe_after_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(
                std::uint64_t{probe_after_} * 2, std::uint64_t{settings_.probe_after} * kMaxProbeBackoff));
        }
    }
    // Too few samples (no traffic): nothing learned, min_rtt stands.
    open_window(now);
}

}  // namespace drover::health
