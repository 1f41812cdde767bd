#include "proxy/tcp_session.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

#include <fmt/format.h>
#include <openssl/ssl.h>

#include "config/log.hpp"
#include "health/probe.hpp"
#include "health/tls_client.hpp"
#include "proxy/listener.hpp"
#include "proxy/relay.hpp"
#include "proxy/socket_options.hpp"
#include "proxy/spawn.hpp"
#include "proxy/stream.hpp"
#include "proxy/tls_server.hpp"
#include "proxy/load_balancer/hash.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Handler-based rather than a coroutine: a connection's set-up is a short chain of completions, and
// coroutines cost it four frames, a co_spawn and its final post (benchmarks/profile/
// http_keepalive_callgrind.py --case tcp-conn). Each pending operation's handler holds the session;
// once relaying, the relay's `done` does.
class TcpSession final : public Session, public std::enable_shared_from_this<TcpSession> {
public:
    TcpSession(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client)
        : worker_(worker),
          listener_(std::move(listener)),
          counters_(listener_->counters(worker.index())),
          client_(std::move(client)),
          upstream_(worker.new_socket()) {
        worker_.add_session(this);
    }

    ~TcpSession() override {
        if (host_) {
            host_->stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
            host_->stats().requests_active.fetch_sub(1, std::memory_order_relaxed);
        }
        end_hold();
        release_place();
        worker_.remove_session(this);
        listener_->connections_active().fetch_sub(1, std::memory_order_relaxed);
    }

    TcpSession(const TcpSession&) = delete;
    TcpSession& operator=(const TcpSession&) = delete;

    // The drain's deadline or a second signal: the stream is cut, and both peers are told so with a
    // reset (SO_LINGER 0), not the FIN of a stream that ended (as the relay passes on a peer's reset).
    void abort() override {
        aborted_ = true;
        boost::system::error_code ignored;
        if (client_socket().is_open()) { client_socket().set_option(tcp::socket::linger(true, 0), ignored); }
        if (upstream_socket().is_open()) { upstream_socket().set_option(tcp::socket::linger(true, 0), ignored); }
        close_both();
    }

    // The TLS handshake with the client (TLS listeners), then the cluster.
    void start() {
        if (listener_->tls) {
            handshake_client();
        } else {
            begin();
        }
    }

private:
    // Within the listener's request_headers timeout.
    void handshake_client() {
        tls_server_ = listener_->tls;
        client_stream_.emplace(std::move(client_));
        client_stream_->start_tls_server(tls_server_->context());
        client_stream_->lowest().expires_after(listener_->config.timeouts.request_headers);
        client_stream_->async_handshake(
            asio::bind_executor(worker_.context().get_executor(), [self = shared_from_this()](boost::system::error_code ec) {
                if (ec) {
                    bump(self->counters_.tls_handshake_failures);
                    log::debug("listener {}: TLS handshake failed: {}", self->listener_->config.name,
                               health::describe_handshake_error(ec, nullptr));
                    return;
                }
                self->client_stream_->lowest().expires_never();
                bump(self->counters_.tls_handshakes);
                if (SSL_session_reused(self->client_stream_->native_ssl()) == 1) { bump(self->counters_.tls_resumed); }
                self->begin();
            }));
    }

    // Connects (a place of the cluster's max_connections is taken when a host is tried: below).
    void begin() {
        cluster_index_ = worker_.listener_cluster(listener_->index);
        // Held for the whole connection: the host stays valid even if discovery drops it, and the
        // config even if a reload replaces it.
        snapshot_ = worker_.cluster(cluster_index_).snapshot;
        const auto& config = *snapshot_->config;
        stats_ = snapshot_->stats;
        // While no host takes the connection, wait (up to hold_timeout) for the cluster to change.
        hold_deadline_ = std::chrono::steady_clock::now() + config.hold_timeout;
        may_recover_ = snapshot_->hosts.empty() || config.health_check.enabled || config.outlier_detection.enabled;
        start_pass();
    }

