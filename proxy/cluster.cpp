#include "proxy/cluster.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "config/log.hpp"
#include "discovery/dns_resolver.hpp"
#include "discovery/file_resolver.hpp"
#include "discovery/static_resolver.hpp"
#include "proxy/load_balancer/maglev.hpp"
#include "proxy/spawn.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {
// Per-host change lines per update; a large first set or a mass change is summarised past this.
constexpr std::size_t kChangeLogLines = 20;
// First probes of new hosts are spread over 1 ms per host, at least this and at most the interval: a
// new replica is checked (and takes traffic) within a fraction of a second, and a cluster of thousands
// does not open thousands of probe connections in the same instant.
constexpr milliseconds kMinFirstProbeSpread{100};
// While a host ramps up (slow start) or recovers from overload, the snapshot is rebuilt this often.
constexpr milliseconds kMinRampStep{100};
constexpr milliseconds kMaxRampStep{1000};
constexpr std::uint32_t kMaxRetryAfterSeconds = 60;

health::OutlierDetector::Settings outlier_settings(const config::OutlierDetection& config) {
    return health::OutlierDetector::Settings::from(config);
}

health::SelectionSettings selection_settings(const config::Cluster& config) {
    health::SelectionSettings s;
    s.panic_threshold = config.panic_threshold;
    s.panic_policy = config.panic_policy == config::PanicPolicy::fail_closed ? health::PanicPolicy::fail_closed
                                                                             : health::PanicPolicy::use_all;
    s.slow_start = config.slow_start;
    s.overprovisioning = config.priority_overprovisioning;
    return s;
}

}  // namespace

void HostRecord::note(std::chrono::steady_clock::time_point at, std::string what, std::string why) {
    if (what == "unhealthy") { unhealthy_why = why; }
    if (what == "ejected") { ejected_why = why; }
    if (!events.empty() && events.back().what == what) {
        auto& last = events.back();
        last.at = at;
        last.why = std::move(why);
        if (last.times != UINT32_MAX) { ++last.times; }
        return;
    }
    events.push_back({at, std::move(what), std::move(why)});
    while (events.size() > kEvents) { events.pop_front(); }
}

void HealthReporter::report(const std::shared_ptr<const discovery::Host>& host, health::Outcome outcome) const {
    auto& stats = host->stats();
    if (outcome == health::Outcome::success) {
        if (!stats.failing.load(std::memory_order_relaxed)) { return; }
    } else {
        stats.failing.store(true, std::memory_order_relaxed);
    }
    asio::post(control_, [self = shared_from_this(), host, outcome] {
        if (self->cluster_ != nullptr) { self->cluster_->on_outcome(host, outcome); }
    });
}

void HealthReporter::overloaded(const std::shared_ptr<const discovery::Host>& host, milliseconds retry_after) const {
    asio::post(control_, [self = shared_from_this(), host, retry_after] {
        if (self->cluster_ != nullptr) { self->cluster_->on_overload(host, retry_after); }
    });
}

void LatencyHistogram::add(std::chrono::microseconds elapsed) {
    const double seconds = static_cast<double>(elapsed.count()) / 1e6;
    std::size_t bucket = 0;
    while (bucket < kUpstreamDurationBuckets.size() && seconds > kUpstreamDurationBuckets[bucket]) { ++bucket; }
    // One writer: a load and a store, not a locked read-modify-write.
    counts[bucket].store(counts[bucket].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_micros.store(sum_micros.load(std::memory_order_relaxed) + static_cast<std::uint64_t>(elapsed.count()),
                     std::memory_order_relaxed);
}

Cluster::Cluster(config::Cluster config, std::unique_ptr<discovery::Resolver> resolver, Publish publish,
                 asio::io_context& control, std::shared_ptr<const health::TlsClient> tls)
    : config_(std::make_shared<const config::Cluster>(std::move(config))),
      tls_(std::move(tls)),
      stats_(std::make_shared<ClusterStats>()),
      resolver_(std::move(resolver)),
      publish_(std::move(publish)),
      control_(control),
      reporter_(std::make_shared<HealthReporter>(control, this)),
      outlier_(outlier_settings(config_->outlier_detection), [this] { return unit_random(); }),
      selection_settings_(selection_settings(*config_)),
      maintenance_(std::make_shared<asio::steady_timer>(control)) {
    // Until discovery answers, the cluster exists with no hosts.
    auto empty = std::make_shared<ClusterSnapshot>();
    empty->config = config_;
    empty->stats = stats_;
    empty->reporter = reporter_;
    empty->tls = tls_;
    snapshot_ = std::move(empty);
}

Cluster::~Cluster() {
    reporter_->detach();
    for (const auto& record : order_) {
        record->removed = true;
        if (record->probe_timer) { record->probe_timer->cancel(); }
    }
    maintenance_->cancel();
}

void Cluster::start() {
    started_ = true;
    spawn(control_.get_executor(), maintain(), "cluster maintenance");
    resolver_->start([this](discovery::EndpointSet endpoints) { on_endpoints(std::move(endpoints)); });
}

void Cluster::stop() {
    resolver_->stop();
    stopped_ = true;
    for (const auto& record : order_) {
        if (record->probe_timer) { record->probe_timer->cancel(); }
    }
    maintenance_->cancel();
}

double Cluster::unit_random() { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); }

