#include "proxy/relay.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <array>
#include <cerrno>
#include <memory>

#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// A reset passed on waits this long at most for the bytes queued before it, looking this often
// (SocketRelay::fail).
constexpr auto kResetWait = std::chrono::seconds(1);
constexpr auto kResetLook = std::chrono::milliseconds(10);
// How long a TLS peer is given to answer Drover's close_notify with its own.
constexpr auto kTlsCloseWait = std::chrono::seconds(1);

// The bytes a socket has queued to send and not yet seen acknowledged; -1 if it cannot say.
int send_queue(tcp::socket& socket) {
    int queued = 0;
    return ::ioctl(socket.native_handle(), SIOCOUTQ, &queued) == 0 ? queued : -1;
}

struct RelayState {
    // A direction's write in progress: the receiver's send queue at the last look (IdleWatch).
    struct Writing {
        tcp::socket* to = nullptr;   // none
        int queued = -1;             // not looked at yet: the first look counts as movement
    };

    BufferPool& buffers;
    tcp::socket& a;
    tcp::socket& b;
    Clock::time_point last_activity = Clock::now();
    std::array<Writing, 2> writing{};
    bool tls_closing = false;   // a direction sends close_notify (close_notify()): the other ends quietly

    // Whether a receiver still takes bytes while a write waits on it (a slow reader keeps the send
    // buffer full, so no read or finished write shows its traffic). Looks at every one.
    bool writes_moving() {
        bool moved = false;
        for (auto& w : writing) {
            if (w.to == nullptr) { continue; }
            const int queued = send_queue(*w.to);
            moved = moved || (queued >= 0 && queued != w.queued);
            w.queued = queued;
        }
        return moved;
    }

    void close_both() {
        boost::system::error_code ignored;
        a.close(ignored);
        b.close(ignored);
    }
};

// Closes both sockets once both directions were silent for `idle` (which ends both pumps). A plain
// timer handler, not a coroutine: it costs nothing per byte and one wait per idle period.
// `over` is shared with the pending handler: a timer that fired just as the relay ended must not touch
// the relay's frame once it is gone.
struct IdleWatch {
    RelayState& state;
    asio::steady_timer& timer;
    std::chrono::milliseconds idle;
    std::shared_ptr<bool> over = std::make_shared<bool>(false);

    void arm() {
        timer.expires_at(state.last_activity + idle);
        timer.async_wait([this, over = over](const boost::system::error_code& ec) {
            if (ec || *over) { return; }
            if (Clock::now() < state.last_activity + idle) {
                arm();
            } else if (state.writes_moving()) {
                state.last_activity = Clock::now();
                arm();
            } else {
                state.close_both();
            }
        });
    }
};

// The end of a direction into a TLS peer: close_notify, TLS's way to say "no more" (a FIN alone reads
// as a cut connection: "unexpected EOF"). Sending it is a TLS shutdown, which also reads (the peer's
// close_notify), so the other direction's read of `to` is cancelled first and it ends: after this
// nothing more is relayed from `to` (TLS clients do not count on a half-close). Bounded by
// kTlsCloseWait; the relay ends after it.
asio::awaitable<void> close_notify(RelayState& state, Stream& to) {
    state.tls_closing = true;
    boost::system::error_code ignored;
    to.socket().cancel(ignored);
    to.lowest().expires_after(kTlsCloseWait);
    co_await to.async_shutdown(use_tuple);
    state.close_both();
}

// TLS on either side: a TLS layer may hold decrypted bytes while its socket is quiet, so a direction
// cannot wait for readability first; it reads, holding its buffer while the connection lives.
asio::awaitable<void> stream_pump(RelayState& state, RelayState::Writing& writing, Stream& from, Stream& to,
                                  std::atomic<std::uint64_t>& counter) {
    auto buffer = state.buffers.acquire();
    for (;;) {
        auto [ec, n] = co_await from.async_read_some(asio::buffer(*buffer), use_tuple);
        if (n > 0) {
            state.last_activity = Clock::now();
            bump(counter, n);
            writing = RelayState::Writing{&to.socket(), -1};
            auto [write_ec, written] = co_await asio::async_write(to, asio::buffer(buffer->data(), n), use_tuple);
            writing = RelayState::Writing{};
            state.last_activity = Clock::now();
            if (write_ec) {
                state.close_both();
                co_return;
            }
        }
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
            // The peer is done sending (close_notify, or TCP FIN without one): so is the other side.
            if (to.tls()) {
                co_await close_notify(state, to);
                co_return;
            }
            boost::system::error_code ignored;
            to.socket().shutdown(tcp::socket::shutdown_send, ignored);
            co_return;
        }
        if (ec) {
            if (!state.tls_closing) { state.close_both(); }   // else: the read close_notify cancelled
            co_return;
        }
        if (state.tls_closing) { co_return; }
    }
}

