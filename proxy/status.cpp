#include "proxy/status.hpp"

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
        if (server.ready()) { return AdminResponse::text(200, "ready\n"); }
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