const HostRecord* Cluster::find_host(std::string_view name) const {
    for (const auto& record : order_) {
        if (record->host->name() == name) { return record.get(); }
    }
    return nullptr;
}

void Cluster::on_endpoints(discovery::EndpointSet endpoints) {
    const auto now = Clock::now();
    std::size_t change_lines = 0;
    // Formatted only when logged: a set of 50,000 new hosts would format 50,000 lines for nothing.
    const auto log_change = [&](const auto& line) {
        if (change_lines++ < kChangeLogLines) { log::info("{}", line()); }
    };
    std::uint64_t reweighted = 0;
    std::size_t added = 0;
    const bool checks = config_->health_check.enabled;
    const auto spread = std::clamp(milliseconds(endpoints.size()), kMinFirstProbeSpread,
                                   std::max(kMinFirstProbeSpread, config_->health_check.interval));

    // Hosts are keyed by address so a host that stays keeps its counters and health across sets.
    std::map<asio::ip::tcp::endpoint, std::shared_ptr<HostRecord>> next;
    std::vector<std::shared_ptr<HostRecord>> order;
    order.reserve(endpoints.size());
    for (const auto& endpoint : endpoints) {
        if (next.contains(endpoint.address)) { continue; }   // a set may repeat an address
        std::shared_ptr<HostRecord> record;
        if (const auto it = hosts_.find(endpoint.address); it != hosts_.end()) {
            record = it->second;
            if (record->weight != endpoint.weight) {
                ++reweighted;
                log_change([&] {
                    return fmt::format("cluster {}: host {} weight {} -> {}", config_->name, record->host->name(),
                                       record->weight, endpoint.weight);
                });
            }
        } else {
            record = std::make_shared<HostRecord>(std::make_shared<const discovery::Host>(endpoint.address),
                                                  config_->health_check);
            ++added;
            log_change([&] {
                return fmt::format("cluster {}: host {} added (weight {})", config_->name, record->host->name(),
                                   endpoint.weight);
            });
            record->note(now, "added", checks ? "discovery listed it; no traffic until its first check passes"
                                              : "discovery listed it");
            outlier_.add_host(record->host->name());
            // Without checks a new host takes traffic at once; after the first set it ramps up.
            if (!checks && !first_set_ && config_->slow_start > milliseconds::zero()) { record->slow_start_since = now; }
            if (checks) {
                record->warming = first_set_;
                warming_ += first_set_ ? 1 : 0;
                const auto delay = milliseconds(static_cast<milliseconds::rep>(unit_random() * static_cast<double>(spread.count())));
                spawn(control_.get_executor(), probe_loop(record, delay), "health check");
            }
        }
        record->weight = endpoint.weight;
        record->priority = endpoint.priority;
        next.emplace(endpoint.address, record);
        order.push_back(std::move(record));
    }
    const std::size_t removed = hosts_.size() + added - next.size();
    for (const auto& [address, record] : hosts_) {
        if (next.contains(address)) { continue; }
        log_change([&] { return fmt::format("cluster {}: host {} removed", config_->name, record->host->name()); });
        // Requests in flight to it finish; their connections then close instead of being pooled.
        record->host->stats().removed.store(true, std::memory_order_relaxed);
        record->removed = true;
        if (record->warming) {
            record->warming = false;
            --warming_;
        }
        if (record->probe_timer) { record->probe_timer->cancel(); }
        outlier_.remove_host(record->host->name());
        overload_.remove_host(record->host->name());
    }
    if (change_lines > kChangeLogLines) {
        log::info("cluster {}: ... and {} more host changes", config_->name, change_lines - kChangeLogLines);
    }
    host_changes_.added += added;
    host_changes_.removed += removed;
    host_changes_.weight += reweighted;
    hosts_ = std::move(next);
    order_ = std::move(order);
    first_set_ = false;
    inherited_ = false;
    log::info("cluster {}: {} hosts ({} added, {} removed, {} reweighted)", config_->name, order_.size(), added,
              removed, reweighted);
    rebuild();
}

