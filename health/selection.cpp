#include "health/selection.hpp"

#include <algorithm>
#include <cmath>

namespace drover::health {

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
        if (h.draining || h.health == Health::unknown) { continue; }
        ++out.counted;
        if (h.health == Health::healthy && !h.ejected) { ++out.available; }
    }
    out.healthy_fraction =
        out.counted == 0 ? 1.0 : static_cast<double>(out.available) / static_cast<double>(out.counted);
    out.panic = out.counted > 0 && out.healthy_fraction < settings.panic_threshold;
    if (out.panic && settings.panic_policy == PanicPolicy::fail_closed) { return; }

    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const HostInput& h = hosts[i];
        if (h.draining || h.health == Health::unknown) { continue; }
        if (!out.panic && (h.health != Health::healthy || h.ejected)) { continue; }
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

Selection select_hosts(std::span<const HostInput> hosts, const SelectionSettings& settings, Clock::time_point now) {
    Selection out;
    select_hosts(hosts, settings, now, out);
    return out;
}

}  // namespace drover::health
