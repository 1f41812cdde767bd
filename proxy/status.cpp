#include "proxy/status.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <map>

#include "proxy/admin.hpp"
#include "proxy/pressure.hpp"
#include "proxy/server.hpp"
#include "proxy/spawn.hpp"
#include "proxy/text_writers.hpp"

namespace drover::proxy {

namespace {

constexpr std::string_view kPrometheus = "text/plain; version=0.0.4; charset=utf-8";

std::string_view protocol_name(config::Protocol p) { return p == config::Protocol::tcp ? "tcp" : "http"; }

std::string_view policy_name(config::LbPolicy p) {
    switch (p) {
        case config::LbPolicy::round_robin: return "round_robin";
        case config::LbPolicy::least_request: return "least_request";
        case config::LbPolicy::random: return "random";
        case config::LbPolicy::maglev: return "maglev";
    }
    return "unknown";
}

// Sums one per-worker listener counter.
template <class Field>
std::uint64_t sum(const ListenerState& listener, Field field) {
    std::uint64_t total = 0;
    for (const auto& counters : listener.shared->per_worker) { total += ((*counters).*field).load(std::memory_order_relaxed); }
    return total;
}

constexpr std::array<std::string_view, 5> kClasses = {"1xx", "2xx", "3xx", "4xx", "5xx"};

void render_http_metrics(PrometheusWriter& w, const Server& server) {
    const auto http_listeners = [&server] {
        std::vector<const ListenerState*> out;
        for (const auto& l : server.listeners()) {
            if (l->state().config.protocol == config::Protocol::http) { out.push_back(&l->state()); }
        }
        return out;
    }();
    w.family("drover_http_requests_total", "counter", "HTTP requests answered, by status class sent to the client.");
    for (const auto* l : http_listeners) {
        for (std::size_t c = 0; c < kClasses.size(); ++c) {
            std::uint64_t total = 0;
            for (const auto& counters : l->shared->per_worker) {
                total += counters->requests_by_class[c].load(std::memory_order_relaxed);
            }
            w.sample("drover_http_requests_total", {{"listener", l->config.name}, {"code_class", kClasses[c]}}, total);
        }
    }
    w.family("drover_http_local_responses_total", "counter",
             "HTTP responses Drover generated itself, by reason (the drover-error header).");
    for (const auto* l : http_listeners) {
        for (std::size_t r = 0; r < static_cast<std::size_t>(LocalReason::count); ++r) {
            std::uint64_t total = 0;
            for (const auto& counters : l->shared->per_worker) {
                total += counters->local_responses[r].load(std::memory_order_relaxed);
            }
            w.sample("drover_http_local_responses_total",
                     {{"listener", l->config.name}, {"reason", local_reason_name(static_cast<LocalReason>(r))}}, total);
        }
    }
    w.family("drover_http_request_duration_seconds", "histogram",
             "Time from the first byte of a request to the end of its response.");
    for (const auto* l : http_listeners) {
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b <= kDurationBuckets.size(); ++b) {
            for (const auto& counters : l->shared->per_worker) {
                cumulative += counters->duration_buckets[b].load(std::memory_order_relaxed);
            }
            const std::string le = b < kDurationBuckets.size() ? fmt::format("{}", kDurationBuckets[b]) : "+Inf";
            w.sample("drover_http_request_duration_seconds_bucket", {{"listener", l->config.name}, {"le", le}}, cumulative);
        }
        std::uint64_t micros = 0;
        for (const auto& counters : l->shared->per_worker) {
            micros += counters->duration_sum_micros.load(std::memory_order_relaxed);
        }
        w.sample("drover_http_request_duration_seconds_sum", {{"listener", l->config.name}}, static_cast<double>(micros) / 1e6);
        w.sample("drover_http_request_duration_seconds_count", {{"listener", l->config.name}}, cumulative);
    }
    w.family("drover_upstream_request_duration_seconds", "histogram",
             "HTTP: from sending a request to a host of the cluster to the end of its response (each try).");
    for (const auto& c : server.clusters()) {
        const auto& per_worker = c->stats().latency;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b <= kUpstreamDurationBuckets.size(); ++b) {
            for (const auto& h : per_worker) { cumulative += h->counts[b].load(std::memory_order_relaxed); }
            const std::string le = b < kUpstreamDurationBuckets.size() ? fmt::format("{}", kUpstreamDurationBuckets[b]) : "+Inf";
            w.sample("drover_upstream_request_duration_seconds_bucket", {{"cluster", c->name()}, {"le", le}}, cumulative);
        }
        std::uint64_t micros = 0;
        for (const auto& h : per_worker) { micros += h->sum_micros.load(std::memory_order_relaxed); }
        w.sample("drover_upstream_request_duration_seconds_sum", {{"cluster", c->name()}}, static_cast<double>(micros) / 1e6);
        w.sample("drover_upstream_request_duration_seconds_count", {{"cluster", c->name()}}, cumulative);
    }
    w.family("drover_upstream_pool_reuses_total", "counter", "HTTP requests sent on a kept-alive upstream connection.");
    for (const auto& c : server.clusters()) {
        for (const auto& h : c->hosts()) {
            w.sample("drover_upstream_pool_reuses_total", {{"cluster", c->name()}, {"host", h->host->name()}},
                     h->host->stats().pool_reuses.load(std::memory_order_relaxed));
        }
    }
    w.family("drover_upstream_requests_total", "counter", "HTTP responses received from the host, by status class.");
    for (const auto& c : server.clusters()) {
        for (const auto& h : c->hosts()) {
            for (std::size_t k = 0; k < kClasses.size(); ++k) {
                w.sample("drover_upstream_requests_total",
                         {{"cluster", c->name()}, {"host", h->host->name()}, {"code_class", kClasses[k]}},
                         h->host->stats().responses_by_class[k].load(std::memory_order_relaxed));
            }
        }
    }
}

// What one host is in the cluster's eyes, most telling first: draining, ejected, then its checks.
std::string_view host_state(const Cluster& cluster, const HostRecord& record) {
    if (record.draining) { return "draining"; }
    if (cluster.config().outlier_detection.enabled && cluster.outlier().is_ejected(record.host->name())) { return "ejected"; }
    if (!cluster.config().health_check.enabled) { return "healthy"; }
    return health::to_string(record.health.health());
}