health::HostInput Cluster::input_of(const HostRecord& record, Clock::time_point now) const {
    health::HostInput in;
    in.health = config_->health_check.enabled ? record.health.health() : health::Health::healthy;
    in.ejected = config_->outlier_detection.enabled && outlier_.is_ejected(record.host->name());
    in.draining = record.draining;
    in.slow_start_since = record.slow_start_since;
    in.weight = std::max<std::uint32_t>(1, record.weight);
    in.weight_factor = overload_.weight_factor(record.host->name(), now);
    return in;
}

// When a cluster with no eligible host may have one again, for the 503's Retry-After: the soonest end
// of an ejection, or the checks a down host needs to pass.
std::uint32_t Cluster::retry_after_seconds(Clock::time_point now) const {
    auto soonest = milliseconds(kMaxRetryAfterSeconds * 1000);
    const auto& check = config_->health_check;
    for (const auto& record : order_) {
        const auto status = outlier_.status(record->host->name());
        milliseconds wait{0};
        if (config_->outlier_detection.enabled && status.ejected) {
            wait = std::chrono::duration_cast<milliseconds>(status.ejected_until - now);
        } else if (check.enabled && record->health.health() == health::Health::unhealthy) {
            wait = check.unhealthy_interval * static_cast<int>(check.healthy_threshold - std::min(check.healthy_threshold - 1, record->health.consecutive_passes()));
        } else if (check.enabled && record->health.health() == health::Health::unknown) {
            wait = check.unhealthy_interval;
        }
        soonest = std::min(soonest, wait);
    }
    const auto seconds = (soonest.count() + 999) / 1000;
    return static_cast<std::uint32_t>(std::clamp<milliseconds::rep>(seconds, 1, kMaxRetryAfterSeconds));
}

