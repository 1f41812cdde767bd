#include "proxy/tcp_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

#include <openssl/ssl.h>

#include "config/log.hpp"
#include "health/tls_client.hpp"
#include "proxy/listener.hpp"
#include "proxy/relay.hpp"
#include "proxy/socket_options.hpp"
#include "proxy/stream.hpp"
#include "proxy/tls_server.hpp"
#include "proxy/load_balancer/hash.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class TcpSession final : public Session {
public:
    TcpSession(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client)
        : worker_(worker),
          listener_(std::move(listener)),
          counters_(listener_->counters(worker.index())),
          client_(std::move(client)),
          upstream_(worker.context()) {
        worker_.add_session(this);
    }

    ~TcpSession() override {
        if (host_) {
            host_->stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
            host_->stats().requests_active.fetch_sub(1, std::memory_order_relaxed);
        }
        if (stats_) { stats_->upstream_connections_active.fetch_sub(1, std::memory_order_relaxed); }
        worker_.remove_session(this);
        listener_->connections_active().fetch_sub(1, std::memory_order_relaxed);
    }

    TcpSession(const TcpSession&) = delete;
    TcpSession& operator=(const TcpSession&) = delete;

    void abort() override {
        aborted_ = true;
        close_both();
    }

    // Connects (TLS included), then relays. `self` is this session: a plain relay keeps it alive from
    // its handlers once this coroutine has ended.
    asio::awaitable<void> run(std::shared_ptr<TcpSession> self) {
        if (auto tls = listener_->tls) {
            if (!co_await client_handshake(std::move(tls))) { co_return; }
        }
        const std::size_t cluster_index = worker_.listener_cluster(listener_->index);
        auto& cluster = worker_.cluster(cluster_index);
        // Hold the snapshot for the whole connection: the host stays valid even if discovery drops it.
        auto snapshot = cluster.snapshot;
        // Held for the whole connection: `snapshot` is re-read while holding, and a reload may give the
        // new one a new config.
        const std::shared_ptr<const config::Cluster> config_holder = snapshot->config;
        auto* stats = snapshot->stats.get();
        const auto& config = *config_holder;

        if (stats->upstream_connections_active.fetch_add(1, std::memory_order_relaxed) >=
            static_cast<std::int64_t>(config.limits.max_connections)) {
            stats->upstream_connections_active.fetch_sub(1, std::memory_order_relaxed);
            stats->unavailable_max_connections.fetch_add(1, std::memory_order_relaxed);
            log::debug("listener {}: cluster {} at max_connections, closing client", listener_->config.name,
                       config.name);
            co_return;
        }
        stats_ = snapshot->stats;   // counted: the destructor gives the slot back

        // While no host takes the connection, wait (up to hold_timeout) for the cluster to change.
        const auto hold_deadline = std::chrono::steady_clock::now() + config.hold_timeout;
        std::shared_ptr<const discovery::Host> host = co_await connect(cluster, *snapshot);
        const bool may_recover =
            snapshot->hosts.empty() || config.health_check.enabled || config.outlier_detection.enabled;
        const bool held = host == nullptr && may_recover;
        if (held) { stats->held_total.fetch_add(1, std::memory_order_relaxed); }
        while (host == nullptr && may_recover && !aborted_ && !worker_.draining() &&
               std::chrono::steady_clock::now() < hold_deadline) {
            const auto version = cluster.snapshot->version;
            co_await worker_.wait_snapshot(cluster_index, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                   hold_deadline - std::chrono::steady_clock::now()));
            if (cluster.snapshot->version == version) { break; }   // the deadline, not a change
            snapshot = cluster.snapshot;
            host = co_await connect(cluster, *snapshot);
        }
        if (held) { (host != nullptr ? stats->held_served : stats->held_timed_out).fetch_add(1, std::memory_order_relaxed); }
        if (host == nullptr) {
            if (!aborted_) {
                stats->unavailable_no_host.fetch_add(1, std::memory_order_relaxed);
                log::warn("listener {}: no host of cluster {} reachable, closing client",
                          listener_->config.name, config.name);
            }
            co_return;
        }
        auto& host_stats = host->stats();
        host_stats.connections_total.fetch_add(1, std::memory_order_relaxed);
        host_stats.connections_active.fetch_add(1, std::memory_order_relaxed);
        host_stats.requests_active.fetch_add(1, std::memory_order_relaxed);   // what least_request reads
        host_ = std::move(host);       // counted: the destructor takes it back
        snapshot_ = std::move(snapshot);

        boost::system::error_code ignored;
        client_socket().set_option(tcp::no_delay(true), ignored);
        configure_upstream(upstream_socket());
        const RelayCounters relay_counters{counters_.bytes_received, counters_.bytes_sent};
        if (client_stream_ || upstream_stream_) {
            // TLS on one side at least: relay between streams (a plain side is wrapped as one).
            if (!client_stream_) { client_stream_.emplace(std::move(client_)); }
            if (!upstream_stream_) { upstream_stream_.emplace(std::move(upstream_)); }
            co_await relay(worker_.buffers(), *client_stream_, *upstream_stream_, listener_->config.timeouts.idle,
                           relay_counters);
            close_both();
            co_return;
        }
        // Plain TCP: the sockets go to handlers and this coroutine ends, so a long-lived connection
        // holds no coroutine frames (5.0 KB -> see docs/performance.md per idle connection). The relay's
        // `done` holds the last reference to the session.
        relay_.emplace(worker_.buffers(), client_, upstream_, listener_->config.timeouts.idle, relay_counters,
                       [self = std::move(self)] {});
        relay_->start();
    }