// Why the host is in that state, in words.
std::string host_why(const Cluster& cluster, const HostRecord& record, std::string_view state) {
    if (state == "ejected") { return record.ejected_why; }
    if (state == "draining") { return "draining: no new requests"; }
    if (!cluster.config().health_check.enabled) { return "health checks off"; }
    if (state == "unhealthy") { return record.unhealthy_why; }
    if (state == "unknown") {
        return record.last_probe ? "no passing check yet; last: " + record.last_probe->detail : "waiting for its first check";
    }
    if (record.last_probe && !record.last_probe->passed) {
        return fmt::format("healthy, but the last {} check{} failed: {} ({} needed to turn unhealthy)",
                           record.health.consecutive_failures(), record.health.consecutive_failures() == 1 ? "" : "s",
                           record.last_probe->detail, cluster.config().health_check.unhealthy_threshold);
    }
    return record.last_probe ? "check passed: " + record.last_probe->detail : std::string{};
}

double age_seconds(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void render_host(JsonWriter& j, const Cluster& cluster, std::size_t index) {
    const auto& record = *cluster.hosts()[index];
    const auto& s = record.host->stats();
    const auto state = host_state(cluster, record);
    const auto& selection = cluster.selection();
    const health::HostSelection chosen =
        index < selection.hosts.size() ? selection.hosts[index] : health::HostSelection{};
    const auto outlier = cluster.outlier().status(record.host->name());
    j.key("address").value(record.host->name());
    j.key("weight").value(std::uint64_t{record.weight});
    j.key("priority").value(std::uint64_t{record.priority});
    j.key("state").value(state);
    j.key("eligible").value(chosen.eligible);
    j.key("why").value(host_why(cluster, record, state));
    j.key("effective_weight").value(chosen.weight);
    j.key("slow_start_percent").value(chosen.eligible ? chosen.slow_start_fraction * 100.0 : 0.0);
    j.key("health").value(cluster.config().health_check.enabled ? health::to_string(record.health.health()) : "off");
    j.key("consecutive_check_passes").value(std::uint64_t{record.health.consecutive_passes()});
    j.key("consecutive_check_failures").value(std::uint64_t{record.health.consecutive_failures()});
    if (record.last_probe) {
        j.key("last_check").begin_object();
        j.key("passed").value(record.last_probe->passed);
        j.key("detail").value(record.last_probe->detail);
        j.key("age_seconds").value(age_seconds(record.last_probe_at));
        j.end_object();
    }
    j.key("ejected").value(outlier.ejected);
    if (outlier.ejected) {
        const auto left = std::chrono::duration<double>(outlier.ejected_until - std::chrono::steady_clock::now()).count();
        j.key("ejected_for_seconds").value(std::max(0.0, left));
    }
    j.key("ejection_count").value(std::uint64_t{outlier.ejection_count});
    j.key("local_origin_failures").value(std::uint64_t{outlier.local_origin_failures});
    j.key("backend_origin_failures").value(std::uint64_t{outlier.backend_origin_failures});
    j.key("overloaded").value(cluster.overload().recovering(record.host->name(), std::chrono::steady_clock::now()));
    j.key("draining").value(record.draining);
    j.key("requests_active").value(s.requests_active.load(std::memory_order_relaxed));
    j.key("connections_active").value(s.connections_active.load(std::memory_order_relaxed));
    j.key("connections_total").value(s.connections_total.load(std::memory_order_relaxed));
    j.key("connect_failures").value(s.connect_failures.load(std::memory_order_relaxed));
}

// One sample per cluster of a value read from it.
template <class Read>
void per_cluster(PrometheusWriter& w, const Server& server, std::string_view name, std::string_view type,
                 std::string_view help, Read read) {
    w.family(name, type, help);
    for (const auto* c : server.clusters()) { w.sample(name, {{"cluster", c->name()}}, read(*c)); }
}

void render_health_metrics(PrometheusWriter& w, const Server& server) {
    const auto& clusters = server.clusters();
    const auto relaxed = [](const auto& atomic) { return atomic.load(std::memory_order_relaxed); };
    per_cluster(w, server, "drover_cluster_hosts_eligible", "gauge",
                "Hosts that may take requests now (healthy, not ejected, not draining; every counted host in panic).",
                [](const Cluster& c) { return static_cast<std::uint64_t>(c.selection().eligible); });
    w.family("drover_cluster_hosts_by_state", "gauge",
             "Hosts by state: healthy, unhealthy, unknown (no check passed yet), ejected, draining.");
    for (const auto* c : clusters) {
        std::map<std::string_view, std::uint64_t> counts{
            {"healthy", 0}, {"unhealthy", 0}, {"unknown", 0}, {"ejected", 0}, {"draining", 0}};
        for (const auto& h : c->hosts()) { ++counts[host_state(*c, *h)]; }
        for (const auto& [state, n] : counts) {
            w.sample("drover_cluster_hosts_by_state", {{"cluster", c->name()}, {"state", state}}, n);
        }
    }
    per_cluster(w, server, "drover_cluster_panic", "gauge", "1 while the cluster is below its panic_threshold (see panic_policy).",
                [](const Cluster& c) { return std::uint64_t{c.panic() ? 1u : 0u}; });
    per_cluster(w, server, "drover_cluster_panics_total", "counter", "Times the cluster went below its panic_threshold.",
                [](const Cluster& c) { return c.health_counters().panics; });
    w.family("drover_health_checks_total", "counter",
             "Active health checks, by result: pass, fail, not_run (Drover out of descriptors or buffers: no verdict).");
    for (const auto* c : clusters) {
        const auto& h = c->health_counters();
        w.sample("drover_health_checks_total", {{"cluster", c->name()}, {"result", "pass"}}, h.probes - h.probe_failures);
        w.sample("drover_health_checks_total", {{"cluster", c->name()}, {"result", "fail"}}, h.probe_failures);
        w.sample("drover_health_checks_total", {{"cluster", c->name()}, {"result", "not_run"}}, h.probes_not_run);
    }
    w.family("drover_health_transitions_total", "counter", "Hosts whose checks changed their health, by new state.");
    for (const auto* c : clusters) {
        const auto& h = c->health_counters();
        w.sample("drover_health_transitions_total", {{"cluster", c->name()}, {"to", "healthy"}}, h.became_healthy);
        w.sample("drover_health_transitions_total", {{"cluster", c->name()}, {"to", "unhealthy"}}, h.became_unhealthy);
    }
    w.family("drover_outlier_ejections_total", "counter", "Hosts ejected by outlier detection, by the streak that did it.");
    for (const auto* c : clusters) {
        const auto& o = c->outlier().counters();
        w.sample("drover_outlier_ejections_total", {{"cluster", c->name()}, {"origin", "local"}}, o.ejections_local_origin_total);
        w.sample("drover_outlier_ejections_total", {{"cluster", c->name()}, {"origin", "backend"}}, o.ejections_backend_origin_total);
    }
    per_cluster(w, server, "drover_outlier_ejections_refused_total", "counter",
                "Ejections not made because max_ejection_percent of the cluster was already ejected.",
                [](const Cluster& c) { return c.outlier().counters().ejections_refused_by_cap_total; });
    per_cluster(w, server, "drover_outlier_ejected_hosts", "gauge", "Hosts ejected now.",
                [](const Cluster& c) { return static_cast<std::uint64_t>(c.outlier().ejected_count()); });
    per_cluster(w, server, "drover_overload_signals_total", "counter",
                "429s and 503s with Retry-After that lowered a host's share instead of ejecting it.",
                [](const Cluster& c) { return c.overload().counters().overloads_total; });
    w.family("drover_cluster_retries_total", "counter",
             "Requests tried again on another host, by cause: budgeted (reset, timeout, 5xx) or connect_failure "
             "(never reached a backend; not budgeted).");
    for (const auto* c : clusters) {
        w.sample("drover_cluster_retries_total", {{"cluster", c->name()}, {"cause", "budgeted"}}, relaxed(c->stats().retries));
        w.sample("drover_cluster_retries_total", {{"cluster", c->name()}, {"cause", "connect_failure"}},
                 relaxed(c->stats().retries_connect_failure));
    }
    per_cluster(w, server, "drover_cluster_retry_budget_exhausted_total", "counter",
                "Retries not sent because the retry budget was spent.",
                [&](const Cluster& c) { return relaxed(c.stats().retries_budget_exhausted); });
    per_cluster(w, server, "drover_cluster_held_requests_active", "gauge",
                "Requests waiting now for a host to come back (hold_timeout).",
                [&](const Cluster& c) { return relaxed(c.stats().held_active); });
    w.family("drover_cluster_held_requests_total", "counter",
             "Requests held while no host could take them, by how the hold ended.");
    for (const auto* c : clusters) {
        const auto& st = c->stats();
        w.sample("drover_cluster_held_requests_total", {{"cluster", c->name()}, {"result", "served"}}, relaxed(st.held_served));
        w.sample("drover_cluster_held_requests_total", {{"cluster", c->name()}, {"result", "timed_out"}}, relaxed(st.held_timed_out));
        w.sample("drover_cluster_held_requests_total", {{"cluster", c->name()}, {"result", "rejected_full"}},
                 relaxed(st.held_rejected_full));
        w.sample("drover_cluster_held_requests_total", {{"cluster", c->name()}, {"result", "client_left"}},
                 relaxed(st.held_client_left));
    }
    per_cluster(w, server, "drover_cluster_requests_active", "gauge", "HTTP requests in flight (limits.max_requests).",
                [&](const Cluster& c) { return relaxed(c.stats().requests_active); });
    per_cluster(w, server, "drover_cluster_pending_requests", "gauge",
                "Requests waiting now for an admission slot (limits.max_pending, queue_timeout).",
                [&](const Cluster& c) { return relaxed(c.stats().pending_active); });
    w.family("drover_cluster_shed_total", "counter",
             "Requests shed (503, drover-error: shed), by reason: max_requests (no cluster slot within queue_timeout), "
             "host_capacity (every host at max_requests_per_host), queue_full (max_pending waiting), low_priority, "
             "adaptive_concurrency (no slot under the learned limit within queue_timeout), memory (past process.max_memory), "
             "descriptors (no descriptor left for the upstream connection), max_connections (no room for a new upstream "
             "connection under limits.max_connections within queue_timeout).");
    for (const auto* c : clusters) {
        const auto& st = c->stats();
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "max_requests"}}, relaxed(st.shed_max_requests));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "host_capacity"}}, relaxed(st.shed_host_capacity));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "queue_full"}}, relaxed(st.shed_queue_full));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "low_priority"}}, relaxed(st.shed_low_priority));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "adaptive_concurrency"}}, relaxed(st.shed_adaptive));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "memory"}}, relaxed(st.shed_memory));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "descriptors"}}, relaxed(st.shed_descriptors));
        w.sample("drover_cluster_shed_total", {{"cluster", c->name()}, {"reason", "max_connections"}},
                 relaxed(st.shed_max_connections));
    }
    w.family("drover_cluster_concurrency_limit", "gauge",
             "adaptive_concurrency: the requests in flight admitted now, summed over workers: the learned limit, halved "
             "during a worker's min-latency probe (absent when off).");
    for (const auto* c : clusters) {
        if (c->config().adaptive_concurrency) {
            w.sample("drover_cluster_concurrency_limit", {{"cluster", c->name()}}, relaxed(c->stats().concurrency_limit));
        }
    }
    w.family("drover_host_eligible", "gauge", "1 while the host may take requests, per host.");
    for (const auto* c : clusters) {
        const auto& selection = c->selection();
        for (std::size_t i = 0; i < c->hosts().size(); ++i) {
            const bool eligible = i < selection.hosts.size() && selection.hosts[i].eligible;
            w.sample("drover_host_eligible", {{"cluster", c->name()}, {"host", c->hosts()[i]->host->name()}},
                     std::uint64_t{eligible ? 1u : 0u});
        }
    }
    w.family("drover_cluster_priority_load_ratio", "gauge",
             "Share of requests each priority group (SRV) gets, 0 to 1; one group, priority 0, for other discovery.");
    for (const auto* c : clusters) {
        for (const auto& g : c->selection().priorities) {
            w.sample("drover_cluster_priority_load_ratio", {{"cluster", c->name()}, {"priority", std::to_string(g.priority)}}, g.load);
        }
    }
}