void Cluster::rebuild() {
    const auto now = Clock::now();
    std::vector<health::HostInput> inputs;
    inputs.reserve(order_.size());
    for (const auto& record : order_) { inputs.push_back(input_of(*record, now)); }

    // SRV priority groups: load spills from a group short of available hosts to the next in proportion
    // to its health, and panic is the whole cluster's (health/selection.hpp). (Judged per group, a best
    // group with 1 of 3 hosts up went to panic and sent traffic to its dead hosts, or refused it all
    // under fail_closed, while another group was healthy; with strict failover, it took all the load on
    // its one host.)
    std::vector<std::uint32_t> priorities;
    priorities.reserve(order_.size());
    for (const auto& record : order_) { priorities.push_back(record->priority); }
    health::select_priority_hosts(inputs, priorities, selection_settings_, now, selection_);

    auto snapshot = std::make_shared<ClusterSnapshot>();
    snapshot->config = config_;
    snapshot->stats = stats_;
    snapshot->reporter = reporter_;
    snapshot->tls = tls_;
    snapshot->version = ++version_;
    snapshot->listed = order_.size();
    snapshot->panic = selection_.panic;
    const bool maglev = config_->load_balancing == config::LbPolicy::maglev;
    snapshot->hosts.reserve(order_.size());
    // Consistent hashing keeps its table stable: slow start and overload do not reshape it, so it takes
    // the configured weights; with load spilling across priority groups, each group's scaled to its share.
    const auto& groups = selection_.priorities;
    const auto group_of = [&](std::size_t i) { return health::group_index(groups, order_[i]->priority); };
    std::vector<double> group_weight(maglev && groups.size() > 1 ? groups.size() : 0, 0.0);
    double serving_weight = 0.0;
    if (!group_weight.empty()) {
        for (std::size_t i = 0; i < order_.size(); ++i) {
            if (selection_.hosts[i].eligible) { group_weight[group_of(i)] += inputs[i].weight; }
        }
        for (const double w : group_weight) { serving_weight += w; }
    }
    ramping_ = false;
    // maglev: slow start and overload hold back a share of a host's keys instead (HostEntry::key_share),
    // relative to the least held-back host, so that a cluster that ramps as a whole (at start-up) is
    // not held back at all.
    const auto held_back = [&](std::size_t i) { return selection_.hosts[i].slow_start_fraction * inputs[i].weight_factor; };
    double fullest = 0.0;
    if (maglev) {
        for (std::size_t i = 0; i < order_.size(); ++i) {
            if (selection_.hosts[i].eligible) { fullest = std::max(fullest, held_back(i)); }
        }
    }
    for (std::size_t i = 0; i < order_.size(); ++i) {
        const auto& chosen = selection_.hosts[i];
        if (!chosen.eligible) { continue; }
        ramping_ = ramping_ || chosen.slow_start_fraction < 1.0 || inputs[i].weight_factor < 1.0;
        double weight = maglev ? static_cast<double>(inputs[i].weight) : chosen.weight;
        if (!group_weight.empty()) {
            const auto g = group_of(i);
            weight = weight / group_weight[g] * groups[g].load * serving_weight;
        }
        const auto scaled = static_cast<std::uint32_t>(std::max(1.0, std::round(weight * kWeightScale)));
        std::uint32_t key_share = HostEntry::kFullShare;
        if (maglev && fullest > 0.0 && held_back(i) < fullest) {
            key_share = static_cast<std::uint32_t>(std::clamp(held_back(i) / fullest * HostEntry::kFullShare, 1.0,
                                                              static_cast<double>(HostEntry::kFullShare)));
        }
        snapshot->hosts.push_back({order_[i]->host, scaled, key_share});
    }
    snapshot->retry_after_seconds = snapshot->hosts.empty() ? retry_after_seconds(now) : 1;
    if (maglev) {
        // Built here, on the control loop, so no worker ever pays for it on a request. The current table
        // is kept when the hosts and their weights are the same: a DNS refresh with the same answer, a
        // slow-start tick (the table ignores ramping: key_share carries it) rebuilt it for nothing,
        // milliseconds each (BM_SnapshotDiscoveryUnchangedMaglev).
        const auto same = [](const HostEntry& a, const HostEntry& b) { return a.host == b.host && a.weight == b.weight; };
        if (snapshot_ && snapshot_->maglev &&
            std::equal(snapshot->hosts.begin(), snapshot->hosts.end(), snapshot_->hosts.begin(), snapshot_->hosts.end(), same)) {
            snapshot->maglev = snapshot_->maglev;
        } else {
            snapshot->maglev = std::make_shared<const MaglevTable>(snapshot->hosts);
        }
    }
    if (snapshot->panic && !snapshot_->panic) {
        ++health_counters_.panics;
        log::warn("cluster {}: panic: {} of {} hosts available (below {:.0f}%): {}", config_->name,
                  selection_.available, selection_.counted, config_->panic_threshold * 100,
                  config_->panic_policy == config::PanicPolicy::use_all ? "using every host" : "failing closed");
    } else if (!snapshot->panic && snapshot_->panic) {
        log::info("cluster {}: out of panic: {} of {} hosts available", config_->name, selection_.available,
                  selection_.counted);
    }
    snapshot_ = snapshot;
    publish_(snapshot_);
    if (ramping_) { wake_maintenance(); }
}

asio::awaitable<void> Cluster::probe_loop(std::shared_ptr<HostRecord> record, milliseconds first_delay) {
    // Holds what the loop reads after the cluster may be gone; `this` only while the reporter is attached.
    const auto reporter = reporter_;
    const auto config = config_;
    const auto tls = tls_;   // a reload with new TLS restarts the loop (a new generation)
    auto& control = control_;
    const std::string host_header = config->service_name();
    const auto generation = record->probe_generation;
    const auto stale = [&] {
        return !reporter->attached() || record->removed || record->probe_generation != generation || stopped_;
    };
    if (!record->probe_timer) { record->probe_timer.emplace(control); }
    auto delay = first_delay;
    for (;;) {
        record->probe_timer->expires_after(delay);
        co_await record->probe_timer->async_wait(asio::as_tuple(asio::use_awaitable));
        if (stale()) { co_return; }
        const auto result = co_await health::run_probe(control.get_executor(), record->host->address(),
                                                       config->health_check, host_header, tls);
        if (stale()) { co_return; }
        on_probe(*record, result);
        delay = record->health.next_probe_delay(config->health_check, unit_random());
    }
}

