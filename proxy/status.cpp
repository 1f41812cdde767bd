#include "proxy/status.hpp"

#include <fmt/format.h>

#include <array>

#include "proxy/admin.hpp"
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
std::uint64_t sum(const Server& server, std::size_t listener, Field field) {
    std::uint64_t total = 0;
    for (const auto& worker : server.workers()) {
        total += (worker->listener_counters(listener).*field).load(std::memory_order_relaxed);
    }
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
            for (const auto& worker : server.workers()) {
                total += worker->listener_counters(l->index).requests_by_class[c].load(std::memory_order_relaxed);
            }
            w.sample("drover_http_requests_total", {{"listener", l->config.name}, {"code_class", kClasses[c]}}, total);
        }
    }
    w.family("drover_http_local_responses_total", "counter",
             "HTTP responses Drover generated itself, by reason (the drover-error header).");
    for (const auto* l : http_listeners) {
        for (std::size_t r = 0; r < static_cast<std::size_t>(LocalReason::count); ++r) {
            std::uint64_t total = 0;
            for (const auto& worker : server.workers()) {
                total += worker->listener_counters(l->index).local_responses[r].load(std::memory_order_relaxed);
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
            for (const auto& worker : server.workers()) {
                cumulative += worker->listener_counters(l->index).duration_buckets[b].load(std::memory_order_relaxed);
            }
            const std::string le = b < kDurationBuckets.size() ? fmt::format("{}", kDurationBuckets[b]) : "+Inf";
            w.sample("drover_http_request_duration_seconds_bucket", {{"listener", l->config.name}, {"le", le}}, cumulative);
        }
        std::uint64_t micros = 0;
        for (const auto& worker : server.workers()) {
            micros += worker->listener_counters(l->index).duration_sum_micros.load(std::memory_order_relaxed);
        }
        w.sample("drover_http_request_duration_seconds_sum", {{"listener", l->config.name}}, static_cast<double>(micros) / 1e6);
        w.sample("drover_http_request_duration_seconds_count", {{"listener", l->config.name}}, cumulative);
    }
    w.family("drover_upstream_pool_reuses_total", "counter", "HTTP requests sent on a kept-alive upstream connection.");
    for (const auto& c : server.clusters()) {
        for (const auto& h : c->snapshot()->hosts) {
            w.sample("drover_upstream_pool_reuses_total", {{"cluster", c->name()}, {"host", h.host->name()}},
                     h.host->stats().pool_reuses.load(std::memory_order_relaxed));
        }
    }
    w.family("drover_upstream_requests_total", "counter", "HTTP responses received from the host, by status class.");
    for (const auto& c : server.clusters()) {
        for (const auto& h : c->snapshot()->hosts) {
            for (std::size_t k = 0; k < kClasses.size(); ++k) {
                w.sample("drover_upstream_requests_total",
                         {{"cluster", c->name()}, {"host", h.host->name()}, {"code_class", kClasses[k]}},
                         h.host->stats().responses_by_class[k].load(std::memory_order_relaxed));
            }
        }
    }
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
    w.family("drover_internal_errors_total", "counter", "Exceptions that escaped a connection or task.");
    w.sample("drover_internal_errors_total", {}, g_escaped_exceptions.load(std::memory_order_relaxed));

    const auto& listeners = server.listeners();
    w.family("drover_listener_connections_accepted_total", "counter",
             "Client connections accepted, including those then refused by a limit.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_accepted_total", {{"listener", l->state().config.name}},
                 sum(server, l->state().index, &ListenerCounters::accepted));
    }
    w.family("drover_listener_connections_active", "gauge", "Client connections open now.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_active", {{"listener", l->state().config.name}},
                 l->state().connections_active.load(std::memory_order_relaxed));
    }
    w.family("drover_listener_connections_rejected_total", "counter",
             "Client connections closed at once because a limit was reached.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_connections_rejected_total",
                 {{"listener", l->state().config.name}, {"reason", "max_connections"}},
                 sum(server, l->state().index, &ListenerCounters::rejected_max_connections));
    }
    w.family("drover_listener_bytes_received_total", "counter", "Bytes received from clients.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_bytes_received_total", {{"listener", l->state().config.name}},
                 sum(server, l->state().index, &ListenerCounters::bytes_received));
    }
    w.family("drover_listener_bytes_sent_total", "counter", "Bytes sent to clients.");
    for (const auto& l : listeners) {
        w.sample("drover_listener_bytes_sent_total", {{"listener", l->state().config.name}},
                 sum(server, l->state().index, &ListenerCounters::bytes_sent));
    }

    bool any_http = false;
    for (const auto& l : listeners) { any_http = any_http || l->state().config.protocol == config::Protocol::http; }
    if (any_http) { render_http_metrics(w, server); }

    const auto& clusters = server.clusters();
    w.family("drover_cluster_hosts", "gauge", "Hosts discovery currently lists for the cluster.");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_hosts", {{"cluster", c->name()}},
                 static_cast<std::uint64_t>(c->snapshot()->hosts.size()));
    }
    w.family("drover_cluster_upstream_connections_active", "gauge",
             "Upstream connections of the cluster open now (limited by limits.max_connections).");
    for (const auto& c : clusters) {
        w.sample("drover_cluster_upstream_connections_active", {{"cluster", c->name()}},
                 c->stats().upstream_connections_active.load(std::memory_order_relaxed));
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
            for (const auto& h : c->snapshot()->hosts) {
                w.sample(m.name, {{"cluster", c->name()}, {"host", h.host->name()}}, m.read(h.host->stats()));
            }
        }
    }
    return w.text();
}

std::string render_clusters(const Server& server) {
    JsonWriter j;
    j.begin_object().key("clusters").begin_array();
    for (const auto& c : server.clusters()) {
        const auto snapshot = c->snapshot();
        j.begin_object();
        j.key("name").value(c->name());
        j.key("load_balancing").value(policy_name(c->config().load_balancing));
        j.key("upstream_connections_active").value(c->stats().upstream_connections_active.load());
        render_discovery(j, c->discovery_status());
        j.key("hosts").begin_array();
        for (const auto& h : snapshot->hosts) {
            const auto& s = h.host->stats();
            j.begin_object();
            j.key("address").value(h.host->name());
            j.key("weight").value(std::uint64_t{h.weight});
            // Health checking is not built yet: every listed host is in rotation.
            j.key("state").value("healthy");
            j.key("connections_active").value(s.connections_active.load(std::memory_order_relaxed));
            j.key("connections_total").value(s.connections_total.load(std::memory_order_relaxed));
            j.key("connect_failures").value(s.connect_failures.load(std::memory_order_relaxed));
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
        j.key("connections_active").value(state.connections_active.load(std::memory_order_relaxed));
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
            if (unresolved.empty()) { return AdminResponse::text(200, "ready\n"); }
            return AdminResponse::text(503, fmt::format("not ready: unresolved clusters: {}\n",
                                                        fmt::join(unresolved, ", ")));
        }
        return AdminResponse::text(503, server.draining() ? "not ready: draining\n" : "not ready: starting\n");
    });
    admin.route("GET", "/metrics", [&server](const AdminRequest&) {
        return AdminResponse{200, std::string(kPrometheus), render_metrics(server), {}};
    });
    admin.route("GET", "/clusters", [&server](const AdminRequest&) {
        return AdminResponse::json(render_clusters(server));
    });
    admin.route("GET", "/listeners", [&server](const AdminRequest&) {
        return AdminResponse::json(render_listeners(server));
    });
}

}  // namespace drover::proxy