private:
    // Tries hosts in balancer order, each with the connect timeout, until one answers or the
    // attempts run out (1 + retries.attempts, never the same host twice).
    asio::awaitable<std::shared_ptr<const discovery::Host>> connect(WorkerCluster& cluster,
                                                                    const ClusterSnapshot& snapshot) {
        const auto& config = *snapshot.config;
        const std::size_t max_attempts = 1 + config.retries.attempts;
        std::vector<const discovery::Host*> tried;
        // Maglev's key on a tcp listener is the client's address (hash: source_ip, the default; the
        // loader refuses header and cookie keys here).
        std::optional<std::uint64_t> key;
        if (config.load_balancing == config::LbPolicy::maglev &&
            (!config.hash || config.hash->kind == config::HashPolicy::Kind::source_ip)) {
            boost::system::error_code peer_ec;
            const auto peer = client_socket().remote_endpoint(peer_ec);
            if (!peer_ec) { key = hash_address(peer.address()); }
        }
        while (tried.size() < max_attempts && !aborted_) {
            const HostEntry* entry = cluster.balancer->choose(snapshot, ChooseContext{tried, key});
            if (entry == nullptr) { break; }
            const auto host = entry->host;
            tried.push_back(host.get());

            // The connect timeout cancels the connect through its cancellation slot, from the worker's
            // deadline queue: cheaper than racing a timer with the || operator (a parallel group and two
            // coroutines per connection), and than a timer of its own to set and cancel
            // (benchmarks/profile/http_keepalive_callgrind.py --case tcp-conn).
            worker_.deadlines().schedule(connect_deadline_, config.timeouts.connect);
            // Non-blocking from the start (the relay reads and writes it without waiting): one ioctl,
            // where connecting and then the relay each made one.
            boost::system::error_code open_ec;
            upstream_.open(host->address().protocol(), open_ec);
            if (!open_ec) { upstream_.non_blocking(true, open_ec); }
            auto [ec] = co_await upstream_.async_connect(host->address(),
                                                         asio::bind_cancellation_slot(connect_cancel_.slot(), use_tuple));
            connect_deadline_.cancel();
            if (ec == asio::error::operation_aborted && !aborted_) { ec = asio::error::timed_out; }
            std::string why;
            if (!ec && snapshot.tls) {
                // TLS to the host: the handshake is part of connecting (a failed one tries the next host).
                upstream_stream_.emplace(std::move(upstream_));
                upstream_stream_->start_tls_client(snapshot.tls, host->name());
                upstream_stream_->lowest().expires_after(config.timeouts.connect);
                std::tie(ec) = co_await upstream_stream_->async_handshake(use_tuple);
                if (ec) {
                    why = "TLS handshake failed: " + health::describe_handshake_error(
                                                        ec, snapshot.tls->settings().verify ? upstream_stream_->native_ssl() : nullptr);
                    upstream_stream_.reset();
                    upstream_ = tcp::socket(worker_.context());
                } else {
                    upstream_stream_->lowest().expires_never();
                }
            }
            if (snapshot.reporter && !aborted_) {
                snapshot.reporter->report(host, !ec                              ? health::Outcome::success
                                                : ec == asio::error::timed_out || ec == boost::beast::error::timeout
                                                    ? health::Outcome::timeout
                                                                               : health::Outcome::connect_failed);
            }
            if (!ec) { co_return host; }
            if (aborted_) { break; }
            if (why.empty()) { why = ec.message(); }
            host->stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
            log::debug("cluster {}: connect to {} failed: {}", config.name, host->name(), why);
            boost::system::error_code ignored;
            upstream_.close(ignored);
        }
        co_return nullptr;
    }

    // TLS listeners: the handshake with the client, within the listener's request_headers timeout.
    asio::awaitable<bool> client_handshake(std::shared_ptr<const TlsServer> tls) {
        tls_server_ = std::move(tls);
        client_stream_.emplace(std::move(client_));
        client_stream_->start_tls_server(tls_server_->context());
        client_stream_->lowest().expires_after(listener_->config.timeouts.request_headers);
        auto [ec] = co_await client_stream_->async_handshake(use_tuple);
        if (ec) {
            bump(counters_.tls_handshake_failures);
            log::debug("listener {}: TLS handshake failed: {}", listener_->config.name,
                       health::describe_handshake_error(ec, nullptr));
            co_return false;
        }
        client_stream_->lowest().expires_never();
        bump(counters_.tls_handshakes);
        if (SSL_session_reused(client_stream_->native_ssl()) == 1) { bump(counters_.tls_resumed); }
        co_return true;
    }

    tcp::socket& client_socket() { return client_stream_ ? client_stream_->socket() : client_; }
    tcp::socket& upstream_socket() { return upstream_stream_ ? upstream_stream_->socket() : upstream_; }

    void close_both() {
        boost::system::error_code ignored;
        client_socket().close(ignored);
        upstream_socket().close(ignored);
    }

    Worker& worker_;
    std::shared_ptr<ListenerState> listener_;
    ListenerCounters& counters_;
    tcp::socket client_;
    tcp::socket upstream_;
    // The connect timeout: on the worker's deadline queue, it cancels the pending connect.
    struct ConnectDeadline final : DeadlineQueue::Entry {
        explicit ConnectDeadline(asio::cancellation_signal& s) : signal(s) {}
        void expired() override { signal.emit(asio::cancellation_type::terminal); }
        asio::cancellation_signal& signal;
    };
    asio::cancellation_signal connect_cancel_;
    ConnectDeadline connect_deadline_{connect_cancel_};
    // Set when that side speaks TLS: the stream owns the socket then (the one above is left empty).
    std::optional<Stream> client_stream_;
    std::optional<Stream> upstream_stream_;
    std::shared_ptr<const TlsServer> tls_server_;
    // Held for the whole connection once counted (the destructor gives back what they count): the
    // snapshot keeps the host valid even if discovery drops it.
    std::shared_ptr<const ClusterSnapshot> snapshot_;
    std::shared_ptr<ClusterStats> stats_;               // an upstream_connections_active slot
    std::shared_ptr<const discovery::Host> host_;       // a connection and a request on the host
    std::optional<SocketRelay> relay_;                  // plain TCP, once connected
    bool aborted_ = false;
};

}  // namespace

asio::awaitable<void> serve_tcp(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client) {
    auto session = std::make_shared<TcpSession>(worker, std::move(listener), std::move(client));
    co_await session->run(session);
}

}  // namespace drover::proxy