// GET /config: the running configuration as JSON, every key with its effective value (defaults
// included), so an operator sees what Drover runs with rather than what the file said. Private keys
// are never shown: their paths are replaced by "<redacted>".
// A fraction as the percentage the config takes: 0.5 -> "50%".
std::string percent_text(double fraction) { return fmt::format("{:g}%", fraction * 100.0); }

std::string duration_text(std::chrono::milliseconds d) {
    const auto ms = d.count();
    if (ms != 0 && ms % 1000 == 0) { return fmt::format("{}s", ms / 1000); }
    return fmt::format("{}ms", ms);
}

constexpr std::string_view kRedacted = "<redacted>";

// A tcp listener has no request heads or bodies: only the keys it can be given are shown.
void render_limits_and_timeouts(JsonWriter& j, const config::Listener& l) {
    const bool http = l.protocol == config::Protocol::http;
    j.key("limits").begin_object();
    j.key("max_connections").value(l.limits.max_connections);
    if (http) {
        j.key("max_request_header_bytes").value(l.limits.max_request_header_bytes);
        j.key("max_request_body_bytes").value(l.limits.max_request_body_bytes);
        j.key("max_request_headers").value(std::uint64_t{l.limits.max_request_headers});
        j.key("max_uri_bytes").value(std::uint64_t{l.limits.max_uri_bytes});
    }
    j.end_object();
    j.key("timeouts").begin_object();
    if (http) { j.key("request_headers").value(duration_text(l.timeouts.request_headers)); }
    j.key("idle").value(duration_text(l.timeouts.idle));
    j.end_object();
}