void Cluster::on_probe(HostRecord& record, const health::ProbeResult& result) {
    const auto now = Clock::now();
    if (result.local_failure) {
        // Drover is out of descriptors (or buffers): that says nothing about the host. Marking it down
        // would turn a local shortage into an outage (panic, ejections) on top of it.
        ++health_counters_.probes_not_run;
        if (now - last_local_probe_warning_ >= std::chrono::seconds(10)) {
            last_local_probe_warning_ = now;
            log::warn("cluster {}: health check of {} not run: {}", config_->name, record.host->name(), result.detail);
        }
        return;
    }
    ++health_counters_.probes;
    if (!result.passed) { ++health_counters_.probe_failures; }
    record.last_probe = result;
    record.last_probe_at = now;
    if (record.warming) {
        record.warming = false;
        --warming_;
    }
    const auto& name = record.host->name();
    const auto transition = record.health.record(result.passed, now, result.detail);
    if (transition == health::Transition::none) { return; }
    const auto& why = record.health.history().back().reason;
    if (transition == health::Transition::became_healthy) {
        ++health_counters_.became_healthy;
        record.note(now, "healthy", why);
        log::info("cluster {}: host {} healthy: {}", config_->name, name, why);
        if (config_->slow_start > milliseconds::zero()) { record.slow_start_since = now; }
        // Checks that failed and now pass show the host recovered: an ejection for the same trouble ends.
        // A host that was never down by its checks stays ejected: passing a check it always passed says
        // nothing about the failures real traffic saw.
        if (outlier_.uneject(name, now)) {
            record.note(now, "returned", "ejection ended early: its health checks recovered");
            log::info("cluster {}: host {} back from ejection early: health checks recovered", config_->name, name);
        }
    } else {
        ++health_counters_.became_unhealthy;
        record.note(now, "unhealthy", why);
        log::warn("cluster {}: host {} unhealthy: {}", config_->name, name, why);
        record.slow_start_since.reset();
    }
    rebuild();
}

void Cluster::on_outcome(const std::shared_ptr<const discovery::Host>& host, health::Outcome outcome) {
    const auto it = hosts_.find(host->address());
    if (it == hosts_.end() || it->second->host != host) {
        host->stats().failing.store(false, std::memory_order_relaxed);
        return;
    }
    auto& record = *it->second;
    if (!config_->outlier_detection.enabled) {
        host->stats().failing.store(false, std::memory_order_relaxed);
        return;
    }
    const auto now = Clock::now();
    const auto& name = host->name();
    const auto decision = outlier_.record(name, outcome, now);
    const auto status = outlier_.status(name);
    host->stats().failing.store(status.local_origin_failures > 0 || status.backend_origin_failures > 0,
                                std::memory_order_relaxed);
    using Action = health::OutlierDetector::Decision::Action;
    if (decision.action == Action::ejected) {
        const auto for_ms = std::chrono::duration_cast<milliseconds>(decision.ejected_until - now).count();
        const auto why = fmt::format("{} consecutive {} failures (last: {}); ejection {} for {} ms",
                                     decision.failures, health::to_string(decision.streak), health::to_string(outcome),
                                     decision.ejection_count, for_ms);
        record.note(now, "ejected", why);
        record.slow_start_since.reset();
        log::warn("cluster {}: host {} ejected: {}", config_->name, name, why);
        rebuild();
        wake_maintenance();
    } else if (decision.action == Action::refused_by_cap) {
        record.note(now, "ejection refused", fmt::format("{} consecutive {} failures, but {} of {} hosts are already ejected (max_ejection_percent)",
                                                         decision.failures, health::to_string(decision.streak),
                                                         outlier_.ejected_count(), outlier_.host_count()));
    }
}

void Cluster::on_overload(const std::shared_ptr<const discovery::Host>& host, milliseconds retry_after) {
    const auto it = hosts_.find(host->address());
    if (it == hosts_.end() || it->second->host != host) { return; }
    const auto now = Clock::now();
    overload_.on_overload(host->name(), retry_after, now);
    it->second->note(now, "overloaded", fmt::format("answered busy (Retry-After {} ms): share lowered, not ejected",
                                                    retry_after.count()));
    rebuild();
}

discovery::ResolverStatus Cluster::discovery_status() const {
    auto status = resolver_->status();
    if (inherited_ && !status.resolved) {
        status.resolved = true;
        status.stale = true;
    }
    return status;
}

