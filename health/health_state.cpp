#include "health/health_state.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace drover::health {

std::string_view to_string(Health health) {
    switch (health) {
        case Health::unknown: return "unknown";
        case Health::healthy: return "healthy";
        case Health::unhealthy: return "unhealthy";
    }
    return "unknown";
}

std::string_view to_string(Transition transition) {
    switch (transition) {
        case Transition::none: return "none";
        case Transition::became_healthy: return "became_healthy";
        case Transition::became_unhealthy: return "became_unhealthy";
    }
    return "none";
}

HealthState::HealthState(std::uint32_t healthy_threshold, std::uint32_t unhealthy_threshold,
                         std::size_t history_size)
    // A threshold of 0 would mean "flip without evidence"; treat it as 1.
    : healthy_threshold_(std::max<std::uint32_t>(1, healthy_threshold)),
      unhealthy_threshold_(std::max<std::uint32_t>(1, unhealthy_threshold)),
      history_size_(history_size) {}

HealthState::HealthState(const config::HealthCheck& check, std::size_t history_size)
    : HealthState(check.healthy_threshold, check.unhealthy_threshold, history_size) {}

void HealthState::set_thresholds(std::uint32_t healthy_threshold, std::uint32_t unhealthy_threshold) {
    healthy_threshold_ = std::max<std::uint32_t>(1, healthy_threshold);
    unhealthy_threshold_ = std::max<std::uint32_t>(1, unhealthy_threshold);
}

Transition HealthState::record(bool passed, Clock::time_point now, std::string_view detail) {
    if (passed) {
        failures_ = 0;
        // Saturate rather than wrap: a host healthy for years must not look "fresh".
        if (passes_ != UINT32_MAX) { ++passes_; }
        if (health_ == Health::unknown) {
            change(Health::healthy, now,
                   detail.empty() ? std::string("first check passed")
                                  : fmt::format("first check passed: {}", detail));
            return Transition::became_healthy;
        }
        if (health_ == Health::unhealthy && passes_ >= healthy_threshold_) {
            change(Health::healthy, now,
                   detail.empty() ? fmt::format("{} consecutive checks passed", passes_)
                                  : fmt::format("{} consecutive checks passed: {}", passes_, detail));
            return Transition::became_healthy;
        }
        return Transition::none;
    }
    passes_ = 0;
    if (failures_ != UINT32_MAX) { ++failures_; }
    if (health_ == Health::healthy && failures_ >= unhealthy_threshold_) {
        change(Health::unhealthy, now,
               detail.empty() ? fmt::format("{} consecutive checks failed", failures_)
                              : fmt::format("{} consecutive checks failed: {}", failures_, detail));
        return Transition::became_unhealthy;
    }
    return Transition::none;
}

void HealthState::change(Health to, Clock::time_point now, std::string reason) {
    if (history_size_ > 0) {
        if (history_.size() == history_size_) { history_.pop_front(); }
        history_.push_back({now, health_, to, std::move(reason)});
    }
    health_ = to;
}

Duration HealthState::next_probe_delay(const config::HealthCheck& check, double random) const {
    const Duration base = health_ == Health::healthy ? check.interval : check.unhealthy_interval;
    const double jitter = std::clamp(check.jitter, 0.0, 1.0);
    const double r = std::clamp(random, 0.0, 1.0);
    const double ms = static_cast<double>(base.count()) * (1.0 + jitter * (2.0 * r - 1.0));
    return std::max(Duration(1), Duration(static_cast<Duration::rep>(std::llround(ms))));
}

Duration first_probe_delay(Duration interval, double random) {
    const double r = std::clamp(random, 0.0, 1.0);
    const auto ms = static_cast<Duration::rep>(std::llround(static_cast<double>(interval.count()) * r));
    // r < 1 keeps it below the interval; clamp anyway so a sloppy random source cannot reach it.
    return std::clamp(Duration(ms), Duration(0), std::max(Duration(0), interval - Duration(1)));
}

}  // namespace drover::health
