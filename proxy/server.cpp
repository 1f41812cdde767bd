#include "proxy/server.hpp"

#include <malloc.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <algorithm>

#include <csignal>
#include <thread>

#include "config/loader.hpp"
#include "config/log.hpp"
#include "discovery/endpoint.hpp"
#include "proxy/early_signals.hpp"
#include "proxy/pressure.hpp"
#include "proxy/spawn.hpp"
#include "proxy/systemd_notify.hpp"
#include "proxy/status.hpp"

namespace drover::proxy {

namespace asio = boost::asio;

namespace {
// How often the drain looks at the live-connection count; short enough that an idle drain exits fast.
constexpr auto kDrainPoll = std::chrono::milliseconds(20);
// How long a reload waits for the acceptors of listeners removed before to close (their workers do it).
constexpr auto kClosingAcceptorsWait = std::chrono::milliseconds(500);
// After the drain deadline closes every session, how long to wait for their coroutines to unwind.
constexpr auto kAbortGrace = std::chrono::seconds(2);

// TLS at startup: main checked the files already (check_tls), so a failure here means they changed
// in between, and the server does not start.
std::shared_ptr<const health::TlsClient> startup_tls(const config::Cluster& cluster) {
    if (!cluster.tls) { return nullptr; }
    auto built = health::TlsClient::build(*cluster.tls);
    if (!built.client) { throw std::runtime_error(fmt::format("cluster {}: tls: {}", cluster.name, built.error)); }
    return built.client;
}

std::shared_ptr<const TlsServer> startup_tls(const config::Listener& listener, std::size_t index) {
    if (!listener.tls) { return nullptr; }
    auto built = TlsServer::build(*listener.tls, fmt::format("listeners[{}].tls", index),
                                  listener.protocol == config::Protocol::http);
    if (!built.server) { throw std::runtime_error(built.errors.front().str()); }
    return built.server;
}

// Asio throws boost::system::system_error, whose what() also names the boost header that threw:
// only the reason ("Address already in use") is for the user.
std::string socket_error(const std::exception& e) {
    const auto* system = dynamic_cast<const boost::system::system_error*>(&e);
    return system != nullptr ? system->code().message() : e.what();
}

std::string bind_error(const config::Listener& listener, std::size_t index, const std::exception& e) {
    return fmt::format("{}:{}:{}: listeners[{}]: cannot listen on {}: {}", listener.mark.file, listener.mark.line,
                       listener.mark.column, index, listener.address.str(), socket_error(e));
}

// The workers a `workers` value runs: 0 is `auto`, one per core.
std::size_t worker_count(std::size_t configured) {
    return configured != 0 ? configured : std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

Server::Server(config::Config config) : config_(std::move(config)), signals_(control_) {
    // Taken from here on: one that comes while the server starts waits for start() (a SIGHUP then
    // reloads, a SIGTERM drains), where the default action would kill the process.
    for (const int signal : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) { signals_.add(signal); }
    replay_early_signals();   // those caught before now, for the handlers just installed
    log::set_level(config_.log.level);
    if (config_.access_log) { access_log_ = std::make_unique<AccessLog>(config_.access_log->path); }
    for (std::size_t i = 0; i < worker_count(config_.workers); ++i) {
        workers_.push_back(std::make_unique<Worker>(i));
    }
    for (const auto& cluster_config : config_.clusters) {
        auto tls = startup_tls(cluster_config);
        if (cluster_config.is_template()) {
            template_slots_[cluster_config.name] = templates_.size();
            templates_.push_back({cluster_config, {}, std::make_shared<std::atomic<std::size_t>>(0), std::move(tls)});
            continue;
        }
        cluster_slots_[cluster_config.name] = add_cluster(cluster_config, std::move(tls));
    }
    for (auto& worker : workers_) {
        worker->set_idle_grace(config_.shutdown.idle_grace);   // before the worker runs
        worker->request_dynamic = [this](std::size_t t, std::string host) {
            asio::post(control_, [this, t, host = std::move(host)] { ensure_dynamic(t, host); });
        };
        worker->dynamic_full = [this](std::size_t t) {
            return templates_[t].count->load(std::memory_order_relaxed) >= templates_[t].config.max_clusters;
        };
        worker->close_idle_elsewhere = [this, self = worker.get()](std::shared_ptr<ConnectionBudget> budget) {
            for (auto& other : workers_) {
                if (other.get() == self) { continue; }
                other->post([w = other.get(), budget] { w->pool().close_idle(*budget); });
            }
        };
    }
    for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
        const auto& listener_config = config_.listeners[i];
        listeners_.push_back(make_listener(listener_config, startup_tls(listener_config, i)));
        publish_routes(listeners_.back()->state().index, listener_config);
    }
    admin_ = std::make_unique<Admin>(control_, config_.admin.address);
    register_status_routes(*admin_, *this);
    admin_->route("POST", "/clusters/*", [this](const AdminRequest& request) { return drain_host(request.path); });
    admin_->route("POST", "/reload", [this](const AdminRequest&) {
        const auto result = reload("POST /reload");
        if (result.ok) { return AdminResponse::text(200, "reloaded: " + result.summary + "\n"); }
        return AdminResponse::text(400, fmt::format("reload refused, the running config stays:\n{}\n",
                                                    fmt::join(result.errors, "\n")));
    });
    admin_->route("POST", "/drain", [this](const AdminRequest&) {
        if (stopping_) { return AdminResponse::text(409, "already draining\n"); }
        drain("POST /drain");
        if (!draining_) {
            return AdminResponse::text(200, fmt::format("draining: /ready answers 503, listeners close in {} ms "
                                                        "(shutdown.delay), then live connections have {} ms\n",
                                                        config_.shutdown.delay.count(),
                                                        config_.shutdown.drain_timeout.count()));
        }
        return AdminResponse::text(200, fmt::format("draining: listeners closed, live connections have {} ms\n",
                                                    config_.shutdown.drain_timeout.count()));
    });
}

std::unique_ptr<Listener> Server::make_listener(const config::Listener& listener_config,
                                                std::shared_ptr<const TlsServer> tls) {
    auto state = std::make_shared<ListenerState>();
    state->config = listener_config;
    state->index = next_listener_index_++;
    state->access_log = access_log_.get();
    state->tls = std::move(tls);
    for (const auto& t : templates_) { state->template_names.push_back(t.config.name); }
    return std::make_unique<Listener>(std::move(state), workers_.size());
}

// Builds listener `index`'s routes (or its tcp cluster) from the current cluster slots and hands them to
// every worker: directly before the workers run, by a post after.
void Server::publish_routes(std::size_t index, const config::Listener& listener) {
    std::size_t cluster = 0;
    auto router = std::make_shared<Router>();
    if (listener.protocol == config::Protocol::tcp) {
        cluster = cluster_slots_.at(listener.cluster);   // the loader checked it exists
    } else {
        for (const auto& route : listener.routes) {
            router->add(route.match, route.cluster_template.empty()
                                         ? cluster_slots_.at(route.cluster)
                                         : Router::kTemplate | template_slots_.at(route.cluster_template));
        }
    }
    std::shared_ptr<const Router> shared = std::move(router);
    for (auto& worker : workers_) {
        if (!started_) {
            worker->set_routes(index, shared, cluster);
        } else {
            worker->post([w = worker.get(), index, shared, cluster] { w->set_routes(index, shared, cluster); });
        }
    }
}

std::size_t Server::add_cluster(const config::Cluster& cluster_config, std::shared_ptr<const health::TlsClient> tls) {
    std::size_t index = clusters_.size();
    if (!free_slots_.empty()) {
        index = free_slots_.back();
        free_slots_.pop_back();
    }
    auto publish = [this, index](std::shared_ptr<const ClusterSnapshot> snapshot) {
        for (auto& worker : workers_) {
            worker->post([w = worker.get(), index, snapshot] { w->set_snapshot(index, snapshot); });
        }
    };
    auto cluster = std::make_unique<Cluster>(cluster_config, make_resolver(cluster_config, control_), std::move(publish),
                                            control_, std::move(tls));
    cluster->track_latency(workers_.size());
    if (index == clusters_.size()) {
        // Before start only: once workers run, a new slot reaches them by a posted install_dynamic.
        if (!started_) {
            for (auto& worker : workers_) { worker->add_cluster(cluster->snapshot()); }
        }
        clusters_.push_back(std::move(cluster));
    } else {
        clusters_[index] = std::move(cluster);
    }
    return index;
}

Cluster* Server::find_cluster(std::string_view name) {
    for (auto& c : clusters_) {
        if (c && c->name() == name) { return c.get(); }
    }
    return nullptr;
}

std::vector<const Cluster*> Server::clusters() const {
    std::vector<const Cluster*> out;
    out.reserve(clusters_.size());
    for (const auto& c : clusters_) {
        if (c) { out.push_back(c.get()); }
    }
    return out;
}

// Makes the cluster for `host` from a template, on first use. Bounded by the template's max_clusters;
// past it, requests for new hosts get 503 from the worker (which checks the same bound).
void Server::ensure_dynamic(std::size_t template_index, const std::string& host) {
    auto& tmpl = templates_[template_index];
    if (draining_ || tmpl.instances.contains(host) || tmpl.instances.size() >= tmpl.config.max_clusters) { return; }
    config::Cluster cluster_config = tmpl.config;
    cluster_config.name = tmpl.config.name + "/" + host;
    auto& dns = std::get<config::DnsDiscovery>(cluster_config.discovery);
    for (auto at = dns.name.find("{host}"); at != std::string::npos; at = dns.name.find("{host}", at)) {
        dns.name.replace(at, 6, host);
        at += host.size();
    }
    const std::size_t index = add_cluster(cluster_config, tmpl.tls);
    auto& cluster = *clusters_[index];
    cluster.mark_dynamic();
    cluster.touch();
    const std::string key = tmpl.config.name + "/" + host;
    for (auto& worker : workers_) {
        worker->post([w = worker.get(), index, key, snapshot = cluster.snapshot()] {
            w->install_dynamic(index, key, snapshot);
        });
    }
    tmpl.instances.emplace(host, index);
    tmpl.count->store(tmpl.instances.size(), std::memory_order_relaxed);
    cluster.start();
    log::info("cluster {} made from template {} for host {} (dns {})", cluster_config.name, tmpl.config.name, host,
              dns.name);
    if (tmpl.instances.size() == 1 && templates_sweeping_ == false) {
        templates_sweeping_ = true;
        spawn(control_.get_executor(), sweep_dynamic(), "dynamic cluster sweep");
    }
}

// Drops dynamic clusters unused for their template's idle_timeout (no request, no open connection but
// idle pooled ones, which go with the cluster).
asio::awaitable<void> Server::sweep_dynamic() {
    asio::steady_timer timer(control_);
    while (!draining_) {
        timer.expires_after(std::chrono::seconds(1));
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        const auto now = std::chrono::steady_clock::now().time_since_epoch();
        for (auto& tmpl : templates_) {
            for (auto it = tmpl.instances.begin(); it != tmpl.instances.end();) {
                auto& slot = clusters_[it->second];
                const auto& stats = slot->stats();
                const auto idle = now - std::chrono::nanoseconds(stats.last_used_ns.load(std::memory_order_relaxed));
                // In use: a request in flight (however long), or a tcp connection open.
                if (idle < tmpl.config.idle_timeout || stats.requests_active.load() > 0 ||
                    stats.connections.open.load() > stats.connections.idle.load()) {
                    ++it;
                    continue;
                }
                log::info("cluster {} unused for {} ms: dropped", slot->name(), tmpl.config.idle_timeout.count());
                const std::size_t index = it->second;
                const std::string key = slot->name();
                for (auto& worker : workers_) {
                    worker->post([w = worker.get(), index, key] { w->remove_dynamic(index, key); });
                }
                slot->stop();
                // Destroyed after the handlers already queued (the resolver's cancellations) have run.
                asio::post(control_, [retired = std::shared_ptr<Cluster>(std::move(slot))] {});
                free_slots_.push_back(index);
                it = tmpl.instances.erase(it);
                tmpl.count->store(tmpl.instances.size(), std::memory_order_relaxed);
            }
        }
    }
}

// Samples resident memory; past 95% of process.max_memory the data path refuses new work, and takes it
// again below 90% (a gap, so it does not flap at the line).
asio::awaitable<void> Server::watch_memory() {
    constexpr auto kPeriod = std::chrono::milliseconds(250);
    asio::steady_timer timer(control_);
    while (!draining_) {
        // Read every time: a reload may set, change or remove the limit (it takes effect at once).
        const auto max_memory = config_.process.max_memory;
        const auto limit = static_cast<double>(max_memory);
        const bool was = g_pressure.memory.load(std::memory_order_relaxed);
        if (max_memory == 0) {
            if (was) {
                g_pressure.memory.store(false, std::memory_order_relaxed);
                log::info("memory: process.max_memory removed: taking new work again");
            }
        } else {
            // Under pressure, memory freed since (connections gone) may still sit in malloc's free
            // lists, counted as resident: give it back first, or a spike would leave Drover refusing
            // work with nothing in use.
            if (was) { ::malloc_trim(0); }
            const auto resident = resident_memory_bytes();
            g_pressure.resident_bytes.store(resident, std::memory_order_relaxed);
            const bool now = was ? static_cast<double>(resident) > 0.90 * limit : static_cast<double>(resident) > 0.95 * limit;
            if (now != was) {
                g_pressure.memory.store(now, std::memory_order_relaxed);
                if (now) {
                    log::warn("memory: {} MiB resident, past 95% of process.max_memory ({} MiB): refusing new connections "
                              "and shedding new requests", resident >> 20, max_memory >> 20);
                } else {
                    log::info("memory: {} MiB resident, below 90% of process.max_memory: taking new work again",
                              resident >> 20);
                }
            }
        }
        timer.expires_after(kPeriod);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

Server::~Server() {
    for (auto& worker : workers_) { worker->stop(); }
    for (auto& worker : workers_) { worker->join(); }
}

void Server::start() {
    // asio throws boost::system::system_error, which is no std::system_error: catch what both are.
    try {
        admin_->start();
    } catch (const std::exception& e) {
        const auto& mark = config_.admin.mark;
        const auto where = mark.file.empty() ? std::string{} : fmt::format("{}:{}:{}: ", mark.file, mark.line, mark.column);
        throw std::runtime_error(fmt::format("{}admin.address: cannot listen on {}: {}{}", where,
                                             config_.admin.address.str(), socket_error(e),
                                             mark.file.empty() ? " (the default admin address: set admin.address)" : ""));
    }
    std::vector<Worker*> workers;
    for (auto& w : workers_) { workers.push_back(w.get()); }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        try {
            listeners_[i]->bind(workers);
        } catch (const std::exception& e) {
            throw std::runtime_error(bind_error(listeners_[i]->state().config, i, e));
        }
    }
    // Discovery first, so each worker applies the first snapshots before its first accept.
    for (auto& cluster : clusters_) { cluster->start(); }   // templates are started per Host, on first use
    for (auto& listener : listeners_) { listener->start(); }
    spawn(control_.get_executor(), watch_memory(), "memory watch");   // also without a limit: a reload may set one
    std::signal(SIGPIPE, SIG_IGN);
    wait_for_signal();   // the signals taken since the constructor, then those to come
    for (auto& worker : workers_) { worker->start(); }
    started_ = true;

    log::info("admin listening on {}", discovery::to_string(admin_->local_endpoint()));
    for (const auto& listener : listeners_) {
        log::info("listener {} listening on {}", listener->state().config.name,
                  discovery::to_string(listener->state().bound));
    }
    log::info("drover {} started: {} workers, {} listeners, {} clusters", DROVER_VERSION, workers_.size(),
              listeners_.size(), clusters_.size());
    notify_systemd("READY=1");
}

int Server::run() {
    control_.run();
    for (auto& worker : workers_) { worker->stop(); }
    for (auto& worker : workers_) { worker->join(); }
    log::info("drover stopped");
    return 0;
}

// POST /clusters/<cluster>/<host>/drain | undrain (cluster names may hold '/').
AdminResponse Server::drain_host(std::string_view path) {
    std::string_view rest = path.substr(std::string_view("/clusters/").size());
    const auto action_at = rest.rfind('/');
    const auto host_at = action_at == std::string_view::npos ? action_at : rest.rfind('/', action_at - 1);
    if (host_at == std::string_view::npos || host_at == 0) {
        return AdminResponse::text(404, "use POST /clusters/<cluster>/<host>/drain or .../undrain\n");
    }
    const auto action = rest.substr(action_at + 1);
    if (action != "drain" && action != "undrain") {
        return AdminResponse::text(404, fmt::format("unknown action '{}': use drain or undrain\n", action));
    }
    const auto cluster_name = rest.substr(0, host_at);
    const auto host = rest.substr(host_at + 1, action_at - host_at - 1);
    auto* cluster = find_cluster(cluster_name);
    if (cluster == nullptr) { return AdminResponse::text(404, fmt::format("no cluster {}\n", cluster_name)); }
    if (!cluster->set_draining(host, action == "drain")) {
        return AdminResponse::text(404, fmt::format("cluster {} has no host {}\n", cluster_name, host));
    }
    return AdminResponse::text(200, fmt::format("{} {} {}\n", cluster_name, host, action == "drain" ? "draining" : "undrained"));
}

namespace {

// Every setting of a cluster but its name and where it was written.
bool same_settings(const config::Cluster& a, const config::Cluster& b) {
    return a.discovery == b.discovery && a.load_balancing == b.load_balancing && a.hash == b.hash &&
           a.health_check == b.health_check && a.outlier_detection == b.outlier_detection &&
           a.panic_threshold == b.panic_threshold && a.panic_policy == b.panic_policy &&
           a.priority_overprovisioning == b.priority_overprovisioning && a.slow_start == b.slow_start &&
           a.hold_timeout == b.hold_timeout && a.retries == b.retries && a.timeouts == b.timeouts &&
           a.limits == b.limits && a.adaptive_concurrency == b.adaptive_concurrency && a.tls == b.tls &&
           a.max_clusters == b.max_clusters && a.idle_timeout == b.idle_timeout;
}

// Everything of a listener but its routes (republished on every reload anyway).
bool same_listener(const config::Listener& a, const config::Listener& b) {
    return a.name == b.name && a.address == b.address && a.protocol == b.protocol && a.tls == b.tls &&
           a.cluster == b.cluster && a.limits == b.limits && a.timeouts == b.timeouts;
}

// TLS a reload would run with: the current one when neither its settings nor its files changed (so
// pooled connections and sessions stay good), else one built from the files now.
template <class Current, class Settings, class Build>
std::shared_ptr<Current> reload_tls(const std::shared_ptr<Current>& current, const std::optional<Settings>& next,
                                    Build build) {
    if (!next) { return nullptr; }
    if (current && current->settings() == *next && !current->files_changed()) { return current; }
    return build();
}

}  // namespace

std::vector<std::string> Server::needs_restart(const config::Config& next) const {
    std::vector<std::string> out;
    // As the loader's errors read: where in the new file, what, and the values before and after.
    const auto restart = [&out, &next](const config::Mark& mark, std::string what) {
        const auto& file = mark.file.empty() ? next.source : mark.file;
        const auto where = mark.line > 0 ? fmt::format("{}:{}:{}", file, mark.line, mark.column) : file;
        out.push_back(fmt::format("{}: {}: that needs a restart (the running value stays)", where, what));
    };
    if (!(next.admin == config_.admin)) {
        restart(next.admin.mark,
                fmt::format("admin.address changed from {} to {}", config_.admin.address.str(), next.admin.address.str()));
    }
    // By the count it comes to: `auto` for as many as run now is no change.
    if (const auto workers = worker_count(next.workers); workers != workers_.size()) {
        restart(next.workers_mark, fmt::format("workers changed from {} to {}{}", workers_.size(), workers,
                                               next.workers == 0 ? " (auto: one per core)" : ""));
    }
    if (next.access_log != config_.access_log) {
        const auto path = [](const auto& log) { return log ? log->path : std::string("off"); };
        restart(next.access_log ? next.access_log->mark : config::Mark{},
                fmt::format("access_log changed from {} to {}", path(config_.access_log), path(next.access_log)));
    }
    std::map<std::string, const config::Cluster*> old_templates;
    for (const auto& c : config_.clusters) {
        if (c.is_template()) { old_templates[c.name] = &c; }
    }
    for (const auto& c : next.clusters) {
        if (!c.is_template()) { continue; }
        const auto it = old_templates.find(c.name);
        if (it == old_templates.end()) {
            restart(c.mark, fmt::format("cluster template {} added", c.name));
            continue;
        }
        if (!same_settings(*it->second, c)) { restart(c.mark, fmt::format("cluster template {} changed", c.name)); }
        old_templates.erase(it);
    }
    for (const auto& [name, c] : old_templates) { restart({}, fmt::format("cluster template {} removed", name)); }
    return out;
}

// Takes a configured cluster out: routes no longer point at it, workers forget it (requests in
// flight keep their snapshot), and it is destroyed once the handlers already queued for it have run.
void Server::retire_cluster(std::size_t index) {
    for (auto& worker : workers_) {
        worker->post([w = worker.get(), index] { w->remove_cluster(index); });
    }
    clusters_[index]->stop();
    asio::post(control_, [retired = std::shared_ptr<Cluster>(std::move(clusters_[index]))] {});
}

ReloadResult Server::reload(std::string_view why) {
    ReloadResult result;
    const auto fail = [&](std::vector<std::string> errors) {
        ++reload_counters_.failed;
        log::error("{}: reload refused, the running config stays ({} problem{}):", why, errors.size(),
                   errors.size() == 1 ? "" : "s");
        for (const auto& e : errors) { log::error("  {}", e); }
        result.errors = std::move(errors);
        return result;
    };
    if (stopping_) { return fail({"draining: a reload would be pointless"}); }
    if (config_.source.empty() || config_.source == "<demo>") {
        return fail({"the embedded demo config has no file to reload"});
    }
    auto loaded = config::load_file(config_.source, true);
    if (loaded.config) { loaded.errors = config::check_runnable(*loaded.config); }
    if (!loaded.errors.empty()) {
        std::vector<std::string> errors;
        for (const auto& e : loaded.errors) { errors.push_back(e.str()); }
        return fail(std::move(errors));
    }
    for (const auto& w : loaded.warnings) { log::warn("{}: config: {}", why, w.str()); }
    config::Config next = std::move(*loaded.config);
    if (auto restart = needs_restart(next); !restart.empty()) { return fail(std::move(restart)); }

    // TLS first, all of it, so that a bad certificate refuses the reload before anything changed.
    std::vector<std::string> tls_errors;
    std::map<std::string, std::shared_ptr<const health::TlsClient>> cluster_tls;
    for (std::size_t i = 0; i < next.clusters.size(); ++i) {
        const auto& c = next.clusters[i];
        std::shared_ptr<const health::TlsClient> current;
        if (const auto it = cluster_slots_.find(c.name); it != cluster_slots_.end()) { current = clusters_[it->second]->tls(); }
        if (const auto it = template_slots_.find(c.name); it != template_slots_.end()) { current = templates_[it->second].tls; }
        cluster_tls[c.name] = reload_tls(current, c.tls, [&]() -> std::shared_ptr<const health::TlsClient> {
            auto built = health::TlsClient::build(*c.tls);
            if (!built.client) {
                tls_errors.push_back(config::ConfigError{c.tls->mark, fmt::format("clusters[{}].tls", i), built.error}.str());
            }
            return built.client;
        });
    }
    // Listeners by address (and protocol): a match keeps its sockets, anything else is bound anew.
    // Same name first; then the address alone (a renamed listener), except for port 0, which names no
    // particular socket.
    std::vector<std::unique_ptr<Listener>*> matched(next.listeners.size(), nullptr);
    std::vector<bool> taken(listeners_.size(), false);
    for (const bool by_name : {true, false}) {
        for (std::size_t i = 0; i < next.listeners.size(); ++i) {
            const auto& l = next.listeners[i];
            for (std::size_t j = 0; j < listeners_.size() && matched[i] == nullptr; ++j) {
                const auto& old = listeners_[j]->state().config;
                if (taken[j] || old.address != l.address || old.protocol != l.protocol) { continue; }
                if (by_name ? old.name != l.name : l.address.port == 0) { continue; }
                taken[j] = true;
                matched[i] = &listeners_[j];
            }
        }
    }
    std::vector<std::shared_ptr<const TlsServer>> listener_tls;
    for (std::size_t i = 0; i < next.listeners.size(); ++i) {
        const auto& l = next.listeners[i];
        const auto current = matched[i] != nullptr ? (*matched[i])->state().tls : nullptr;
        listener_tls.push_back(reload_tls(current, l.tls, [&]() -> std::shared_ptr<const TlsServer> {
            auto built = TlsServer::build(*l.tls, fmt::format("listeners[{}].tls", i), l.protocol == config::Protocol::http);
            for (const auto& e : built.errors) { tls_errors.push_back(e.str()); }
            for (const auto& w : built.warnings) { log::warn("{}: config: {}", why, w.str()); }
            return built.server;
        }));
    }
    if (!tls_errors.empty()) { return fail(std::move(tls_errors)); }
    // New listeners are bound before anything changes: a port in use refuses the reload as a whole.
    // A listener the reload before removed may still be closing on its workers (a reload right after
    // it may want its port back): a moment is waited for that.
    wait_for_closing_acceptors(kClosingAcceptorsWait);
    std::vector<std::unique_ptr<Listener>> fresh(next.listeners.size());
    {
        std::vector<Worker*> workers;
        for (auto& w : workers_) { workers.push_back(w.get()); }
        std::vector<std::string> bind_errors;
        for (std::size_t i = 0; i < next.listeners.size(); ++i) {
            if (matched[i] != nullptr) { continue; }
            fresh[i] = make_listener(next.listeners[i], listener_tls[i]);
            try {
                // A listener this reload leaves may still hold the port (another name or protocol, or
                // 127.0.0.1:P becoming 0.0.0.0:P): the two overlap until it closes.
                // Only such an overlap skips the probe for another owner: a listener of ours on
                // 127.0.0.2:P says nothing about who holds 127.0.0.1:P.
                const auto wanted = asio::ip::make_address(next.listeners[i].address.host);
                const bool held = std::any_of(listeners_.begin(), listeners_.end(), [&](const auto& old) {
                    const auto& bound = old->state().bound;   // port 0: the one it got
                    const auto has = bound.address();
                    return bound.port() == next.listeners[i].address.port && has.is_v6() == wanted.is_v6() &&
                           (has == wanted || has.is_unspecified() || wanted.is_unspecified());
                });
                fresh[i]->bind(workers, !held);
            } catch (const std::exception& e) {
                bind_errors.push_back(bind_error(next.listeners[i], i, e));
            }
        }
        if (!bind_errors.empty()) { return fail(std::move(bind_errors)); }
    }
    std::size_t tls_reloaded = 0;
    for (auto& t : templates_) {
        const auto& tls = cluster_tls[t.config.name];
        if (tls == t.tls) { continue; }
        t.tls = tls;
        ++tls_reloaded;
        for (const auto& [host, index] : t.instances) { clusters_[index]->reconfigure(clusters_[index]->config(), tls); }
    }

    // Clusters by name keep their Cluster (hosts, health, drains, pools, counters) with the new
    // settings, new discovery and balancing included (Cluster::reconfigure).
    std::size_t updated = 0;
    std::size_t replaced = 0;   // same name, a new discovery source (a new resolver; the hosts serve meanwhile)
    std::size_t added = 0;
    std::size_t removed = 0;
    std::map<std::string, std::size_t, std::less<>> next_slots;
    for (const auto& c : next.clusters) {
        if (c.is_template()) { continue; }
        const auto it = cluster_slots_.find(c.name);
        if (it != cluster_slots_.end()) {
            auto& cluster = *clusters_[it->second];
            const auto& tls = cluster_tls[c.name];
            if (tls != cluster.tls()) { ++tls_reloaded; }
            if (!same_settings(cluster.config(), c) || tls != cluster.tls()) { ++(cluster.reconfigure(c, tls) ? replaced : updated); }
            next_slots[c.name] = it->second;
            continue;
        }
        const std::size_t index = add_cluster(c, cluster_tls[c.name]);
        for (auto& worker : workers_) {
            worker->post([w = worker.get(), index, snapshot = clusters_[index]->snapshot()] {
                w->install_cluster(index, snapshot);
            });
        }
        clusters_[index]->start();
        next_slots[c.name] = index;
        ++added;
    }
    const auto previous_slots = std::exchange(cluster_slots_, std::move(next_slots));
    // Listeners: kept ones get a new generation if anything of theirs changed, new ones start, and the
    // ones no longer configured stop accepting (their connections finish on the settings they had).
    std::size_t listeners_updated = 0;
    std::size_t listeners_added = 0;
    std::vector<std::unique_ptr<Listener>> next_listeners;
    for (std::size_t i = 0; i < next.listeners.size(); ++i) {
        const auto& l = next.listeners[i];
        if (matched[i] != nullptr) {
            auto& listener = **matched[i];
            if (!same_listener(listener.state().config, l) || listener.state().tls != listener_tls[i]) {
                if (listener.state().tls != listener_tls[i]) { ++tls_reloaded; }
                listener.update(l, listener_tls[i]);
                ++listeners_updated;
            }
            next_listeners.push_back(std::move(*matched[i]));
        } else {
            next_listeners.push_back(std::move(fresh[i]));
            ++listeners_added;
        }
        publish_routes(next_listeners.back()->state().index, l);
        if (matched[i] == nullptr) {
            next_listeners.back()->start();
            log::info("listener {} listening on {}", l.name, discovery::to_string(next_listeners.back()->state().bound));
        }
    }
    // Before the listeners below close: their idle connections get the new shutdown.idle_grace.
    for (auto& worker : workers_) {
        worker->post([w = worker.get(), grace = next.shutdown.idle_grace] { w->set_idle_grace(grace); });
    }
    std::size_t listeners_removed = 0;
    for (auto& old : listeners_) {
        if (!old) { continue; }   // moved into next_listeners
        log::info("listener {} on {} closed: no longer configured", old->state().config.name,
                  discovery::to_string(old->state().bound));
        old->close();   // its accept loops end on their workers, which keep what they use alive
        old.reset();
        ++listeners_removed;
    }
    listeners_ = std::move(next_listeners);
    // After the routes moved away from them: clusters no longer configured, or replaced.
    for (const auto& [name, index] : previous_slots) {
        const auto it = cluster_slots_.find(name);
        if (it != cluster_slots_.end() && it->second == index) { continue; }
        retire_cluster(index);
        if (it == cluster_slots_.end()) { ++removed; }
    }
    log::set_level(next.log.level);
    next.source = config_.source;
    config_ = std::move(next);
    ++reload_counters_.succeeded;
    reload_counters_.last_success = std::chrono::system_clock::now();
    result.ok = true;
    result.summary = fmt::format("clusters: {} updated, {} replaced, {} added, {} removed; listeners: {} updated, {} "
                                 "added, {} removed, routes of {} republished; TLS reloaded for {}",
                                 updated, replaced, added, removed, listeners_updated, listeners_added, listeners_removed,
                                 listeners_.size(), tls_reloaded);
    log::info("{}: config reloaded from {}: {}", why, config_.source, result.summary);
    return result;
}

void Server::wait_for_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
        if (ec) { return; }
        if (signal == SIGHUP) {
            reload("SIGHUP");
        } else if (signal == SIGUSR1) {
            reopen_logs();
        } else if (signal == SIGUSR2) {
            log::info("SIGUSR2: ignored (it has no meaning for Drover)");
        } else {
            drain(signal == SIGTERM ? "SIGTERM" : "SIGINT");
        }
        wait_for_signal();
    });
}