void render_listener_config(JsonWriter& j, const config::Listener& l) {
    j.begin_object();
    j.key("name").value(l.name);
    j.key("address").value(l.address.str());
    j.key("protocol").value(protocol_name(l.protocol));
    if (l.tls) {
        j.key("tls").begin_object().key("certificates").begin_array();
        for (const auto& c : l.tls->certificates) {
            j.begin_object().key("cert").value(c.cert).key("key").value(kRedacted).end_object();
        }
        j.end_array();
        if (!l.tls->client_ca.empty()) { j.key("client_ca").value(l.tls->client_ca); }
        j.key("min_version").value(l.tls->min_version == config::ListenerTls::Version::tls1_3 ? "1.3" : "1.2");
        j.end_object();
    }
    if (l.protocol == config::Protocol::tcp) {
        j.key("cluster").value(l.cluster);
    } else {
        j.key("routes").begin_array();
        for (const auto& r : l.routes) {
            j.begin_object().key("match").begin_object();
            j.key("host").value(r.match.host).key("path_prefix").value(r.match.path_prefix);
            j.end_object();
            if (r.cluster_template.empty()) {
                j.key("cluster").value(r.cluster);
            } else {
                j.key("cluster_template").value(r.cluster_template);
            }
            j.end_object();
        }
        j.end_array();
    }
    render_limits_and_timeouts(j, l);
    j.end_object();
}

void render_discovery_config(JsonWriter& j, const config::Discovery& discovery) {
    j.key("discovery").begin_object();
    if (const auto* s = std::get_if<config::StaticDiscovery>(&discovery)) {
        j.key("static").begin_array();
        for (const auto& e : s->endpoints) {
            j.begin_object().key("address").value(e.address.str()).key("weight").value(std::uint64_t{e.weight}).end_object();
        }
        j.end_array();
    } else if (const auto* d = std::get_if<config::DnsDiscovery>(&discovery)) {
        static constexpr std::array<std::string_view, 4> kTypes = {"a", "aaaa", "a+aaaa", "srv"};
        j.key("dns").begin_object();
        j.key("name").value(d->name).key("type").value(kTypes[static_cast<std::size_t>(d->type)]);
        if (d->port) { j.key("port").value(std::uint64_t{*d->port}); }
        j.key("servers").begin_array();
        for (const auto& server : d->servers) { j.value(server.str()); }
        j.end_array();
        j.key("refresh").begin_object().key("min").value(duration_text(d->refresh_min));
        j.key("max").value(duration_text(d->refresh_max)).end_object();
        if (d->max_stale) { j.key("max_stale").value(duration_text(*d->max_stale)); }
        j.end_object();
    } else {
        j.key("file").value(std::get<config::FileDiscovery>(discovery).path);
    }
    j.end_object();
}

void render_health_config(JsonWriter& j, const config::Cluster& c) {
    const auto& h = c.health_check;
    j.key("health_check").begin_object();
    j.key("enabled").value(h.enabled);
    j.key("interval").value(duration_text(h.interval)).key("unhealthy_interval").value(duration_text(h.unhealthy_interval));
    j.key("timeout").value(duration_text(h.timeout)).key("jitter").value(percent_text(h.jitter));
    j.key("healthy_threshold").value(std::uint64_t{h.healthy_threshold});
    j.key("unhealthy_threshold").value(std::uint64_t{h.unhealthy_threshold});
    if (const auto* http = std::get_if<config::HttpProbe>(&h.probe)) {
        j.key("http").begin_object().key("path").value(http->path);
        j.key("host").value(http->host.empty() ? c.service_name() : http->host);
        j.key("expected_statuses").begin_array();
        for (const auto& r : http->expected_statuses) {
            j.value(r.lo == r.hi ? fmt::format("{}", r.lo) : fmt::format("{}-{}", r.lo, r.hi));
        }
        j.end_array().end_object();
    } else {
        j.key(std::holds_alternative<config::TlsProbe>(h.probe) ? "tls" : "tcp").begin_object().end_object();
    }
    j.end_object();
    const auto& o = c.outlier_detection;
    j.key("outlier_detection").begin_object();
    j.key("enabled").value(o.enabled).key("consecutive_failures").value(std::uint64_t{o.consecutive_failures});
    j.key("base_ejection_time").value(duration_text(o.base_ejection_time));
    j.key("max_ejection_time").value(duration_text(o.max_ejection_time));
    j.key("max_ejection_percent").value(percent_text(o.max_ejection_percent));
    j.end_object();
    j.key("panic_threshold").value(percent_text(c.panic_threshold));
    j.key("panic_policy").value(c.panic_policy == config::PanicPolicy::use_all ? "use_all" : "fail_closed");
    j.key("priority_overprovisioning").value(percent_text(c.priority_overprovisioning));
    j.key("slow_start").value(duration_text(c.slow_start));
    j.key("hold_timeout").value(duration_text(c.hold_timeout));
}

