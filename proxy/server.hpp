#pragma once
// The running proxy: one control loop (this thread: config, discovery, admin, signals, drain) and N
// workers (data path). Owns clusters (control side), listeners and workers.
//
// Shutdown has two phases: stop accepting and let connections finish within shutdown.drain_timeout,
// then close what is left. /ready answers 503 from the first moment of the drain.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admin.hpp"
#include "proxy/cluster.hpp"
#include "proxy/listener.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

// What a reload did, or why it did nothing.
struct ReloadResult {
    bool ok = false;
    std::vector<std::string> errors;   // file:line messages, or what would need a restart
    std::string summary;               // "2 clusters updated, 1 added, 0 removed; routes of 1 listener"
};

class Server {
public:
    explicit Server(config::Config config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the admin endpoint and every listener, starts discovery and the workers. Throws
    // std::system_error with what failed (nothing is left half-started: the caller exits).
    void start();
    // Runs the control loop until the drain finishes. Returns the process exit code.
    int run();
    // Starts the drain (control loop). A second call while draining closes everything at once.
    void drain(std::string reason);
    void begin_drain(std::string reason);   // the drain proper: listeners closed, connections finishing
    boost::asio::awaitable<void> delayed_drain(std::string reason);   // after shutdown.delay
    // Reads the config file again and applies what changed without dropping a request: routes, cluster
    // settings (hosts keep their health and counters), clusters added or removed, log level, drain
    // timeout, memory mark. On any error, or a change that needs a restart (listeners, admin, workers,
    // templates, access log), the running config stays. Control loop.
    ReloadResult reload(std::string_view why);
    struct ReloadCounters {
        std::uint64_t succeeded = 0;
        std::uint64_t failed = 0;
        std::optional<std::chrono::system_clock::time_point> last_success;
    };
    const ReloadCounters& reload_counters() const { return reload_counters_; }

    boost::asio::io_context& control() { return control_; }
    Admin& admin() { return *admin_; }

    // Read by the status views on the control loop.
    const config::Config& config() const { return config_; }
    const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
    // Every live cluster: configured ones and those made from templates (control loop only).
    std::vector<const Cluster*> clusters() const;
    Cluster* find_cluster(std::string_view name);
    const std::vector<std::unique_ptr<Listener>>& listeners() const { return listeners_; }
    bool ready() const { return started_ && !stopping_; }
    // From the drain's start, shutdown.delay included (drover_draining, /ready 503).
    bool draining() const { return stopping_; }
    std::chrono::system_clock::time_point start_time() const { return start_time_; }

private:
    void reopen_logs();
    void wait_for_signal();
    AdminResponse drain_host(std::string_view path);
    boost::asio::awaitable<void> finish_drain();
    std::size_t live_sessions() const;
    std::size_t add_cluster(const config::Cluster& config, std::shared_ptr<const health::TlsClient> tls);
    // A listener in a new slot (index), not bound yet.
    std::unique_ptr<Listener> make_listener(const config::Listener& config, std::shared_ptr<const TlsServer> tls);
    void publish_routes(std::size_t index, const config::Listener& listener);
    void retire_cluster(std::size_t index);
    std::vector<std::string> needs_restart(const config::Config& next) const;
    void ensure_dynamic(std::size_t template_index, const std::string& host);
    boost::asio::awaitable<void> sweep_dynamic();
    boost::asio::awaitable<void> watch_memory();

    // A route's cluster_template and the clusters made from it, by Host.
    struct Template {
        config::Cluster config;
        std::map<std::string, std::size_t> instances;
        std::shared_ptr<std::atomic<std::size_t>> count;   // instances.size(), readable by workers
        std::shared_ptr<const health::TlsClient> tls;        // what its instances connect with
    };

    config::Config config_;
    std::chrono::system_clock::time_point start_time_ = std::chrono::system_clock::now();
    boost::asio::io_context control_{1};
    boost::asio::signal_set signals_;
    std::unique_ptr<AccessLog> access_log_;   // outlives the workers that write to it
    // Declared before listeners_: acceptors must die before the io_contexts they are registered with.
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::unique_ptr<Cluster>> clusters_;   // a dropped dynamic cluster leaves a null slot
    // Configured clusters and templates by name: the slots routes point at.
    std::map<std::string, std::size_t, std::less<>> cluster_slots_;
    std::map<std::string, std::size_t, std::less<>> template_slots_;
    ReloadCounters reload_counters_;
    std::vector<std::size_t> free_slots_;
    std::vector<Template> templates_;
    std::vector<std::unique_ptr<Listener>> listeners_;   // in config order
    std::size_t next_listener_index_ = 0;   // listener slots are never reused
    std::unique_ptr<Admin> admin_;
    bool started_ = false;
    bool stopping_ = false;   // a drain was asked for (it may still be in its shutdown.delay)
    bool draining_ = false;   // the listeners are closed, live connections finishing
    bool aborting_ = false;
    bool templates_sweeping_ = false;
};

}  // namespace drover::proxy