bool Cluster::reconfigure(config::Cluster config, std::shared_ptr<const health::TlsClient> tls) {
    // New TLS changes what a probe proves, like a new check does.
    const bool checks_changed = !(config.health_check == config_->health_check) || tls != tls_;
    const bool new_source = !(config.discovery == config_->discovery) && !resolver_->update(config.discovery);
    if (new_source) {
        resolver_->stop();
        resolver_ = make_resolver(config, control_);
        inherited_ = !order_.empty();
        log::info("cluster {}: discovery replaced; its {} hosts serve until the new one answers", config.name,
                  order_.size());
    }
    config_ = std::make_shared<const config::Cluster>(std::move(config));
    tls_ = std::move(tls);
    selection_settings_ = selection_settings(*config_);
    outlier_.set_settings(outlier_settings(config_->outlier_detection));
    if (checks_changed) {
        // Each host keeps its health; a new probe loop with the new check replaces the old one.
        const auto& check = config_->health_check;
        for (const auto& record : order_) {
            ++record->probe_generation;
            record->health.set_thresholds(check.healthy_threshold, check.unhealthy_threshold);
            if (record->probe_timer) { record->probe_timer->cancel(); }
            if (check.enabled) {
                const auto delay = milliseconds(static_cast<milliseconds::rep>(unit_random() * static_cast<double>(kMinFirstProbeSpread.count())));
                spawn(control_.get_executor(), probe_loop(record, delay), "health check");
            }
        }
    }
    log::info("cluster {}: settings reloaded{}", config_->name, checks_changed ? " (health checks restarted)" : "");
    rebuild();
    if (new_source && started_ && !stopped_) {
        resolver_->start([this](discovery::EndpointSet endpoints) { on_endpoints(std::move(endpoints)); });
    }
    return new_source;
}

bool Cluster::set_draining(std::string_view host, bool draining) {
    for (const auto& record : order_) {
        if (record->host->name() != host) { continue; }
        if (record->draining == draining) { return true; }
        const auto now = Clock::now();
        record->draining = draining;
        record->host->stats().draining.store(draining, std::memory_order_relaxed);
        record->note(now, draining ? "draining" : "undrained", "admin request");
        if (!draining && config_->slow_start > milliseconds::zero()) { record->slow_start_since = now; }
        log::info("cluster {}: host {} {} by admin request", config_->name, host, draining ? "draining" : "undrained");
        rebuild();
        return true;
    }
    return false;
}

void Cluster::wake_maintenance() { maintenance_->cancel(); }

// Ends ejections when due and steps slow-start and overload ramps; sleeps until the next of those.
asio::awaitable<void> Cluster::maintain() {
    const auto reporter = reporter_;
    const auto timer = maintenance_;
    for (;;) {
        if (!reporter->attached() || stopped_) { co_return; }
        auto next = outlier_.next_deadline();
        if (ramping_) {
            const auto step = std::clamp(config_->slow_start / 10, kMinRampStep, kMaxRampStep);
            next = std::min(next, Clock::now() + step);
        }
        timer->expires_at(next);
        const auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
        if (!reporter->attached() || stopped_) { co_return; }
        if (ec) { continue; }   // woken early: something changed the deadlines
        const auto now = Clock::now();
        const auto returned = outlier_.tick(now);
        for (const auto& name : returned) {
            for (const auto& record : order_) {
                if (record->host->name() != name) { continue; }
                record->note(now, "returned", "ejection time over");
                if (config_->slow_start > milliseconds::zero()) { record->slow_start_since = now; }
                log::info("cluster {}: host {} back from ejection", config_->name, name);
            }
        }
        overload_.prune(now);
        if (!returned.empty() || ramping_) { rebuild(); }
    }
}

std::unique_ptr<discovery::Resolver> make_resolver(const config::Cluster& config,
                                                   boost::asio::io_context& control) {
    if (const auto* s = std::get_if<config::StaticDiscovery>(&config.discovery)) {
        return std::make_unique<discovery::StaticResolver>(*s);
    }
    if (const auto* d = std::get_if<config::DnsDiscovery>(&config.discovery)) {
        return std::make_unique<discovery::DnsResolver>(control, config.name, *d);
    }
    return std::make_unique<discovery::FileResolver>(control, config.name,
                                                     std::get<config::FileDiscovery>(config.discovery));
}

}  // namespace drover::proxy