void render_cluster_config(JsonWriter& j, const config::Cluster& c) {
    static constexpr std::array<std::string_view, 6> kRetryOn = {"connect_failure", "reset", "timeout", "502", "503", "504"};
    j.begin_object();
    j.key("name").value(c.name);
    render_discovery_config(j, c.discovery);
    j.key("load_balancing").value(policy_name(c.load_balancing));
    if (c.hash || c.load_balancing == config::LbPolicy::maglev) {
        j.key("hash").begin_object();
        if (!c.hash || c.hash->kind == config::HashPolicy::Kind::source_ip) {
            j.key("source_ip").value(true);
        } else {
            j.key(c.hash->kind == config::HashPolicy::Kind::header ? "header" : "cookie").value(c.hash->name);
        }
        j.end_object();
    }
    render_health_config(j, c);
    j.key("retries").begin_object();
    j.key("attempts").value(std::uint64_t{c.retries.attempts});
    j.key("on").begin_array();
    for (const auto on : c.retries.on) { j.value(kRetryOn[static_cast<std::size_t>(on)]); }
    j.end_array();
    j.key("budget").value(percent_text(c.retries.budget)).key("per_try_timeout").value(duration_text(c.retries.per_try_timeout));
    j.end_object();
    j.key("timeouts").begin_object().key("connect").value(duration_text(c.timeouts.connect));
    j.key("request").value(duration_text(c.timeouts.request)).key("idle").value(duration_text(c.timeouts.idle)).end_object();
    j.key("limits").begin_object();
    j.key("max_connections").value(c.limits.max_connections).key("max_pending").value(c.limits.max_pending);
    j.key("max_requests").value(c.limits.max_requests).key("max_requests_per_host").value(c.limits.max_requests_per_host);
    j.key("queue_timeout").value(duration_text(c.limits.queue_timeout));
    j.end_object();
    if (c.adaptive_concurrency) {
        j.key("adaptive_concurrency").begin_object().key("min_limit").value(std::uint64_t{c.adaptive_concurrency->min_limit});
        j.key("max_limit").value(std::uint64_t{c.adaptive_concurrency->max_limit}).end_object();
    }
    if (c.tls) {
        j.key("tls").begin_object().key("sni").value(c.tls->sni).key("ca").value(c.tls->ca).key("cert").value(c.tls->cert);
        j.key("key").value(c.tls->key.empty() ? std::string_view{} : kRedacted);
        j.key("verify").value(c.tls->verify).end_object();
    }
    if (c.is_template()) {
        j.key("dynamic").begin_object().key("max_clusters").value(std::uint64_t{c.max_clusters});
        j.key("idle_timeout").value(duration_text(c.idle_timeout)).end_object();
    }
    j.end_object();
}

std::string render_config(const Server& server) {
    const auto& c = server.config();
    JsonWriter j;
    j.begin_object();
    j.key("source").value(c.source);
    j.key("admin").begin_object().key("address").value(c.admin.address.str()).end_object();
    j.key("workers").value(static_cast<std::uint64_t>(server.workers().size()));
    static constexpr std::array<std::string_view, 4> kLevels = {"debug", "info", "warn", "error"};
    j.key("log").begin_object().key("level").value(kLevels[static_cast<std::size_t>(c.log.level)]).end_object();
    j.key("shutdown").begin_object().key("drain_timeout").value(duration_text(c.shutdown.drain_timeout));
    j.key("idle_grace").value(duration_text(c.shutdown.idle_grace));
    j.key("delay").value(duration_text(c.shutdown.delay)).end_object();
    j.key("process").begin_object().key("max_memory").value(c.process.max_memory).end_object();
    if (c.access_log) { j.key("access_log").begin_object().key("path").value(c.access_log->path).end_object(); }
    j.key("listeners").begin_array();
    for (const auto& l : c.listeners) { render_listener_config(j, l); }
    j.end_array();
    j.key("clusters").begin_array();
    for (const auto& cl : c.clusters) { render_cluster_config(j, cl); }
    j.end_array();
    j.end_object();
    return j.take();
}

// GET /clusters/<cluster>/<host>: one host with its recent history (cluster names may hold '/').
AdminResponse render_host_detail(const Server& server, std::string_view rest) {
    const auto slash = rest.rfind('/');
    if (slash == std::string_view::npos) {
        return AdminResponse::text(404, "use /clusters/<cluster>/<host>, e.g. /clusters/web/127.0.0.1:9001\n");
    }
    const auto cluster_name = rest.substr(0, slash);
    const auto host_name = rest.substr(slash + 1);
    for (const auto* c : server.clusters()) {
        if (c->name() != cluster_name) { continue; }
        for (std::size_t i = 0; i < c->hosts().size(); ++i) {
            const auto& record = *c->hosts()[i];
            if (record.host->name() != host_name) { continue; }
            JsonWriter j;
            j.begin_object().key("cluster").value(c->name());
            render_host(j, *c, i);
            const auto now_steady = std::chrono::steady_clock::now();
            const auto now_wall = std::chrono::system_clock::now();
            j.key("history").begin_array();
            for (const auto& e : record.events) {
                const auto wall = now_wall - std::chrono::duration_cast<std::chrono::system_clock::duration>(now_steady - e.at);
                j.begin_object();
                j.key("time").value(std::chrono::duration<double>(wall.time_since_epoch()).count());
                j.key("age_seconds").value(age_seconds(e.at));
                j.key("event").value(e.what);
                j.key("why").value(e.why);
                j.key("times").value(static_cast<std::uint64_t>(e.times));
                j.end_object();
            }
            j.end_array().end_object();
            return AdminResponse::json(j.take());
        }
        return AdminResponse::text(404, fmt::format("cluster {} has no host {}\n", cluster_name, host_name));
    }
    return AdminResponse::text(404, fmt::format("no cluster {}\n", cluster_name));
}

