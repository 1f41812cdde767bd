#include "health/overload.hpp"

#include <algorithm>

namespace drover::health {

Overload::Overload(Settings settings) : settings_(settings) {
    // A floor of 0 would be an ejection by another name, and > 1 no cut at all.
    settings_.floor = std::clamp(settings_.floor, 0.01, 1.0);
    settings_.max_period = std::max(settings_.max_period, settings_.min_period);
}

void Overload::on_overload(std::string_view host, Duration retry_after, Clock::time_point now) {
    ++counters_.overloads_total;
    const Duration period = std::clamp(retry_after, settings_.min_period, settings_.max_period);
    auto it = hosts_.find(host);
    if (it == hosts_.end()) {
        hosts_.emplace(HostId(host), Entry{now, now + period});
        return;
    }
    it->second.since = now;
    it->second.until = std::max(it->second.until, now + period);
}

double Overload::weight_factor(std::string_view host, Clock::time_point now) const {
    const auto it = hosts_.find(host);
    if (it == hosts_.end() || now >= it->second.until) { return 1.0; }
    const Entry& e = it->second;
    if (now <= e.since) { return settings_.floor; }
    const double elapsed = std::chrono::duration<double>(now - e.since).count();
    const double total = std::chrono::duration<double>(e.until - e.since).count();
    return settings_.floor + (1.0 - settings_.floor) * (elapsed / total);
}

bool Overload::recovering(std::string_view host, Clock::time_point now) const {
    const auto it = hosts_.find(host);
    return it != hosts_.end() && now < it->second.until;
}

std::size_t Overload::prune(Clock::time_point now) {
    std::erase_if(hosts_, [now](const auto& kv) { return now >= kv.second.until; });
    return hosts_.size();
}

void Overload::remove_host(std::string_view host) {
    const auto it = hosts_.find(host);
    if (it != hosts_.end()) { hosts_.erase(it); }
}

}  // namespace drover::health