    // Tries the snapshot's hosts in balancer order, each with the connect timeout, until one answers
    // or the attempts run out (1 + retries.attempts, never the same host twice).
    void start_pass() {
        tried_.clear();
        key_.reset();
        // Maglev's key on a tcp listener is the client's address (hash: source_ip, the default; the
        // loader refuses header and cookie keys here).
        const auto& config = *snapshot_->config;
        if (config.load_balancing == config::LbPolicy::maglev &&
            (!config.hash || config.hash->kind == config::HashPolicy::Kind::source_ip)) {
            boost::system::error_code peer_ec;
            const auto peer = client_socket().remote_endpoint(peer_ec);
            if (!peer_ec) { key_ = hash_address(peer.address()); }
        }
        next_attempt();
    }

    void next_attempt() {
        const auto& config = *snapshot_->config;
        const HostEntry* entry = nullptr;
        if (!aborted_ && tried_.size() < 1 + config.retries.attempts) {
            entry = worker_.cluster(cluster_index_).balancer->choose(*snapshot_, ChooseContext{tried_, key_});
        }
        if (entry == nullptr) {
            pass_failed();
            return;
        }
        if (!counted_ && !take_place()) { return; }
        // Another host after a failed connect: a retry, counted as the http path counts it.
        if (!tried_.empty()) { stats_->retries_connect_failure.fetch_add(1, std::memory_order_relaxed); }
        attempt_ = entry->host;
        tried_.push_back(attempt_.get());
        // The connect timeout is on the worker's deadline queue, which cancels the connect: cheaper
        // than a timer of the connection's own to set and cancel.
        worker_.deadlines().schedule(connect_deadline_, config.timeouts.connect);
        // Non-blocking from the start (the relay reads and writes it without waiting): one ioctl.
        boost::system::error_code open_ec;
        upstream_.open(attempt_->address().protocol(), open_ec);
        if (!open_ec) { upstream_.non_blocking(true, open_ec); }
        upstream_.async_connect(attempt_->address(),
                                [self = shared_from_this()](boost::system::error_code ec) { self->on_connect(ec); });
    }

    void on_connect(boost::system::error_code ec) {
        connect_deadline_.cancel();
        if (ec == asio::error::operation_aborted && !aborted_) { ec = asio::error::timed_out; }
        if (!ec && snapshot_->tls) {
            handshake_upstream();
            return;
        }
        attempt_done(ec, {});
    }

    // TLS to the host: the handshake is part of connecting (a failed one tries the next host).
    void handshake_upstream() {
        upstream_stream_.emplace(std::move(upstream_));
        upstream_stream_->start_tls_client(snapshot_->tls, attempt_->name());
        upstream_stream_->lowest().expires_after(snapshot_->config->timeouts.connect);
        upstream_stream_->async_handshake(
            asio::bind_executor(worker_.context().get_executor(), [self = shared_from_this()](boost::system::error_code ec) {
                std::string why;
                if (ec) {
                    why = "TLS handshake failed: " +
                          health::describe_handshake_error(
                              ec, self->snapshot_->tls->settings().verify ? self->upstream_stream_->native_ssl() : nullptr);
                    self->upstream_stream_.reset();
                    self->upstream_ = self->worker_.new_socket();
                } else {
                    self->upstream_stream_->lowest().expires_never();
                }
                self->attempt_done(ec, std::move(why));
            }));
    }

    void attempt_done(boost::system::error_code ec, std::string why) {
        // Out of descriptors here is Drover's shortage, not the host's failure: no outcome for it.
        if (snapshot_->reporter && !aborted_ && !health::is_local_shortage(ec)) {
            snapshot_->reporter->report(attempt_, !ec                              ? health::Outcome::success
                                                  : ec == asio::error::timed_out || ec == boost::beast::error::timeout
                                                      ? health::Outcome::timeout
                                                                                 : health::Outcome::connect_failed);
        }
        if (!ec) {
            connected();
            return;
        }
        if (!aborted_) {
            if (why.empty()) { why = ec.message(); }
            attempt_->stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
            log::debug("cluster {}: connect to {} failed: {}", snapshot_->config->name, attempt_->name(), why);
            last_failure_ = fmt::format("{}: {}", attempt_->name(), why);
        }
        boost::system::error_code ignored;
        upstream_.close(ignored);
        next_attempt();
    }