// Clusters whose discovery has never produced a set (a DNS name not answered yet, an endpoints file
// not readable yet): they have no hosts, so the process is not ready to serve them.
std::vector<std::string> unresolved_clusters(const Server& server) {
    std::vector<std::string> names;
    for (const auto& c : server.clusters()) {
        // A cluster made for a request's Host may never resolve (a typo'd name): that is the request's
        // problem (503), not the proxy's readiness.
        if (!c->stats().dynamic && !c->discovery_status().resolved) { names.push_back(c->name()); }
    }
    return names;
}

// Clusters whose first hosts have not all had their first health check yet.
std::vector<std::string> warming_clusters(const Server& server) {
    std::vector<std::string> names;
    for (const auto& c : server.clusters()) {
        if (!c->stats().dynamic && c->warming() > 0) { names.push_back(c->name()); }
    }
    return names;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void render_discovery_metrics(PrometheusWriter& w, const Server& server) {
    const auto& clusters = server.clusters();
    std::vector<discovery::ResolverStatus> status;
    for (const auto& c : clusters) { status.push_back(c->discovery_status()); }
    w.family("drover_discovery_refreshes_total", "counter",
             "Discovery refreshes (DNS resolutions, endpoints-file loads) by result; a failure keeps the last set.");
    for (std::size_t i = 0; i < clusters.size(); ++i) {
        w.sample("drover_discovery_refreshes_total", {{"cluster", clusters[i]->name()}, {"result", "success"}},
                 status[i].successes);
        w.sample("drover_discovery_refreshes_total", {{"cluster", clusters[i]->name()}, {"result", "failure"}},
                 status[i].failures);
    }
    w.family("drover_discovery_resolved", "gauge", "1 once discovery has produced a set for the cluster.");
    for (std::size_t i = 0; i < clusters.size(); ++i) {
        w.sample("drover_discovery_resolved", {{"cluster", clusters[i]->name()}},
                 std::uint64_t{status[i].resolved ? 1u : 0u});
    }
    w.family("drover_discovery_last_success_age_seconds", "gauge",
             "Seconds since discovery last succeeded for the cluster (absent until it first does).");
    for (std::size_t i = 0; i < clusters.size(); ++i) {
        if (status[i].last_success) {
            w.sample("drover_discovery_last_success_age_seconds", {{"cluster", clusters[i]->name()}},
                     seconds_since(*status[i].last_success));
        }
    }
    w.family("drover_discovery_stale", "gauge",
             "1 while the cluster serves its last good set because refreshes fail.");
    for (std::size_t i = 0; i < clusters.size(); ++i) {
        w.sample("drover_discovery_stale", {{"cluster", clusters[i]->name()}},
                 std::uint64_t{status[i].stale ? 1u : 0u});
    }
    w.family("drover_discovery_stale_drops_total", "counter",
             "Stale sets dropped because they outlived dns.max_stale (the cluster then has no hosts).");
    for (std::size_t i = 0; i < clusters.size(); ++i) {
        w.sample("drover_discovery_stale_drops_total", {{"cluster", clusters[i]->name()}}, status[i].stale_drops);
    }
    w.family("drover_cluster_host_changes_total", "counter",
             "Host-set changes applied from discovery: hosts added, removed, or given a new weight.");
    for (const auto& c : clusters) {
        const auto& changes = c->host_changes();
        w.sample("drover_cluster_host_changes_total", {{"cluster", c->name()}, {"change", "added"}}, changes.added);
        w.sample("drover_cluster_host_changes_total", {{"cluster", c->name()}, {"change", "removed"}},
                 changes.removed);
        w.sample("drover_cluster_host_changes_total", {{"cluster", c->name()}, {"change", "weight"}}, changes.weight);
    }
}

void render_discovery(JsonWriter& j, const discovery::ResolverStatus& s) {
    j.key("discovery").begin_object();
    j.key("kind").value(s.kind);
    j.key("resolved").value(s.resolved);
    j.key("stale").value(s.stale);
    j.key("consecutive_failures").value(std::uint64_t{s.consecutive_failures});
    j.key("refreshes_succeeded").value(s.successes);
    j.key("refreshes_failed").value(s.failures);
    j.key("stale_drops").value(s.stale_drops);
    if (s.last_success) { j.key("last_success_age_seconds").value(seconds_since(*s.last_success)); }
    j.key("last_error").value(s.last_error);
    j.end_object();
}

std::string render_metrics(const Server& server) {
    PrometheusWriter w;
    w.family("drover_build_info", "gauge", "Build information; the value is always 1.");
    w.sample("drover_build_info", {{"version", DROVER_VERSION}}, std::uint64_t{1});
    w.family("drover_process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    w.sample("drover_process_start_time_seconds", {},
             std::chrono::duration<double>(server.start_time().time_since_epoch()).count());
    w.family("drover_workers", "gauge", "Event-loop threads serving traffic.");
    w.sample("drover_workers", {}, static_cast<std::uint64_t>(server.workers().size()));
    w.family("drover_draining", "gauge", "1 while the process drains before exiting.");
    w.sample("drover_draining", {}, std::uint64_t{server.draining() ? 1u : 0u});
    w.family("drover_process_resident_memory_bytes", "gauge", "Resident memory of the process.");
    w.sample("drover_process_resident_memory_bytes", {}, resident_memory_bytes());
    w.family("drover_memory_pressure", "gauge",
             "1 while resident memory is past 95% of process.max_memory: new connections refused, new requests shed.");
    w.sample("drover_memory_pressure", {}, std::uint64_t{g_pressure.memory.load(std::memory_order_relaxed) ? 1u : 0u});
    w.family("drover_config_reloads_total", "counter", "Config reloads (SIGHUP, POST /reload) by result; a failed one kept the running config.");
    w.sample("drover_config_reloads_total", {{"result", "success"}}, server.reload_counters().succeeded);
    w.sample("drover_config_reloads_total", {{"result", "failure"}}, server.reload_counters().failed);
    if (const auto& last = server.reload_counters().last_success) {
        w.family("drover_config_last_reload_success_timestamp_seconds", "gauge", "When the config was last reloaded, Unix epoch.");
        w.sample("drover_config_last_reload_success_timestamp_seconds", {},
                 std::chrono::duration<double>(last->time_since_epoch()).count());
    }
    w.family("drover_internal_errors_total", "counter", "Exceptions that escaped a connection or task.");
    w.sample("drover_internal_errors_total", {}, g_escaped_exceptions.load(std::memory_order_relaxed));

    const auto& listeners = server.listeners();
    w.family("drover_listener_connections_accepted_total", "counter",
             "Client connections accepted, including those then refused by a limit.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_accepted_total", {{"listener", l->state().config.name}},
                 sum(l->state(), &ListenerCounters::accepted));
    }
    w.family("drover_listener_connections_active", "gauge", "Client connections open now.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_active", {{"listener", l->state().config.name}},
                 l->state().connections_active().load(std::memory_order_relaxed));
    }
    w.family("drover_listener_connections_idle", "gauge",
             "HTTP client connections open and idle between requests now (parked: no session, no buffer).");
    for (const auto& l : listeners) {
        if (l->state().config.protocol != config::Protocol::http) { continue; }
        w.sample("drover_listener_connections_idle", {{"listener", l->state().config.name}},
                 sum(l->state(), &ListenerCounters::connections_idle));
    }
    w.family("drover_listener_connections_rejected_total", "counter",
             "Client connections closed at once because a limit was reached.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_rejected_total",
                 {{"listener", l->state().config.name}, {"reason", "max_connections"}},
                 sum(l->state(), &ListenerCounters::rejected_max_connections));
        w.sample("drover_listener_connections_rejected_total",
                 {{"listener", l->state().config.name}, {"reason", "fd_limit"}},
                 sum(l->state(), &ListenerCounters::rejected_fd_limit));
        w.sample("drover_listener_connections_rejected_total",
                 {{"listener", l->state().config.name}, {"reason", "memory_limit"}},
                 sum(l->state(), &ListenerCounters::rejected_memory));
    }
    w.family("drover_listener_bytes_received_total", "counter", "Bytes received from clients.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_bytes_received_total", {{"listener", l->state().config.name}},
                 sum(l->state(), &ListenerCounters::bytes_received));
    }
    w.family("drover_listener_bytes_sent_total", "counter", "Bytes sent to clients.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_bytes_sent_total", {{"listener", l->state().config.name}},
                 sum(l->state(), &ListenerCounters::bytes_sent));
    }

    bool any_tls = false;
    for (const auto& l : listeners) { any_tls = any_tls || l->state().tls != nullptr; }
    if (any_tls) {
        w.family("drover_listener_tls_handshakes_total", "counter", "TLS handshakes with clients, by result.");
        for (const auto& l : listeners) {
            if (!l->state().tls) { continue; }
            const auto& name = l->state().config.name;
            w.sample("drover_listener_tls_handshakes_total", {{"listener", name}, {"result", "ok"}},
                     sum(l->state(), &ListenerCounters::tls_handshakes));
            w.sample("drover_listener_tls_handshakes_total", {{"listener", name}, {"result", "failed"}},
                     sum(l->state(), &ListenerCounters::tls_handshake_failures));
        }
        w.family("drover_listener_tls_resumed_total", "counter",
                 "Successful TLS handshakes with clients that resumed a session (no full handshake).");
        for (const auto& l : listeners) {
            if (!l->state().tls) { continue; }
            w.sample("drover_listener_tls_resumed_total", {{"listener", l->state().config.name}},
                     sum(l->state(), &ListenerCounters::tls_resumed));
        }
        w.family("drover_listener_tls_certificate_expiry_timestamp_seconds", "gauge",
                 "When each certificate a listener serves expires (its notAfter), in Unix seconds.");
        for (const auto& l : listeners) {
            if (!l->state().tls) { continue; }
            for (const auto& e : l->state().tls->expiries()) {
                w.sample("drover_listener_tls_certificate_expiry_timestamp_seconds",
                         {{"listener", l->state().config.name}, {"certificate", e.file}},
                         static_cast<std::uint64_t>(std::max<std::int64_t>(0, e.not_after)));
            }
        }
    }

    bool any_http = false;
    for (const auto& l : listeners) { any_http = any_http || l->state().config.protocol == config::Protocol::http; }
    if (any_http) { render_http_metrics(w, server); }

    const auto& clusters = server.clusters();
    w.family("drover_cluster_hosts", "gauge", "Hosts discovery currently lists for the cluster.");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_hosts", {{"cluster", c->name()}}, static_cast<std::uint64_t>(c->hosts().size()));
    }
    render_health_metrics(w, server);
    w.family("drover_cluster_upstream_connections_active", "gauge",
             "Upstream connections to the cluster open now, which limits.max_connections bounds: tcp relays, and HTTP "
             "connections in use or parked idle in a worker's pool.");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_upstream_connections_active", {{"cluster", c->name()}},
                 c->stats().connections.open.load(std::memory_order_relaxed));
    }
    w.family("drover_cluster_upstream_connections_idle", "gauge",
             "Of the cluster's upstream connections, the HTTP ones parked idle in a worker's pool now.");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_upstream_connections_idle", {{"cluster", c->name()}},
                 c->stats().connections.idle.load(std::memory_order_relaxed));
    }
    w.family("drover_cluster_upstream_unavailable_total", "counter",
             "Client connections closed because no host could be reached or the cluster limit was hit.");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_upstream_unavailable_total", {{"cluster", c->name()}, {"reason", "no_host"}},
                 c->stats().unavailable_no_host.load(std::memory_order_relaxed));
        w.sample("drover_cluster_upstream_unavailable_total",
                 {{"cluster", c->name()}, {"reason", "max_connections"}},
                 c->stats().unavailable_max_connections.load(std::memory_order_relaxed));
    }
    render_discovery_metrics(w, server);

    struct HostMetric {
        std::string_view name, type, help;
        std::function<std::uint64_t(const discovery::HostStats&)> read;
    };
    const HostMetric host_metrics[] = {
        {"drover_upstream_connections_total", "counter", "Upstream connections established to the host.",
         [](const discovery::HostStats& s) { return s.connections_total.load(std::memory_order_relaxed); }},
        {"drover_upstream_connections_active", "gauge", "Upstream connections to the host open now.",
         [](const discovery::HostStats& s) {
             return static_cast<std::uint64_t>(s.connections_active.load(std::memory_order_relaxed));
         }},
        {"drover_upstream_connect_failures_total", "counter",
         "Connection attempts to the host that were refused or timed out.",
         [](const discovery::HostStats& s) { return s.connect_failures.load(std::memory_order_relaxed); }},
    };
    for (const auto& m : host_metrics) {
        w.family(m.name, m.type, m.help);
        for (const auto& c : clusters) {
            for (const auto& h : c->hosts()) {
                w.sample(m.name, {{"cluster", c->name()}, {"host", h->host->name()}}, m.read(h->host->stats()));
            }
        }
    }
    return w.text();
}

