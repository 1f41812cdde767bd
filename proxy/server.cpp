#include "proxy/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <csignal>
#include <thread>

#include "config/log.hpp"
#include "discovery/endpoint.hpp"
#include "proxy/spawn.hpp"
#include "proxy/status.hpp"

namespace drover::proxy {

namespace asio = boost::asio;

namespace {
// How often the drain looks at the live-connection count; short enough that an idle drain exits fast.
constexpr auto kDrainPoll = std::chrono::milliseconds(20);
// After the drain deadline closes every session, how long to wait for their coroutines to unwind.
constexpr auto kAbortGrace = std::chrono::seconds(2);

std::size_t index_of(const config::Config& config, std::string_view cluster) {
    for (std::size_t i = 0; i < config.clusters.size(); ++i) {
        if (config.clusters[i].name == cluster) { return i; }
    }
    throw std::invalid_argument("unknown cluster " + std::string(cluster));   // the loader prevents this
}
}  // namespace

Server::Server(config::Config config) : config_(std::move(config)), signals_(control_) {
    log::set_level(config_.log.level);
    if (config_.access_log) { access_log_ = std::make_unique<AccessLog>(config_.access_log->path); }
    const std::size_t worker_count =
        config_.workers != 0 ? config_.workers : std::max(1u, std::thread::hardware_concurrency());
    for (std::size_t i = 0; i < worker_count; ++i) {
        workers_.push_back(std::make_unique<Worker>(i, config_.listeners.size()));
    }
    for (const auto& cluster_config : config_.clusters) {
        const std::size_t index = clusters_.size();
        auto publish = [this, index](std::shared_ptr<const ClusterSnapshot> snapshot) {
            for (auto& worker : workers_) {
                asio::post(worker->context(), [w = worker.get(), index, snapshot] { w->set_snapshot(index, snapshot); });
            }
        };
        clusters_.push_back(
            std::make_unique<Cluster>(cluster_config, make_resolver(cluster_config, control_), std::move(publish)));
        for (auto& worker : workers_) { worker->add_cluster(clusters_.back()->snapshot()); }
    }
    for (std::size_t i = 0; i < config_.listeners.size(); ++i) {
        const auto& listener_config = config_.listeners[i];
        std::size_t cluster = 0;
        std::shared_ptr<Router> router;
        if (listener_config.protocol == config::Protocol::tcp) {
            cluster = index_of(config_, listener_config.cluster);
        } else {
            router = std::make_shared<Router>();
            for (const auto& route : listener_config.routes) { router->add(route.match, index_of(config_, route.cluster)); }
        }
        listeners_.push_back(std::make_unique<Listener>(listener_config, i, cluster, std::move(router)));
        listeners_.back()->state().access_log = access_log_.get();
    }
    admin_ = std::make_unique<Admin>(control_, config_.admin.address);
    register_status_routes(*admin_, *this);
}

Server::~Server() {
    for (auto& worker : workers_) { worker->stop(); }
    for (auto& worker : workers_) { worker->join(); }
}

void Server::start() {
    try {
        admin_->start();
    } catch (const std::system_error& e) {
        throw std::system_error(e.code(), "admin: cannot listen on " + config_.admin.address.str());
    }
    std::vector<Worker*> workers;
    for (auto& w : workers_) { workers.push_back(w.get()); }
    for (auto& listener : listeners_) {
        try {
            listener->bind(workers);
        } catch (const std::system_error& e) {
            throw std::system_error(e.code(), "listener " + listener->state().config.name +
                                                  ": cannot listen on " + listener->state().config.address.str());
        }
    }
    // Discovery first, so each worker applies the first snapshots before its first accept.
    for (auto& cluster : clusters_) { cluster->start(); }
    for (auto& listener : listeners_) { listener->start(); }
    std::signal(SIGPIPE, SIG_IGN);
    signals_.add(SIGTERM);
    signals_.add(SIGINT);
    signals_.add(SIGHUP);
    wait_for_signal();
    for (auto& worker : workers_) { worker->start(); }
    started_ = true;

    log::info("admin listening on {}", discovery::to_string(admin_->local_endpoint()));
    for (const auto& listener : listeners_) {
        log::info("listener {} listening on {}", listener->state().config.name,
                  discovery::to_string(listener->state().bound));
    }
    log::info("drover {} started: {} workers, {} listeners, {} clusters", DROVER_VERSION, workers_.size(),
              listeners_.size(), clusters_.size());
}

int Server::run() {
    control_.run();
    for (auto& worker : workers_) { worker->stop(); }
    for (auto& worker : workers_) { worker->join(); }
    log::info("drover stopped");
    return 0;
}

void Server::wait_for_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
        if (ec) { return; }
        if (signal == SIGHUP) {
            log::warn("SIGHUP: configuration reload is not supported yet; keeping the running config");
        } else {
            drain(signal == SIGTERM ? "SIGTERM" : "SIGINT");
        }
        wait_for_signal();
    });
}

void Server::drain(std::string reason) {
    if (draining_) {
        if (!aborting_) {
            log::warn("{} during drain: closing {} connections now", reason, live_sessions());
            aborting_ = true;
            for (auto& worker : workers_) {
                asio::post(worker->context(), [w = worker.get()] { w->abort_sessions(); });
            }
        }
        return;
    }
    draining_ = true;
    log::info("{}: draining: listeners closed, {} connections may finish within {} ms", reason, live_sessions(),
              config_.shutdown.drain_timeout.count());
    for (auto& listener : listeners_) { listener->close(); }
    // Keep-alive connections answer their current request with Connection: close, then end.
    for (auto& worker : workers_) {
        asio::post(worker->context(), [w = worker.get()] {
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
                asio::post(worker->context(), [w = worker.get()] { w->abort_sessions(); });
            }
        }
        const auto grace = std::chrono::steady_clock::now() + kAbortGrace;
        while (live_sessions() > 0 && std::chrono::steady_clock::now() < grace) {
            timer.expires_after(kDrainPoll);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
    }
    for (auto& cluster : clusters_) { cluster->stop(); }
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