    // No host of this snapshot took the connection: hold it for a new one while the cluster may
    // recover (health checks or outlier detection bring hosts back, or it has none yet).
    void pass_failed() {
        release_place();   // a connection held, or given up, has no upstream connection to count
        if (!held_ && may_recover_) {
            held_ = true;
            stats_->held_total.fetch_add(1, std::memory_order_relaxed);
        }
        const auto now = std::chrono::steady_clock::now();
        if (!may_recover_ || aborted_ || worker_.draining() || now >= hold_deadline_) {
            give_up();
            return;
        }
        if (!holding_) {
            holding_ = true;
            stats_->held_active.fetch_add(1, std::memory_order_relaxed);
        }
        const auto version = worker_.cluster(cluster_index_).snapshot->version;
        worker_.wait_snapshot(cluster_index_, std::chrono::duration_cast<std::chrono::milliseconds>(hold_deadline_ - now),
                              [self = shared_from_this(), version] {
                                  const auto& current = self->worker_.cluster(self->cluster_index_).snapshot;
                                  if (current->version == version) {   // the deadline, not a change
                                      self->give_up();
                                      return;
                                  }
                                  if (self->client_left()) {   // nobody to connect for any more
                                      self->end_hold();
                                      self->stats_->held_client_left.fetch_add(1, std::memory_order_relaxed);
                                      return;
                                  }
                                  self->snapshot_ = current;
                                  self->start_pass();
                              });
    }