std::string render_clusters(const Server& server) {
    JsonWriter j;
    j.begin_object().key("clusters").begin_array();
    for (const auto& c : server.clusters()) {
        j.begin_object();
        j.key("name").value(c->name());
        j.key("load_balancing").value(policy_name(c->config().load_balancing));
        j.key("upstream_connections_active").value(c->stats().connections.open.load());
        j.key("upstream_connections_idle").value(c->stats().connections.idle.load());
        render_discovery(j, c->discovery_status());
        j.key("hosts_eligible").value(static_cast<std::uint64_t>(c->selection().eligible));
        j.key("healthy_fraction").value(c->selection().healthy_fraction);
        j.key("panic").value(c->panic());
        // Admission now (http): what /metrics has as drover_cluster_*_requests and shed totals.
        const auto& st = c->stats();
        const auto load = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
        j.key("admission").begin_object();
        j.key("requests_active").value(load(st.requests_active));
        j.key("pending").value(load(st.pending_active));
        j.key("held").value(load(st.held_active));
        j.key("shed_total").value(load(st.shed_max_requests) + load(st.shed_host_capacity) + load(st.shed_queue_full) +
                                  load(st.shed_low_priority) + load(st.shed_adaptive) + load(st.shed_memory) +
                                  load(st.shed_descriptors) + load(st.shed_max_connections));
        if (c->config().adaptive_concurrency) { j.key("concurrency_limit").value(load(st.concurrency_limit)); }
        j.end_object();
        // Priority groups (SRV): what each gets; one group of priority 0 for other discovery.
        j.key("priorities").begin_array();
        for (const auto& g : c->selection().priorities) {
            j.begin_object();
            j.key("priority").value(std::uint64_t{g.priority});
            j.key("hosts_counted").value(static_cast<std::uint64_t>(g.counted));
            j.key("hosts_available").value(static_cast<std::uint64_t>(g.available));
            j.key("load_percent").value(std::round(g.load * 1000.0) / 10.0);
            j.end_object();
        }
        j.end_array();
        j.key("hosts").begin_array();
        for (std::size_t i = 0; i < c->hosts().size(); ++i) {
            j.begin_object();
            render_host(j, *c, i);
            j.end_object();
        }
        j.end_array().end_object();
    }
    j.end_array().end_object();
    return j.take();
}

