#include "health/selection.hpp"

#include <algorithm>
#include <cmath>

namespace drover::health {

namespace {

// Counted toward panic and a group's health: neither draining nor still unchecked.
bool counts(const HostInput& h) { return !h.draining && h.health != Health::unknown; }
bool available(const HostInput& h) { return counts(h) && h.health == Health::healthy && !h.ejected; }

}  // namespace

double slow_start_fraction(const SelectionSettings& settings, std::optional<Clock::time_point> since,
                           Clock::time_point now) {
    if (!since || settings.slow_start <= Duration::zero() || now >= *since + settings.slow_start) {
        return 1.0;
    }
    const double min = std::clamp(settings.slow_start_min_fraction, 0.0, 1.0);
    if (now <= *since) { return min; }
    const double t = std::chrono::duration<double>(now - *since).count() /
                     std::chrono::duration<double>(settings.slow_start).count();
    const double aggression = settings.slow_start_aggression > 0.0 ? settings.slow_start_aggression : 1.0;
    const double curve = aggression == 1.0 ? t : std::pow(t, 1.0 / aggression);
    return min + (1.0 - min) * curve;
}

void select_hosts(std::span<const HostInput> hosts, const SelectionSettings& settings, Clock::time_point now,
            Selection& out) {
    out.hosts.assign(hosts.size(), HostSelection{});
    out.counted = 0;
    out.available = 0;
    out.eligible = 0;
    out.total_weight = 0.0;

    for (const HostInput& h : hosts) {
        out.counted += counts(h) ? 1 : 0;
        out.available += available(h) ? 1 : 0;
    }
    out.healthy_fraction =
        out.counted == 0 ? 1.0 : static_cast<double>(out.available) / static_cast<double>(out.counted);
    out.panic = out.counted > 0 && out.healthy_fraction < settings.panic_threshold;
    if (out.panic && settings.panic_policy == PanicPolicy::fail_closed) { return; }

    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const HostInput& h = hosts[i];
        if (!counts(h) || (!out.panic && !available(h))) { continue; }
        HostSelection& s = out.hosts[i];
        s.slow_start_fraction = slow_start_fraction(settings, h.slow_start_since, now);
        const double factor = std::clamp(h.weight_factor, 0.0, 1.0);
        s.weight = static_cast<double>(h.weight) * s.slow_start_fraction * factor;
        // A weight of 0 from discovery means "send nothing": not eligible.
        s.eligible = s.weight > 0.0;
        if (s.eligible) {
            ++out.eligible;
            out.total_weight += s.weight;
        }
    }
}

std::size_t group_index(std::span<const PriorityLoad> groups, std::uint32_t priority) {
    const auto at = std::lower_bound(groups.begin(), groups.end(), priority,
                                     [](const PriorityLoad& g, std::uint32_t p) { return g.priority < p; });
    return static_cast<std::size_t>(at - groups.begin());
}

void select_priority_hosts(std::span<const HostInput> hosts, std::span<const std::uint32_t> priority,
                           const SelectionSettings& settings, Clock::time_point now, Selection& out) {
    select_hosts(hosts, settings, now, out);
    auto& groups = out.priorities;
    groups.clear();
    for (const auto p : priority) {
        const auto at = groups.begin() + static_cast<std::ptrdiff_t>(group_index(groups, p));
        if (at == groups.end() || at->priority != p) { groups.insert(at, PriorityLoad{p, 0, 0, 0.0}); }
    }
    const auto group_of = [&](std::size_t i) { return group_index(groups, priority[i]); };
    // Few groups (one or two, rarely more): small vectors, no map.
    std::vector<double> weight(groups.size(), 0.0);
    for (std::size_t i = 0; i < hosts.size() && i < priority.size(); ++i) {
        auto& g = groups[group_of(i)];
        g.counted += counts(hosts[i]) ? 1 : 0;
        g.available += available(hosts[i]) ? 1 : 0;
        weight[group_of(i)] += out.hosts[i].eligible ? out.hosts[i].weight : 0.0;
    }
    if (groups.size() <= 1) {
        if (!groups.empty()) { groups.front().load = out.eligible > 0 ? 1.0 : 0.0; }
        return;
    }

    if (out.panic) {
        // One group serves, under the panic policy.
        auto serving = std::find_if(groups.begin(), groups.end(), [](const PriorityLoad& g) { return g.available > 0; });
        if (serving == groups.end()) {
            serving = std::find_if(groups.begin(), groups.end(), [](const PriorityLoad& g) { return g.counted > 0; });
        }
        if (serving != groups.end()) { serving->load = 1.0; }
    } else {
        double left = 1.0;
        double given = 0.0;
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const auto& group = groups[g];
            double health = 0.0;
            if (group.counted > 0 && weight[g] > 0.0) {
                const double share = std::max(settings.overprovisioning, 1.0) * static_cast<double>(group.available);
                // 1e-9: 1.4 x 5 / 7 is a whole group's worth, whatever the rounding says.
                health = share + 1e-9 >= static_cast<double>(group.counted) ? 1.0 : share / static_cast<double>(group.counted);
            }
            groups[g].load = std::min(left, health);
            left -= groups[g].load;
            given += groups[g].load;
        }
        if (given > 0.0 && given < 1.0) {
            for (auto& group : groups) { group.load /= given; }
        }
    }

    // Each group's eligible weights, scaled to its share of the serving groups' total: proportions kept
    // within a group, and a group serving alone keeps its weights as they are.
    double total = 0.0;
    for (std::size_t g = 0; g < groups.size(); ++g) { total += groups[g].load > 0.0 ? weight[g] : 0.0; }
    out.eligible = 0;
    out.total_weight = 0.0;
    for (std::size_t i = 0; i < hosts.size() && i < priority.size(); ++i) {
        auto& s = out.hosts[i];
        if (!s.eligible) { continue; }
        const auto g = group_of(i);
        if (groups[g].load <= 0.0) {
            s = HostSelection{0.0, s.slow_start_fraction, false};
            continue;
        }
        s.weight = s.weight / weight[g] * groups[g].load * total;
        ++out.eligible;
        out.total_weight += s.weight;
    }
}

Selection select_hosts(std::span<const HostInput> hosts, const SelectionSettings& settings, Clock::time_point now) {
    Selection out;
    select_hosts(hosts, settings, now, out);
    return out;
}

}  // namespace drover::health
