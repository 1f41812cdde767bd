#pragma once
// One event-loop thread of the data path. A connection lives and dies on one worker; everything here
// is touched only from this worker's thread except the counters, which the control loop reads
// (relaxed atomics with a single writer: no lock, no contended cache line on the request path).

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <random>
#include <string_view>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "health/concurrency_limiter.hpp"
#include "health/retry_budget.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/cluster.hpp"
#include "proxy/deadline_queue.hpp"
#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/rng.hpp"
#include "proxy/pipe.hpp"
#include "proxy/router.hpp"
#include "proxy/upstream_pool.hpp"

namespace drover::proxy {

struct ListenerShared;   // proxy/listener.hpp

// Adds to a counter only this thread writes: a plain load+store, no locked instruction.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Why Drover answered an HTTP request itself; the drover-error header carries the name.
enum class LocalReason : std::size_t {
    bad_request, no_route, request_header_timeout, body_too_large, uri_too_long, headers_too_large,
    upstream_connect_failed, bad_upstream_response, no_healthy_host, upstream_timeout, shed, not_implemented,
    request_body_timeout, too_many_services,
    count
};
std::string_view local_reason_name(LocalReason reason);

// Request duration histogram bounds (seconds), Prometheus-style cumulative at render time.
inline constexpr std::array<double, 13> kDurationBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                            0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

// Takes from a gauge only this thread writes (see bump).
inline void drop(std::atomic<std::uint64_t>& gauge, std::uint64_t n = 1) {
    gauge.store(gauge.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

struct ListenerCounters {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> connections_idle{0};   // a gauge: HTTP connections parked between requests
    std::atomic<std::uint64_t> rejected_max_connections{0};
    std::atomic<std::uint64_t> rejected_fd_limit{0};   // the process neared its descriptor limit
    std::atomic<std::uint64_t> rejected_memory{0};     // the process was past process.max_memory
    std::atomic<std::uint64_t> bytes_received{0};   // from clients
    std::atomic<std::uint64_t> bytes_sent{0};       // to clients
    // TLS listeners only.
    std::atomic<std::uint64_t> tls_handshakes{0};          // completed
    std::atomic<std::uint64_t> tls_resumed{0};             // of those, resuming a session
    std::atomic<std::uint64_t> tls_handshake_failures{0};
    // HTTP listeners only.
    std::array<std::atomic<std::uint64_t>, 5> requests_by_class{};   // 1xx..5xx, as sent to the client
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(LocalReason::count)> local_responses{};
    std::array<std::atomic<std::uint64_t>, kDurationBuckets.size() + 1> duration_buckets{};   // last: +Inf
    std::atomic<std::uint64_t> duration_sum_micros{0};
};

// A live client connection, registered so a drain can close what is left at its deadline.
class Session : public boost::intrusive::list_base_hook<> {
public:
    virtual ~Session() = default;
    virtual void abort() = 0;
    // The drain began: a connection idle between requests closes now; busy ones finish their work.
    virtual void on_drain() {}
    // A reload removed the listener `closed` (ListenerState::shared): its connections do as on_drain.
    virtual void on_listener_closed(const ListenerShared* closed) { (void)closed; }
    // A spare session (Worker::spare_sessions, waiting for its next connection) is not needed any
    // more: it ends its suspended coroutine, which owns it.
    virtual void discard() {}
};

// What a worker holds per cluster: the snapshot last published to it and its own balancer state.
struct WorkerCluster {
    std::shared_ptr<const ClusterSnapshot> snapshot;
    std::unique_ptr<LoadBalancer> balancer;
    // This worker's share of the cluster's retry budget; shared so a request keeps the one it started
    // with when a reload replaces it.
    std::shared_ptr<health::RetryBudget> budget;
    // adaptive_concurrency: this worker's limiter (null when off) and the limit it last published.
    std::shared_ptr<health::ConcurrencyLimiter> limiter;
    std::uint32_t published_limit = 0;
    // Requests of this worker waiting for an admission slot (limits.max_requests, a host under its
    // max_requests_per_host), oldest first; a request that ends here wakes the oldest.
    std::deque<std::weak_ptr<boost::asio::steady_timer>> slot_waiters;
    // Smoothed upstream latency of this worker's requests (for the shed answer's Retry-After).
    double latency_ewma_seconds = 0.0;
    // A reload removed the cluster: requests held for one of its hosts stop waiting (no snapshot comes).
    bool retired = false;

    void wake_one_slot_waiter() {
        while (!slot_waiters.empty()) {
            auto timer = slot_waiters.front().lock();
            slot_waiters.pop_front();
            if (timer) {
                timer->cancel();
                return;
            }
        }
    }
};

class Worker {
public:
    explicit Worker(std::size_t index);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    std::size_t index() const { return index_; }
    boost::asio::io_context& context() { return context_; }

    void start();   // runs the loop on a new thread
    void stop();    // ends the loop; pending work is dropped (call after draining); any thread
    void join();
    // Runs `task` on this worker's thread, in the order posted. The one way for another thread to
    // reach the worker: its io_context does no locking (see context_).
    void post(std::function<void()> task);

    // --- worker thread only (or before start) ---
    void add_cluster(std::shared_ptr<const ClusterSnapshot> snapshot);
    // A cluster added (or replaced) by a reload goes in slot `index`; a removed one is forgotten (its
    // in-flight requests keep their snapshot; the slot is never reused).
    void install_cluster(std::size_t index, std::shared_ptr<const ClusterSnapshot> snapshot);
    void remove_cluster(std::size_t index);
    // Where listener `listener` sends requests: its routes (http) or its cluster (tcp). Replaced as a
    // whole by a reload; a request reads them once, when it is routed.
    void set_routes(std::size_t listener, std::shared_ptr<const Router> router, std::size_t cluster);
    const Router& router(std::size_t listener) const { return *routers_[listener]; }
    std::size_t listener_cluster(std::size_t listener) const { return listener_clusters_[listener]; }
    void set_snapshot(std::size_t cluster, std::shared_ptr<const ClusterSnapshot> snapshot);
    WorkerCluster& cluster(std::size_t index) { return clusters_[index]; }

    // Clusters made on first use from a route's template, keyed "template/host". install_dynamic puts
    // one in slot `index` (its first snapshot may still have no hosts); its first published snapshot
    // wakes the requests waiting for it. remove_dynamic forgets it (in-flight requests keep theirs).
    std::optional<std::size_t> find_dynamic(const std::string& key) const;
    void install_dynamic(std::size_t index, const std::string& key, std::shared_ptr<const ClusterSnapshot> snapshot);
    void remove_dynamic(std::size_t index, const std::string& key);
    // Waits until `key` has a published snapshot, or `timeout`.
    boost::asio::awaitable<void> wait_dynamic(const std::string& key, std::chrono::milliseconds timeout);
    // Waits until cluster `index` gets a new snapshot, or `timeout` (requests held while no host is up).
    boost::asio::awaitable<void> wait_snapshot(std::size_t index, std::chrono::milliseconds timeout);
    // The same for handler-based sessions: calls `done` then.
    void wait_snapshot(std::size_t index, std::chrono::milliseconds timeout, std::function<void()> done);
    // Set by the server: asks the control loop to make cluster `key` from template `index`.
    std::function<void(std::size_t template_index, std::string host)> request_dynamic;
    std::function<bool(std::size_t template_index)> dynamic_full;   // at the template's max_clusters
    // Set by the server: asks every other worker to close one idle pooled connection counted in
    // `budget` (a request here waits for room under limits.max_connections).
    std::function<void(std::shared_ptr<ConnectionBudget> budget)> close_idle_elsewhere;
    // A closed socket on this worker's context, moved from a prototype: constructing one looks its
    // service up under the service registry's lock each time (benchmarks/profile/
    // http_keepalive_callgrind.py --case tcp-conn). A moved-from socket is as if newly constructed.
    boost::asio::ip::tcp::socket new_socket() { return boost::asio::ip::tcp::socket(std::move(socket_prototype_)); }
    BufferPool& buffers() { return buffers_; }
    PipePool& pipes() { return pipes_; }
    UpstreamPool& pool() { return pool_; }
    DeadlineQueue& deadlines() { return deadlines_; }
    // HTTP sessions between connections' turns, suspended and kept for reuse (proxy/http_session.cpp);
    // at most kSpareSessions, a few KiB each. Not registered as live sessions.
    static constexpr std::size_t kSpareSessions = 64;
    std::vector<Session*>& spare_sessions() { return spare_sessions_; }
    Rng& random() { return random_; }
    bool draining() const { return draining_; }
    // shutdown.idle_grace: how long a connection idle between requests is kept once a drain starts or
    // its listener is removed (a request that comes meanwhile is answered, with Connection: close).
    std::chrono::milliseconds idle_grace() const { return idle_grace_; }
    void set_idle_grace(std::chrono::milliseconds grace) { idle_grace_ = grace; }
    void set_draining() {
        draining_ = true;
        // on_drain() may end a session (a parked connection): step past it first.
        for (auto it = sessions_.begin(); it != sessions_.end();) { (it++)->on_drain(); }
    }
    // A reload removed a listener: its sessions on this worker hear of it (Session::on_listener_closed).
    void close_listener(const ListenerShared* closed) {
        for (auto it = sessions_.begin(); it != sessions_.end();) { (it++)->on_listener_closed(closed); }
    }
    void add_session(Session* session);
    void remove_session(Session* session);
    void abort_sessions();

    // --- any thread ---
    std::size_t session_count() const { return session_count_.load(std::memory_order_relaxed); }

private:
    std::size_t index_;
    // Before the context: sessions still in its handlers when it is destroyed unregister from these.
    boost::intrusive::list<Session> sessions_;
    std::atomic<std::size_t> session_count_{0};
    // One thread runs it and only that thread operates its sockets and posts to it, so Asio takes no
    // lock per operation (scheduler and per-socket locking off): other threads reach the worker by
    // post() (below). Only descriptor and timer registration still lock: listeners open their
    // acceptors on the control thread. 13 lock/unlock pairs less per relayed TCP connection, 7% of
    // its instructions (benchmarks/profile/http_keepalive_callgrind.py --case tcp-conn).
    boost::asio::io_context context_{
        static_cast<int>(BOOST_ASIO_CONCURRENCY_HINT_ID | BOOST_ASIO_CONCURRENCY_HINT_LOCKING_REACTOR_REGISTRATION)};
    // post()'s mailbox: tasks under a mutex and an eventfd the worker waits on (also what keeps its
    // loop running while it has nothing else to do).
    void wait_inbox();
    void run_inbox();
    std::mutex inbox_mutex_;
    std::vector<std::function<void()>> inbox_;
    std::vector<std::function<void()>> inbox_running_;   // worker thread only
    boost::asio::posix::stream_descriptor inbox_event_;
    // Never opened (see new_socket). Constructing it here also creates the context's socket service
    // before the loop runs: created later from the control thread (a listener added by a reload), its
    // start-up would touch the unlocked scheduler.
    boost::asio::ip::tcp::socket socket_prototype_{context_};
    std::thread thread_;
    // A deque: sessions hold WorkerCluster& across suspensions while dynamic clusters are added.
    std::deque<WorkerCluster> clusters_;
    std::unordered_map<std::string, std::size_t> dynamic_;
    std::unordered_map<std::size_t, std::string> dynamic_keys_;   // slot -> key, to wake waiters
    std::unordered_multimap<std::string, std::weak_ptr<boost::asio::steady_timer>> dynamic_waiters_;
    std::unordered_multimap<std::size_t, std::weak_ptr<boost::asio::steady_timer>> snapshot_waiters_;
    std::vector<std::shared_ptr<const Router>> routers_;
    std::vector<std::size_t> listener_clusters_;
    BufferPool buffers_;
    PipePool pipes_;
    UpstreamPool pool_{context_};
    Rng random_{random_seed()};
    DeadlineQueue deadlines_{context_};
    std::vector<Session*> spare_sessions_;   // each owned by its own suspended coroutine
    bool draining_ = false;
    std::chrono::milliseconds idle_grace_{1000};
};

}  // namespace drover::proxy
