#include "proxy/tcp_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>

#include "config/log.hpp"
#include "proxy/listener.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

class TcpSession final : public Session {
public:
    TcpSession(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client)
        : worker_(worker),
          listener_(std::move(listener)),
          counters_(worker.listener_counters(listener_->index)),
          client_(std::move(client)),
          upstream_(worker.context()) {
        worker_.add_session(this);
    }

    ~TcpSession() override {
        worker_.remove_session(this);
        listener_->connections_active.fetch_sub(1, std::memory_order_relaxed);
    }

    TcpSession(const TcpSession&) = delete;
    TcpSession& operator=(const TcpSession&) = delete;

    void abort() override {
        aborted_ = true;
        close_both();
    }

    asio::awaitable<void> run() {
        auto& cluster = worker_.cluster(listener_->cluster);
        // Hold the snapshot for the whole connection: the host stays valid even if discovery drops it.
        const auto snapshot = cluster.snapshot;
        auto* stats = snapshot->stats.get();
        const auto& config = *snapshot->config;

        if (stats->upstream_connections_active.fetch_add(1, std::memory_order_relaxed) >=
            static_cast<std::int64_t>(config.limits.max_connections)) {
            stats->upstream_connections_active.fetch_sub(1, std::memory_order_relaxed);
            stats->unavailable_max_connections.fetch_add(1, std::memory_order_relaxed);
            log::debug("listener {}: cluster {} at max_connections, closing client", listener_->config.name,
                       config.name);
            co_return;
        }
        struct Release {
            ClusterStats* stats;
            ~Release() { stats->upstream_connections_active.fetch_sub(1, std::memory_order_relaxed); }
        } release{stats};

        const discovery::Host* host = co_await connect(cluster, *snapshot);
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

        set_options(client_);
        set_options(upstream_);
        last_activity_ = Clock::now();
        co_await ((pump(client_, upstream_, counters_.bytes_received) &&
                   pump(upstream_, client_, counters_.bytes_sent)) ||
                  watch_idle());
        close_both();
        host_stats.connections_active.fetch_sub(1, std::memory_order_relaxed);
    }

private:
    // Tries hosts in balancer order, each with the connect timeout, until one answers or the
    // attempts run out (1 + retries.attempts, never the same host twice).
    asio::awaitable<const discovery::Host*> connect(WorkerCluster& cluster, const ClusterSnapshot& snapshot) {
        const auto& config = *snapshot.config;
        const std::size_t max_attempts = 1 + config.retries.attempts;
        std::vector<const discovery::Host*> tried;
        asio::steady_timer timer(worker_.context());
        while (tried.size() < max_attempts && !aborted_) {
            const HostEntry* entry = cluster.balancer->choose(snapshot, ChooseContext{tried});
            if (entry == nullptr) { break; }
            const discovery::Host* host = entry->host.get();
            tried.push_back(host);

            timer.expires_after(config.timeouts.connect);
            auto result = co_await (upstream_.async_connect(host->address(), use_tuple) ||
                                    timer.async_wait(use_tuple));
            boost::system::error_code ec =
                result.index() == 0 ? std::get<0>(std::get<0>(result)) : asio::error::timed_out;
            if (!ec) { co_return host; }
            if (aborted_) { break; }
            host->stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
            log::debug("cluster {}: connect to {} failed: {}", config.name, host->name(), ec.message());
            boost::system::error_code ignored;
            upstream_.close(ignored);
        }
        co_return nullptr;
    }

    // Copies one direction. Waits for readability before borrowing a buffer, so an idle connection
    // holds none; one buffer in flight per direction is the back-pressure (no read until written).
    asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to, std::atomic<std::uint64_t>& counter) {
        boost::system::error_code ec;
        from.non_blocking(true, ec);
        for (;;) {
            auto [wait_ec] = co_await from.async_wait(tcp::socket::wait_read, use_tuple);
            if (wait_ec) { co_return; }
            auto buffer = worker_.buffers().acquire();
            for (;;) {
                const std::size_t n = from.read_some(asio::buffer(*buffer), ec);
                if (ec == asio::error::would_block || ec == asio::error::try_again) { break; }
                if (ec == asio::error::eof) {
                    // Half-close: pass the FIN on and let the other direction finish.
                    to.shutdown(tcp::socket::shutdown_send, ec);
                    co_return;
                }
                if (ec) {
                    close_both();   // reset or error: the other direction cannot finish cleanly either
                    co_return;
                }
                last_activity_ = Clock::now();
                bump(counter, n);
                auto [write_ec, written] = co_await asio::async_write(to, asio::buffer(buffer->data(), n), use_tuple);
                if (write_ec) {
                    close_both();
                    co_return;
                }
                if (n < buffer->size()) { break; }   // the socket is most likely drained
            }
        }
    }

    // Completes when both directions were silent for the listener's idle timeout.
    asio::awaitable<void> watch_idle() {
        const auto idle = listener_->config.timeouts.idle;
        asio::steady_timer timer(worker_.context());
        for (;;) {
            const auto deadline = last_activity_ + idle;
            if (Clock::now() >= deadline) {
                log::debug("listener {}: closing idle connection", listener_->config.name);
                co_return;
            }
            timer.expires_at(deadline);
            auto [ec] = co_await timer.async_wait(use_tuple);
            if (ec) { co_return; }
        }
    }

    static void set_options(tcp::socket& socket) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
    }

    void close_both() {
        boost::system::error_code ignored;
        client_.close(ignored);
        upstream_.close(ignored);
    }

    Worker& worker_;
    std::shared_ptr<ListenerState> listener_;
    ListenerCounters& counters_;
    tcp::socket client_;
    tcp::socket upstream_;
    Clock::time_point last_activity_{};
    bool aborted_ = false;
};

}  // namespace

asio::awaitable<void> serve_tcp(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client) {
    TcpSession session(worker, std::move(listener), std::move(client));
    co_await session.run();
}

}  // namespace drover::proxy