// TLS: the two directions run as two coroutines on this worker; this one waits for both on a timer that
// the second to finish cancels. Cheaper per connection than racing them with the awaitable
// operators (`&&`, `||`), which add a parallel group and two more coroutines per connection.
asio::awaitable<void> run_stream_relay(Stream& client, Stream& upstream, RelayState& state,
                                std::chrono::milliseconds idle, RelayCounters counters) {
    const auto executor = co_await asio::this_coro::executor;
    asio::steady_timer both_done(executor, Clock::time_point::max());
    int running = 2;
    const auto finished = [&running, &both_done](const std::exception_ptr&) {
        if (--running == 0) { both_done.cancel(); }
    };
    asio::co_spawn(executor, stream_pump(state, state.writing[0], client, upstream, counters.client_to_upstream), finished);
    asio::co_spawn(executor, stream_pump(state, state.writing[1], upstream, client, counters.upstream_to_client), finished);
    asio::steady_timer idle_timer(executor);
    IdleWatch watch{state, idle_timer, idle};
    watch.arm();
    while (running > 0) { co_await both_done.async_wait(use_tuple); }
    *watch.over = true;
    idle_timer.cancel();
    state.close_both();
}

}  // namespace

SocketRelay::SocketRelay(BufferPool& buffers, DeadlineQueue& deadlines, tcp::socket& a, tcp::socket& b,
                         std::chrono::milliseconds idle, RelayCounters counters, std::function<void()> done)
    : buffers_(buffers),
      deadlines_(deadlines),
      a_(a),
      b_(b),
      idle_(idle),
      done_(std::move(done)),
      up_(*this, a, b, counters.client_to_upstream),
      down_(*this, b, a, counters.upstream_to_client) {}

void SocketRelay::start() {
    up_.start();
    down_.start();
    touch();
}

void SocketRelay::close_both() {
    boost::system::error_code ignored;
    if (resetting_ != nullptr) {
        (resetting_ == &a_ ? b_ : a_).close(ignored);
        return;
    }
    idle_deadline_.cancel();
    a_.close(ignored);
    b_.close(ignored);
}

// A peer that resets (a crashed process, an abort) is shown to the other side as a reset, not as the
// orderly FIN a close would send: a client of a close-delimited protocol could not tell a cut answer
// from a whole one. SO_LINGER 0 makes the close send RST. A reset discards what is still queued in
// that side's send buffer, and the peer that reset had sent it first: so the reset waits, looking
// every kResetLook, until the queue is out (acknowledged), for kResetWait at most (a delayed ACK
// holds it up to 200 ms); a receiver slower than that gets its bytes and a FIN instead, as before.
// Meanwhile the failed side is closed; a write already under way into `other` finishes.
void SocketRelay::fail(tcp::socket& other, const boost::system::error_code& ec) {
    if (resetting_ == nullptr && (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) &&
        other.is_open()) {
        resetting_ = &other;
        reset_by_ = Clock::now() + kResetWait;
        close_both();   // the failed side: what the other direction still writes into `other` goes on
        reset_wait_over();
        return;
    }
    close_both();
}

void SocketRelay::reset_wait_over() {
    tcp::socket& other = *resetting_;
    const int queued = send_queue(other);
    if (queued > 0 && Clock::now() < reset_by_) {
        deadlines_.schedule(idle_deadline_, kResetLook);
        return;
    }
    boost::system::error_code ignored;
    if (queued == 0) { other.set_option(tcp::socket::linger(true, 0), ignored); }
    resetting_ = nullptr;
    close_both();
    if (running_ == 0) { end(); }   // else the last direction to see its socket closed ends it
}

