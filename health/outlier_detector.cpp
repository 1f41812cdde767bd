#include "health/outlier_detector.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace drover::health {

OutlierDetector::Settings OutlierDetector::Settings::from(const config::OutlierDetection& config) {
    Settings s;
    s.consecutive_failures = config.consecutive_failures;
    s.base_ejection_time = config.base_ejection_time;
    s.max_ejection_time = config.max_ejection_time;
    s.max_ejection_percent = config.max_ejection_percent;
    // Six base ejections of good behaviour per step: long enough that a host flapping on the scale of
    // its ejection time keeps growing it, short enough that a host fixed by a deploy is forgiven within
    // minutes (30 s per step with the default 5 s base).
    s.decay_interval = config.base_ejection_time * 6;
    return s;
}

OutlierDetector::OutlierDetector(Settings settings, UnitRandom random)
    : settings_(settings), random_(std::move(random)) {
    // 0 would eject on the first success; treat it as 1.
    settings_.consecutive_failures = std::max<std::uint32_t>(1, settings_.consecutive_failures);
}

void OutlierDetector::set_settings(Settings settings) {
    settings_ = settings;
    settings_.consecutive_failures = std::max<std::uint32_t>(1, settings_.consecutive_failures);
}

void OutlierDetector::add_host(std::string_view host) { entry(host); }

void OutlierDetector::remove_host(std::string_view host) {
    const auto it = hosts_.find(host);
    if (it == hosts_.end()) { return; }
    if (it->second.ejected) { --ejected_; }
    hosts_.erase(it);
}

OutlierDetector::HostEntry& OutlierDetector::entry(std::string_view host) {
    auto it = hosts_.find(host);
    if (it == hosts_.end()) { it = hosts_.emplace(HostId(host), HostEntry{}).first; }
    return it->second;
}

std::size_t OutlierDetector::max_ejected() const {
    const double percent = std::clamp(settings_.max_ejection_percent, 0.0, 1.0);
    // Round down so the cap is never exceeded; the epsilon keeps 0.3 x 10 from becoming 2.
    return static_cast<std::size_t>(std::floor(percent * static_cast<double>(hosts_.size()) + 1e-9));
}

void OutlierDetector::decay(HostEntry& host, Clock::time_point now) const {
    if (host.ejected || host.ejection_count == 0 || settings_.decay_interval <= Duration::zero()) { return; }
    if (now <= host.decay_from) { return; }
    const auto steps = static_cast<std::uint64_t>((now - host.decay_from) / settings_.decay_interval);
    if (steps == 0) { return; }
    const auto taken = static_cast<std::uint32_t>(std::min<std::uint64_t>(steps, host.ejection_count));
    host.ejection_count -= taken;
    // Keep the remainder, so decay is the same whether tick() runs often or rarely.
    host.decay_from += settings_.decay_interval * static_cast<std::int64_t>(steps);
}

OutlierDetector::Duration OutlierDetector::ejection_time(std::uint32_t n) {
    const auto base = settings_.base_ejection_time.count();
    const auto max = std::max(settings_.max_ejection_time, settings_.base_ejection_time).count();
    // Multiply in double: base x n with a large n must not overflow before the cap applies.
    const double plain = std::min(static_cast<double>(base) * n, static_cast<double>(max));
    const double jitter = std::clamp(settings_.jitter, 0.0, 1.0);
    double lo = plain * (1.0 - jitter);
    double hi = plain * (1.0 + jitter);
    if (hi > static_cast<double>(max)) {
        // At the cap the spread only goes down: hosts ejected together still come back apart.
        lo -= hi - static_cast<double>(max);
        hi = static_cast<double>(max);
    }
    const double r = std::clamp(random_ ? random_() : 0.5, 0.0, 1.0);
    return Duration(static_cast<Duration::rep>(std::llround(lo + r * (hi - lo))));
}

OutlierDetector::Decision OutlierDetector::record(std::string_view host_id, Outcome outcome,
                                                  Clock::time_point now) {
    HostEntry& host = entry(host_id);
    decay(host, now);
    Decision decision;
    decision.ejection_count = host.ejection_count;
    // Outcomes of requests that were in flight when the host was ejected say nothing new.
    if (host.ejected) { return decision; }

    std::uint32_t* streak = nullptr;
    switch (origin_of(outcome)) {
        case Origin::none:
            host.local_failures = 0;
            host.backend_failures = 0;
            host.refused = false;
            return decision;
        case Origin::local: streak = &host.local_failures; break;
        case Origin::backend: streak = &host.backend_failures; break;
    }
    if (*streak != UINT32_MAX) { ++*streak; }
    if (*streak < settings_.consecutive_failures) { return decision; }

    decision.streak = origin_of(outcome);
    decision.failures = *streak;
    if (ejected_ + 1 > max_ejected()) {
        // Keep the streak: the next failure tries again, and succeeds once another host is back.
        // Reported once per streak.
        if (!host.refused) {
            host.refused = true;
            decision.action = Decision::Action::refused_by_cap;
            ++counters_.ejections_refused_by_cap_total;
        }
        return decision;
    }
    host.ejected = true;
    host.refused = false;
    ++ejected_;
    if (host.ejection_count != UINT32_MAX) { ++host.ejection_count; }
    host.ejected_until = now + ejection_time(host.ejection_count);
    host.last_streak = decision.streak;
    host.local_failures = 0;
    host.backend_failures = 0;
    ++counters_.ejections_total;
    ++(decision.streak == Origin::local ? counters_.ejections_local_origin_total
                                        : counters_.ejections_backend_origin_total);
    decision.action = Decision::Action::ejected;
    decision.ejection_count = host.ejection_count;
    decision.ejected_until = host.ejected_until;
    return decision;
}

void OutlierDetector::end_ejection(HostEntry& host, Clock::time_point now) {
    host.ejected = false;
    host.ejected_until = {};
    host.decay_from = now;
    host.local_failures = 0;
    host.backend_failures = 0;
    --ejected_;
}

std::vector<HostId> OutlierDetector::tick(Clock::time_point now) {
    std::vector<HostId> back;
    for (auto& [id, host] : hosts_) {
        if (host.ejected && host.ejected_until <= now) {
            end_ejection(host, now);
            back.push_back(id);
        }
        decay(host, now);
    }
    return back;
}

bool OutlierDetector::uneject(std::string_view host_id, Clock::time_point now) {
    const auto it = hosts_.find(host_id);
    if (it == hosts_.end() || !it->second.ejected) { return false; }
    end_ejection(it->second, now);
    ++counters_.unejections_early_total;
    return true;
}

OutlierDetector::Clock::time_point OutlierDetector::next_deadline() const {
    auto deadline = Clock::time_point::max();
    for (const auto& [id, host] : hosts_) {
        if (host.ejected) { deadline = std::min(deadline, host.ejected_until); }
    }
    return deadline;
}

bool OutlierDetector::is_ejected(std::string_view host) const {
    const auto it = hosts_.find(host);
    return it != hosts_.end() && it->second.ejected;
}

OutlierDetector::HostStatus OutlierDetector::status(std::string_view host_id) const {
    const auto it = hosts_.find(host_id);
    if (it == hosts_.end()) { return {}; }
    const HostEntry& h = it->second;
    return {h.ejected, h.ejected_until, h.ejection_count, h.local_failures, h.backend_failures, h.last_streak};
}

}  // namespace drover::health
