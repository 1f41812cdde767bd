#include "proxy/relay.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct RelayState {
    BufferPool& buffers;
    tcp::socket& a;
    tcp::socket& b;
    Clock::time_point last_activity = Clock::now();

    void close_both() {
        boost::system::error_code ignored;
        a.close(ignored);
        b.close(ignored);
    }
};

// One direction. Waits for readability before borrowing a buffer, so an idle connection holds none;
// one buffer in flight per direction is the back-pressure (nothing more is read until it is written).
asio::awaitable<void> pump(RelayState& state, tcp::socket& from, tcp::socket& to, std::atomic<std::uint64_t>& counter) {
    boost::system::error_code ec;
    from.non_blocking(true, ec);
    for (;;) {
        auto [wait_ec] = co_await from.async_wait(tcp::socket::wait_read, use_tuple);
        if (wait_ec) { co_return; }
        auto buffer = state.buffers.acquire();
        for (;;) {
            const std::size_t n = from.read_some(asio::buffer(*buffer), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) { break; }
            if (ec == asio::error::eof) {
                to.shutdown(tcp::socket::shutdown_send, ec);   // half-close: pass the FIN on
                co_return;
            }
            if (ec) {
                state.close_both();   // reset or error: the other direction cannot finish cleanly either
                co_return;
            }
            state.last_activity = Clock::now();
            bump(counter, n);
            auto [write_ec, written] = co_await asio::async_write(to, asio::buffer(buffer->data(), n), use_tuple);
            if (write_ec) {
                state.close_both();
                co_return;
            }
            if (n < buffer->size()) { break; }   // the socket is most likely drained
        }
    }
}

// Completes when both directions were silent for `idle`.
asio::awaitable<void> watch_idle(RelayState& state, std::chrono::milliseconds idle) {
    asio::steady_timer timer(state.a.get_executor());
    for (;;) {
        const auto deadline = state.last_activity + idle;
        if (Clock::now() >= deadline) { co_return; }
        timer.expires_at(deadline);
        auto [ec] = co_await timer.async_wait(use_tuple);
        if (ec) { co_return; }
    }
}

}  // namespace

asio::awaitable<void> relay(BufferPool& buffers, tcp::socket& client, tcp::socket& upstream,
                            std::chrono::milliseconds idle, RelayCounters counters) {
    RelayState state{buffers, client, upstream};
    co_await ((pump(state, client, upstream, counters.client_to_upstream) &&
               pump(state, upstream, client, counters.upstream_to_client)) ||
              watch_idle(state, idle));
    state.close_both();
}

}  // namespace drover::proxy