// SIGUSR1: after a log rotation (logrotate without copytruncate) moved the access log away, lines go
// to a new file at the configured path.
void Server::reopen_logs() {
    if (!access_log_ || config_.access_log->path == "stderr") {
        log::info("SIGUSR1: no access log file to reopen");
        return;
    }
    if (auto why = access_log_->reopen(); !why.empty()) {
        log::error("SIGUSR1: cannot reopen access log {}: {}; writing on to the old file", config_.access_log->path, why);
        return;
    }
    log::info("SIGUSR1: access log {} reopened", config_.access_log->path);
}

void Server::drain(std::string reason) {
    if (stopping_ && !draining_) {
        log::info("{} during shutdown.delay: draining now", reason);
        begin_drain(std::move(reason));
        return;
    }
    if (draining_) {
        if (!aborting_) {
            log::warn("{} during drain: closing {} connections now", reason, live_sessions());
            aborting_ = true;
            for (auto& worker : workers_) {
                worker->post([w = worker.get()] { w->abort_sessions(); });
            }
        }
        return;
    }
    stopping_ = true;
    notify_systemd("STOPPING=1");
    if (config_.shutdown.delay.count() > 0) {
        // Not ready from now, serving as usual: load balancers that poll /ready stop sending first.
        log::info("{}: /ready answers 503; listeners close in {} ms (shutdown.delay), then live connections have {} ms",
                  reason, config_.shutdown.delay.count(), config_.shutdown.drain_timeout.count());
        spawn(control_.get_executor(), delayed_drain(std::move(reason)), "shutdown delay");
        return;
    }
    begin_drain(std::move(reason));
}

