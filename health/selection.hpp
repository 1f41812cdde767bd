#pragma once
// Selection: which hosts of a cluster a load balancer may pick, and with what weight. Pure; the control
// loop calls select_hosts() each time it rebuilds a cluster snapshot (a health transition, an ejection or its
// end, discovery, drain, and while any host is in slow start or recovering from overload) and stores the
// result in the snapshot. The load balancer on the workers only chooses among hosts with weight > 0.
//
// Rules, in order:
//  - draining hosts are excluded and not counted: an operator draining half a cluster is not an outage;
//  - unknown hosts (never passed a check) are excluded and not counted: a new replica gets no traffic
//    until its first pass, and scaling up must not push a cluster into panic;
//  - a host is *available* when healthy and not ejected; healthy fraction = available / counted hosts;
//  - below panic_threshold (and with at least one counted host) the cluster is in panic:
//      PanicPolicy::use_all     every counted host is eligible, healthy or not (Envoy's behaviour: with
//                               most of the cluster "down" the checks themselves are likelier wrong, and
//                               concentrating all load on the few left would finish them off);
//      PanicPolicy::fail_closed no host is eligible; the caller holds or answers 503;
//  - slow start: a host whose slow_start_since is within `slow_start` gets a fraction of its weight that
//    climbs from slow_start_min_fraction to 1: min + (1 - min) x t^(1/aggression), t = elapsed/slow_start
//    (aggression 1 is a straight line; > 1 climbs faster early, like Envoy's `aggression`);
//  - the effective weight is weight x slow-start fraction x weight_factor (overload, in (0, 1]).
//
// Priority groups (SRV priorities; lower is better), select_priority_hosts(): panic is the cluster's,
// judged on every counted host whatever its group. Out of panic, load spills from a group short of
// available hosts to the next ones in proportion to its health, as Envoy's priority load does: a group's
// health is overprovisioning x available / counted, capped at 1; the best group takes its health's share
// of the load, the next group the share of what is left that its own health allows, and so on; when the
// healths add up to less than 1, the shares are scaled up to fill it. A group with every host available
// (or, at 1.4, with at least 5 of 7) keeps all of its load. Within a group the effective weights keep
// their proportions. In panic, one group serves: the best with an available host, else the best with a
// counted host, under the panic policy.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "health/health_state.hpp"

namespace drover::health {

enum class PanicPolicy : std::uint8_t { use_all, fail_closed };

struct HostInput {
    Health health = Health::unknown;
    bool ejected = false;
    bool draining = false;
    // When the host (re)gained traffic: first pass, recovery, or end of an ejection. Empty: not ramping.
    std::optional<Clock::time_point> slow_start_since;
    std::uint32_t weight = 1;
    double weight_factor = 1.0;   // Overload::weight_factor(); in (0, 1]
};

struct SelectionSettings {
    double panic_threshold = 0.50;   // config::Cluster::panic_threshold; 0 disables panic
    PanicPolicy panic_policy = PanicPolicy::use_all;
    Duration slow_start{10000};      // config::Cluster::slow_start; 0 disables it
    double slow_start_min_fraction = 0.10;
    double slow_start_aggression = 1.0;
    double overprovisioning = 1.4;   // config::Cluster::priority_overprovisioning; >= 1
};

struct HostSelection {
    double weight = 0.0;             // effective weight; 0 = not eligible
    double slow_start_fraction = 1.0;   // < 1 while ramping (the admin view shows it as a percentage)
    bool eligible = false;
};

// One priority group's part, from select_priority_hosts().
struct PriorityLoad {
    std::uint32_t priority = 0;
    std::size_t counted = 0;
    std::size_t available = 0;
    double load = 0.0;   // the share of requests the group gets, in [0, 1]
};

struct Selection {
    std::vector<HostSelection> hosts;   // same order as the input
    std::vector<PriorityLoad> priorities;   // select_priority_hosts() only: each group, best first
    std::size_t counted = 0;            // hosts that count toward panic (not draining, not unknown)
    std::size_t available = 0;          // counted hosts that are healthy and not ejected
    std::size_t eligible = 0;
    double healthy_fraction = 1.0;      // available / counted; 1 when nothing is counted
    double total_weight = 0.0;
    bool panic = false;
};

// Fills `out` (reusing its storage) from `hosts` at `now`.
void select_hosts(std::span<const HostInput> hosts, const SelectionSettings& settings, Clock::time_point now,
            Selection& out);
Selection select_hosts(std::span<const HostInput> hosts, const SelectionSettings& settings, Clock::time_point now);

// The same over hosts in priority groups (`priority[i]` is host i's; lower is better): see the top.
void select_priority_hosts(std::span<const HostInput> hosts, std::span<const std::uint32_t> priority,
                           const SelectionSettings& settings, Clock::time_point now, Selection& out);

// The index in `groups` (sorted by priority, as Selection::priorities) of the group of `priority`.
std::size_t group_index(std::span<const PriorityLoad> groups, std::uint32_t priority);

// The slow-start fraction alone, in [min_fraction, 1].
double slow_start_fraction(const SelectionSettings& settings, std::optional<Clock::time_point> since,
                           Clock::time_point now);

}  // namespace drover::health
