#pragma once
// Which plain sockets have bytes to read, known without trying a read.
//
// Asio's epoll reactor registers each socket edge-triggered for its whole life, and at every edge it
// notes in the socket's reactor state that a read may find something ("try speculative"). Its own
// reads clear that note only at end of file, so every read it starts first calls recv() and waits
// only after EAGAIN, and its wait for readability re-arms the descriptor with EPOLL_CTL_MOD. Either
// costs a syscall every time a connection waits (for its client's next request, for its backend's
// response), and the pool checked each idle connection with recv(MSG_PEEK): three syscalls of a
// keep-alive request's seven where HAProxy makes none (benchmarks/profile).
//
// The functions here keep that note exact for the sockets Drover reads itself (plain HTTP clients
// and backends), so that when it says "drained", a read would find nothing:
//   - recv_now() reads without blocking. EAGAIN clears the note; so does a read that came back short
//     (the kernel hands over all it has), unless the peer's FIN or a reset has shown: a FIN that
//     arrives with the last bytes brings no later edge, and the read after them must see it.
//   - the reactor sets the note again at the socket's next edge, whoever waits on it (when it runs
//     the socket's events: a wait started after epoll_wait reported them still ends at them).
//   - quiet() is that note, cleared, on a watched socket: a read would find nothing.
//   - async_wait() completes at once if the note is set, else at the next edge: no syscall either way.
// A socket must be watched (watch(): EPOLLRDHUP added to its registration, so the FIN shows) for a
// short read to count; on others only EAGAIN does.
//
// One registration, one epoll_wait per loop turn: an earlier version kept a nested epoll instance of
// its own, which cost a second epoll_wait per turn and a second wake-up per packet.
//
// This reaches into Asio's epoll reactor (epoll_reactor::descriptor_state; readiness.cpp checks the
// Boost version it was written against). Everything runs on the socket's own thread.

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/reactive_wait_op.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <sys/types.h>

#include <cstddef>
#include <memory>

namespace drover::proxy::readiness {

using Socket = boost::asio::ip::tcp::socket;

// Watches a connected plain socket with no operation pending: the peer's FIN shows from now on (one
// epoll_ctl). `drained`: nothing can be in yet (a backend just connected, before the request), so the
// first read waits for an edge. False if the socket could not be watched (it works as before).
bool watch(Socket& socket, bool drained);
bool watched(Socket& socket);

// A read would find nothing: no bytes, no FIN, no error, since the last read drained the socket.
bool quiet(Socket& socket);

// recv(MSG_DONTWAIT) into `buffer`, keeping the note: the bytes read, 0 at end of file, or -1 with
// errno (EAGAIN: nothing there, and the next async_wait waits for the next edge).
ssize_t recv_now(Socket& socket, boost::asio::mutable_buffer buffer);

// Asks the kernel rather than the note: one recv(MSG_PEEK | MSG_DONTWAIT) of one byte. True when
// nothing is there (EAGAIN), and then the note is cleared; false for bytes, a FIN or an error.
bool peek_quiet(Socket& socket);

// Makes the note exact before a wait that should last (a parked keep-alive connection): a read that
// filled its buffer leaves "may read" set, and the wait would then end at once with nothing to read.
// Only then, peek_quiet(). No syscall when quiet() already.
void settle(Socket& socket);

namespace detail {
using Reactor = boost::asio::detail::reactor;
struct Place {
    Reactor* reactor;
    Reactor::per_descriptor_data* data;
    int fd;
};
Place place(Socket& socket);   // reactor null: not registered (closed)

// Ends a wait through its cancellation slot, as Asio's own per-operation cancellation does.
class CancelWait {
public:
    explicit CancelWait(const Place& place) : place_(place) {}
    void operator()(boost::asio::cancellation_type type);

private:
    Place place_;
};

void start_wait(const Place& place, boost::asio::detail::reactor_op* op, bool is_continuation);
}  // namespace detail

// Completes when a read may find something: at once (through the executor) unless the socket is known
// drained, else at its next edge; operation_aborted if the socket closes or the wait is cancelled
// (the token's cancellation slot). At most one at a time per socket, and no read alongside.
template <class Token>
auto async_wait(Socket& socket, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [&socket](auto handler) {
            using Handler = decltype(handler);
            using Op = boost::asio::detail::reactive_wait_op<Handler, Socket::executor_type>;
            const detail::Place place = detail::place(socket);
            const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            typename Op::ptr p = {std::addressof(handler), Op::ptr::allocate(handler), nullptr};
            p.p = new (p.v) Op(boost::system::error_code(), handler, socket.get_executor());
            if (slot.is_connected() && place.reactor != nullptr) {
                p.p->cancellation_key_ = &slot.template emplace<detail::CancelWait>(place);
            }
            detail::start_wait(place, p.p, is_continuation);
            p.v = p.p = nullptr;
        },
        token);
}

}  // namespace drover::proxy::readiness