asio::awaitable<void> Server::delayed_drain(std::string reason) {
    asio::steady_timer timer(control_, config_.shutdown.delay);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!draining_) { begin_drain(std::move(reason)); }   // else a second signal began it already
}

void Server::begin_drain(std::string reason) {
    draining_ = true;
    log::info("{}: draining: listeners closed, {} connections may finish within {} ms", reason, live_sessions(),
              config_.shutdown.drain_timeout.count());
    for (auto& listener : listeners_) { listener->close(); }
    // Keep-alive connections answer their current request with Connection: close, then end.
    for (auto& worker : workers_) {
        worker->post([w = worker.get()] {
            w->set_draining();
            w->pool().clear();
        });
    }
    spawn(control_.get_executor(), finish_drain(), "drain");
}

asio::awaitable<void> Server::finish_drain() {
    asio::steady_timer timer(control_);
    const auto deadline = std::chrono::steady_clock::now() + config_.shutdown.drain_timeout;
    while (live_sessions() > 0 && std::chrono::steady_clock::now() < deadline && !aborting_) {
        timer.expires_after(kDrainPoll);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (live_sessions() > 0) {
        if (!aborting_) {
            log::warn("drain timeout: closing {} remaining connections", live_sessions());
            aborting_ = true;
            for (auto& worker : workers_) {
                worker->post([w = worker.get()] { w->abort_sessions(); });
            }
        }
        const auto grace = std::chrono::steady_clock::now() + kAbortGrace;
        while (live_sessions() > 0 && std::chrono::steady_clock::now() < grace) {
            timer.expires_after(kDrainPoll);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
    }
    for (auto& cluster : clusters_) {
        if (cluster) { cluster->stop(); }
    }
    admin_->stop();
    signals_.cancel();
    control_.stop();
}

std::size_t Server::live_sessions() const {
    std::size_t total = 0;
    for (const auto& worker : workers_) { total += worker->session_count(); }
    return total;
}

}  // namespace drover::proxy