std::string render_listeners(const Server& server) {
    JsonWriter j;
    j.begin_object().key("listeners").begin_array();
    for (const auto& l : server.listeners()) {
        const auto& state = l->state();
        j.begin_object();
        j.key("name").value(state.config.name);
        j.key("address").value(discovery::to_string(state.bound));
        j.key("protocol").value(protocol_name(state.config.protocol));
        if (state.config.protocol == config::Protocol::tcp) { j.key("cluster").value(state.config.cluster); }
        j.key("tls").value(state.tls != nullptr);
        j.key("connections_active").value(state.connections_active().load(std::memory_order_relaxed));
        j.end_object();
    }
    j.end_array().end_object();
    return j.take();
}

}  // namespace

void register_status_routes(Admin& admin, const Server& server) {
    admin.route("GET", "/live", [](const AdminRequest&) { return AdminResponse::text(200, "live\n"); });
    admin.route("GET", "/ready", [&server](const AdminRequest&) {
        if (server.ready()) {
            const auto unresolved = unresolved_clusters(server);
            if (!unresolved.empty()) {
                return AdminResponse::text(503, fmt::format("not ready: unresolved clusters: {}\n",
                                                            fmt::join(unresolved, ", ")));
            }
            const auto warming = warming_clusters(server);
            if (!warming.empty()) {
                return AdminResponse::text(503, fmt::format("not ready: first health checks running in clusters: {}\n",
                                                            fmt::join(warming, ", ")));
            }
            return AdminResponse::text(200, "ready\n");
        }
        return AdminResponse::text(503, server.draining() ? "not ready: draining\n" : "not ready: starting\n");
    });
    admin.route("GET", "/metrics", [&server](const AdminRequest&) {
        return AdminResponse{200, std::string(kPrometheus), render_metrics(server), {}};
    });
    admin.route("GET", "/clusters", [&server](const AdminRequest&) {
        return AdminResponse::json(render_clusters(server));
    });
    admin.route("GET", "/clusters/*", [&server](const AdminRequest& request) {
        const std::string_view path = request.path;
        // .../drain and .../undrain are actions (POST), not hosts: say so, rather than "no such host".
        if (path.ends_with("/drain") || path.ends_with("/undrain")) {
            auto response = AdminResponse::text(405, "method not allowed; use POST\n");
            response.allow = "POST";
            return response;
        }
        return render_host_detail(server, path.substr(std::string_view("/clusters/").size()));
    });
    admin.route("GET", "/config", [&server](const AdminRequest&) { return AdminResponse::json(render_config(server)); });
    admin.route("GET", "/listeners", [&server](const AdminRequest&) {
        return AdminResponse::json(render_listeners(server));
    });
}

}  // namespace drover::proxy
