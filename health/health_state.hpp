#pragma once
// HealthState: the rise/fall verdict of active checks for one host. Owns the host's consecutive
// pass/fail counts, its current health and a short history of transitions (for the admin
// `/clusters/<cluster>/<host>` view). Pure: the probe loop on the control loop feeds it each probe
// result with the time and carries out the answer (re-publish the snapshot on a transition, sleep
// next_probe_delay() before the next probe). Workers never touch it.
//
// Rules:
//  - A host starts `unknown`: it gets no traffic and does not count toward the panic threshold.
//  - First-pass rule: the first passing check of an `unknown` host makes it healthy at once, without
//    waiting for healthy_threshold passes. A new replica (scale-up, restart under a new address) should
//    take traffic within one probe of being up; the rise threshold exists to stop *flapping* hosts from
//    coming back too early, and a host that has never served has no flapping history to guard against.
//  - Failures of an `unknown` host keep it `unknown` (counted, visible, but no transition): a host that
//    has never served is not lost capacity, so it must not push the cluster toward panic either.
//  - healthy -> unhealthy after unhealthy_threshold consecutive failures; unhealthy -> healthy after
//    healthy_threshold consecutive passes. Any opposite result resets the streak.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace drover::health {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::milliseconds;

enum class Health : std::uint8_t { unknown, healthy, unhealthy };
enum class Transition : std::uint8_t { none, became_healthy, became_unhealthy };

std::string_view to_string(Health health);
std::string_view to_string(Transition transition);

struct TransitionRecord {
    Clock::time_point at;
    Health from = Health::unknown;
    Health to = Health::unknown;
    std::string reason;   // "first check passed", "2 consecutive checks failed: connection refused"
};

class HealthState {
public:
    static constexpr std::size_t kDefaultHistory = 16;

    HealthState(std::uint32_t healthy_threshold, std::uint32_t unhealthy_threshold,
                std::size_t history_size = kDefaultHistory);
    explicit HealthState(const config::HealthCheck& check, std::size_t history_size = kDefaultHistory);

    // One probe result. `detail` says why a probe failed (or what passed); it goes into the history.
    Transition record(bool passed, Clock::time_point now, std::string_view detail = {});

    // A reload changed the thresholds: the host keeps its health and streaks, the new thresholds apply
    // from the next probe.
    void set_thresholds(std::uint32_t healthy_threshold, std::uint32_t unhealthy_threshold);

    Health health() const { return health_; }
    std::uint32_t consecutive_passes() const { return passes_; }
    std::uint32_t consecutive_failures() const { return failures_; }
    // Oldest first; at most history_size entries.
    const std::deque<TransitionRecord>& history() const { return history_; }

    // How long to wait before the next probe: the interval (unhealthy_interval while unhealthy or not
    // yet known, so a host that comes back is seen quickly), spread by +-jitter of itself so probes of
    // many hosts do not fall into lockstep. `random` is in [0, 1). Never less than 1 ms.
    Duration next_probe_delay(const config::HealthCheck& check, double random) const;

private:
    void change(Health to, Clock::time_point now, std::string reason);

    std::uint32_t healthy_threshold_;
    std::uint32_t unhealthy_threshold_;
    std::size_t history_size_;
    Health health_ = Health::unknown;
    std::uint32_t passes_ = 0;
    std::uint32_t failures_ = 0;
    std::deque<TransitionRecord> history_;
};

// Delay before a host's very first probe: uniform over [0, interval), so a cluster of many hosts (or a
// restart of Drover) does not probe them all at the same instant. `random` is in [0, 1).
Duration first_probe_delay(Duration interval, double random);

}  // namespace drover::health