void SocketRelay::direction_finished() {
    if (--running_ > 0) { return; }
    if (resetting_ != nullptr) { return; }   // reset_wait_over() ends it
    close_both();
    end();
}

// The last thing: `done` may destroy this relay (and the Direction whose handler is running, which
// touches nothing after finish()).
void SocketRelay::end() {
    auto done = std::move(done_);
    done();
}

void SocketRelay::Direction::start() {
    boost::system::error_code ignored;
    // Read and written to without waiting (it is the other direction's `to_`); set once per socket.
    if (!from_.non_blocking()) { from_.non_blocking(true, ignored); }
    receive();
}

// Waits for bytes with a read into the direction's small buffer rather than a wait for readability:
// once a read has drained the socket the reactor knows it, so this read costs no syscall until bytes
// come, where each wait for readability re-armed the descriptor (epoll_ctl), then read
// (benchmarks/profile/http_keepalive_callgrind.py --case tcp-keepalive). Small exchanges fit in it.
void SocketRelay::Direction::receive() {
    from_.async_read_some(asio::buffer(small_), [this](const boost::system::error_code& ec, std::size_t n) {
        if (n > 0) {
            forward(small_.data(), n, n == small_.size());
        } else {
            ended(ec);
        }
    });
}

// After a read that filled the small buffer: the rest through a pooled buffer, read at once.
void SocketRelay::Direction::read() {
    if (!buffer_) { buffer_ = relay_.buffers_.acquire(); }
    boost::system::error_code ec;
    const std::size_t n = from_.read_some(asio::buffer(*buffer_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        buffer_.reset();   // idle: hold no buffer
        receive();
        return;
    }
    if (ec) {
        ended(ec);
        return;
    }
    forward(buffer_->data(), n, n == buffer_->size());
}

void SocketRelay::Direction::ended(const boost::system::error_code& ec) {
    if (ec == asio::error::eof) {
        pass_fin();
    } else if (ec != asio::error::operation_aborted) {
        relay_.fail(to_, ec);   // reset or error: the other direction cannot finish cleanly either
    }
    finish();
}

void SocketRelay::Direction::forward(const char* data, std::size_t n, bool full) {
    relay_.touch();
    bump(counter_, n);
    // Written at once when the receiver has room (it almost always has): an asynchronous write that
    // completes at once still goes through the scheduler, about a third of a small relayed request's
    // instructions (benchmarks/profile/http_keepalive_callgrind.py --case tcp-keepalive).
    boost::system::error_code ec;
    const std::size_t sent = to_.write_some(asio::buffer(data, n), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        relay_.fail(from_, ec);
        finish();
        return;
    }
    if (!ec && sent == n) {
        written(full);
        return;
    }
    const std::size_t done = ec ? 0 : sent;
    block();
    write_rest(data + done, n - done, full);
}

// The receiver's buffer is full: each time it has room, what it takes (each piece is traffic for the
// idle deadline), until all of it is out.
void SocketRelay::Direction::write_rest(const char* data, std::size_t n, bool full) {
    to_.async_wait(tcp::socket::wait_write, [this, data, n, full](const boost::system::error_code& ec) {
        boost::system::error_code write_ec = ec;
        const std::size_t sent = ec ? 0 : to_.write_some(asio::buffer(data, n), write_ec);
        if (write_ec == asio::error::would_block || write_ec == asio::error::try_again) {
            write_ec = {};
        }
        if (write_ec) {
            unblock();
            relay_.fail(from_, write_ec);
            finish();
            return;
        }
        if (sent > 0) { relay_.touch(); }
        if (sent == n) {
            unblock();
            written(full);
            return;
        }
        write_rest(data + sent, n - sent, full);
    });
}

bool SocketRelay::Direction::moving() {
    if (!blocked_) { return false; }
    const int queued = send_queue(to_);
    const bool moved = queued >= 0 && queued != queued_;
    queued_ = queued;
    return moved;
}

void SocketRelay::Direction::written(bool full) {
    if (!full) {
        buffer_.reset();   // the socket is most likely drained
        receive();
    } else if (buffer_ && start_splicing()) {
        buffer_.reset();   // a full 16 KiB read: a bulk transfer, the kernel moves it from here on
        splice_in();
    } else {
        // Read on, through the scheduler: a fast sender must not keep the worker to itself.
        asio::post(from_.get_executor(), [this] { read(); });
    }
}

bool SocketRelay::Direction::start_splicing() {
    pipe_ = Pipe::open(Pipe::kCapacity);
    return static_cast<bool>(pipe_);
}

void SocketRelay::Direction::splice_in() {
    for (;;) {
        const ssize_t n = ::splice(from_.native_handle(), nullptr, pipe_.write_end(), nullptr, Pipe::kCapacity,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            in_pipe_ = static_cast<std::size_t>(n);
            relay_.touch();
            bump(counter_, in_pipe_);
            splice_out();
            return;
        }
        if (n == 0) {   // EOF (the pipe is empty here)
            pass_fin();
            finish();
            return;
        }
        if (errno == EINTR) { continue; }
        if (errno == EAGAIN) {   // the source has nothing now (the pipe is empty, so it is not full)
            from_.async_wait(tcp::socket::wait_read, [this](const boost::system::error_code& ec) {
                if (ec) {
                    finish();
                } else {
                    splice_in();
                }
            });
            return;
        }
        relay_.fail(to_, {errno, boost::system::system_category()});   // reset or error (a closed socket too)
        finish();
        return;
    }
}

void SocketRelay::Direction::splice_out() {
    while (in_pipe_ > 0) {
        const ssize_t n = ::splice(pipe_.read_end(), nullptr, to_.native_handle(), nullptr, in_pipe_,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            in_pipe_ -= static_cast<std::size_t>(n);
            if (blocked_) { relay_.touch(); }   // a slow receiver took some: traffic (see moving())
            continue;
        }
        if (n < 0 && errno == EINTR) { continue; }
        if (n < 0 && errno == EAGAIN) {   // the receiver is slow: the pipe holds the rest meanwhile
            block();
            to_.async_wait(tcp::socket::wait_write, [this](const boost::system::error_code& ec) {
                if (ec) {
                    unblock();
                    relay_.close_both();
                    finish();
                } else {
                    splice_out();
                }
            });
            return;
        }
        relay_.fail(from_, {n == 0 ? 0 : errno, boost::system::system_category()});
        finish();
        return;
    }
    unblock();
    // Drained: the next chunk through the scheduler, so one bulk transfer cannot starve the worker's
    // other connections.
    asio::post(from_.get_executor(), [this] { splice_in(); });
}

// Half-close: the receiver gets the FIN. Not when the other direction is over already: both sockets
// close next, and closing sends the FIN (its incoming side was read to EOF, so it is not a reset). One
// syscall less per connection (benchmarks/e2e tcp-conn).
void SocketRelay::Direction::pass_fin() {
    if (relay_.running_ < 2) { return; }
    boost::system::error_code ignored;
    to_.shutdown(tcp::socket::shutdown_send, ignored);
}

void SocketRelay::Direction::finish() {
    buffer_.reset();
    relay_.direction_finished();
}

asio::awaitable<void> relay(BufferPool& buffers, DeadlineQueue& deadlines, tcp::socket& client, tcp::socket& upstream,
                            std::chrono::milliseconds idle, RelayCounters counters) {
    asio::steady_timer finished(client.get_executor(), Clock::time_point::max());
    bool over = false;
    SocketRelay socket_relay(buffers, deadlines, client, upstream, idle, counters, [&] {
        over = true;
        finished.cancel();
    });
    socket_relay.start();
    while (!over) { co_await finished.async_wait(use_tuple); }
}

asio::awaitable<void> relay(BufferPool& buffers, DeadlineQueue& deadlines, Stream& client, Stream& upstream,
                            std::chrono::milliseconds idle, RelayCounters counters) {
    if (!client.tls() && !upstream.tls()) {
        co_await relay(buffers, deadlines, client.socket(), upstream.socket(), idle, counters);
        co_return;
    }
    // Only the idle watch bounds a relay: no per-operation expiry left over from before.
    client.lowest().expires_never();
    upstream.lowest().expires_never();
    RelayState state{buffers, client.socket(), upstream.socket()};
    co_await run_stream_relay(client, upstream, state, idle, counters);
}

}  // namespace drover::proxy