    // The client closed its connection while it was held, having sent nothing more (its FIN is all a
    // read would find), or reset it (bytes it sent before are readable still, the reset is the
    // socket's pending error). Bytes sent before a half-close still go to a host.
    bool client_left() {
        auto& socket = client_stream_ ? client_stream_->socket() : client_;
        char byte = 0;
        const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) { return true; }
        int error = 0;
        socklen_t length = sizeof error;
        return n > 0 && ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error != 0;
    }

    // A place under the cluster's limits.max_connections for the connection about to be made. At the
    // limit, an idle pooled HTTP connection of the cluster on this worker is closed for one; if other
    // workers have idle ones, they are asked to close one and this looks again every few milliseconds
    // for up to queue_timeout. Else the client is closed. False when not (yet) placed.
    bool take_place() {
        auto& places = stats_->connections;
        const auto& config = *snapshot_->config;
        if (reserve_connection(places, config.limits.max_connections) ||
            (worker_.pool().close_idle(places) && reserve_connection(places, config.limits.max_connections))) {
            counted_ = true;
            place_timer_.reset();   // a later wait (after a hold) has a queue_timeout of its own
            return true;
        }
        const auto now = std::chrono::steady_clock::now();
        if (!place_timer_) {
            place_timer_ = std::make_unique<asio::steady_timer>(worker_.context());
            place_deadline_ = now + config.limits.queue_timeout;
            if (places.idle.load(std::memory_order_relaxed) > 0 && worker_.close_idle_elsewhere) {
                worker_.close_idle_elsewhere(std::shared_ptr<ConnectionBudget>(stats_, &places));
            }
        }
        if (now < place_deadline_ && !aborted_) {
            place_timer_->expires_at(std::min(place_deadline_, now + std::chrono::milliseconds(5)));
            place_timer_->async_wait([self = shared_from_this()](boost::system::error_code) { self->next_attempt(); });
            return false;
        }
        stats_->unavailable_max_connections.fetch_add(1, std::memory_order_relaxed);
        log::debug("listener {}: cluster {} at max_connections, closing client", listener_->config.name, config.name);
        return false;   // nothing pending: the client closes with the session
    }

    void release_place() {
        if (counted_) {
            give_back_connection(stats_->connections);
            counted_ = false;
        }
    }

    void end_hold() {
        if (!holding_) { return; }
        holding_ = false;
        stats_->held_active.fetch_sub(1, std::memory_order_relaxed);
    }

    void give_up() {
        end_hold();
        if (held_) { stats_->held_timed_out.fetch_add(1, std::memory_order_relaxed); }
        if (aborted_) { return; }
        stats_->unavailable_no_host.fetch_add(1, std::memory_order_relaxed);
        log::warn("listener {}: no host of cluster {} reachable, closing client{}{}", listener_->config.name,
                  snapshot_->config->name, last_failure_.empty() ? "" : "; last failure: ", last_failure_);
    }

    void connected() {
        end_hold();
        if (held_) { stats_->held_served.fetch_add(1, std::memory_order_relaxed); }
        auto& host_stats = attempt_->stats();
        host_stats.connections_total.fetch_add(1, std::memory_order_relaxed);
        host_stats.connections_active.fetch_add(1, std::memory_order_relaxed);
        host_stats.requests_active.fetch_add(1, std::memory_order_relaxed);   // what least_request reads
        host_ = std::move(attempt_);   // counted: the destructor takes it back

        // The client socket has TCP_NODELAY from its listener (accepted sockets inherit it).
        configure_upstream(upstream_socket());
        if (client_stream_ || upstream_stream_) {
            // TLS on one side at least: relay between streams (a plain side is wrapped as one).
            if (!client_stream_) { client_stream_.emplace(std::move(client_)); }
            if (!upstream_stream_) { upstream_stream_.emplace(std::move(upstream_)); }
            spawn(worker_.context().get_executor(), relay_streams(shared_from_this()), "tcp session");
            return;
        }
        // Plain TCP: the session owns itself until the relay is done (`done` captures only `this`, so
        // std::function keeps it inline: no allocation). An idle connection holds no coroutine frame.
        keep_alive_ = shared_from_this();
        relay_.emplace(worker_.buffers(), worker_.deadlines(), client_, upstream_, listener_->config.timeouts.idle,
                       relay_counters(), [this] { auto last = std::move(keep_alive_); });
        relay_->start();
    }

    static asio::awaitable<void> relay_streams(std::shared_ptr<TcpSession> self) {
        co_await relay(self->worker_.buffers(), self->worker_.deadlines(), *self->client_stream_, *self->upstream_stream_,
                       self->listener_->config.timeouts.idle, self->relay_counters());
        self->close_both();
    }

    RelayCounters relay_counters() const { return {counters_.bytes_received, counters_.bytes_sent}; }
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
        explicit ConnectDeadline(tcp::socket& s) : socket(s) {}
        void expired() override {
            boost::system::error_code ignored;
            socket.cancel(ignored);
        }
        tcp::socket& socket;
    };
    ConnectDeadline connect_deadline_{upstream_};
    // Set when that side speaks TLS: the stream owns the socket then (the one above is left empty).
    std::optional<Stream> client_stream_;
    std::string last_failure_;   // "host: why" of the last failed connect, for the give-up warning
    std::optional<Stream> upstream_stream_;
    std::shared_ptr<const TlsServer> tls_server_;
    // Connecting: the cluster, the snapshot being tried (held for the whole connection once
    // connected), the hosts tried in this pass and the host being tried.
    std::size_t cluster_index_ = 0;
    std::shared_ptr<const ClusterSnapshot> snapshot_;
    // Inline for the usual few attempts: no allocation per connection.
    boost::container::small_vector<const discovery::Host*, 4> tried_;
    std::optional<std::uint64_t> key_;
    std::shared_ptr<const discovery::Host> attempt_;
    std::chrono::steady_clock::time_point hold_deadline_;
    bool may_recover_ = false;
    bool held_ = false;      // counted in held_total
    bool holding_ = false;   // counted in held_active: waiting for a new snapshot
    // Counted once taken (the destructor gives back what they count).
    std::shared_ptr<ClusterStats> stats_;
    bool counted_ = false;                              // holds a place in stats_->connections
    std::unique_ptr<asio::steady_timer> place_timer_;   // waiting for a place (take_place)
    std::chrono::steady_clock::time_point place_deadline_;
    std::shared_ptr<const discovery::Host> host_;       // a connection and a request on the host
    std::optional<SocketRelay> relay_;                  // plain TCP, once connected
    std::shared_ptr<TcpSession> keep_alive_;            // while relay_ runs
    bool aborted_ = false;
};

}  // namespace

void accept_tcp(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client) {
    std::make_shared<TcpSession>(worker, std::move(listener), std::move(client))->start();
}

}  // namespace drover::proxy
