#include "proxy/readiness.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/version.hpp>

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <type_traits>

namespace drover::proxy::readiness {

namespace asio = boost::asio;

// The reactor state this reads is Asio's own, private to epoll_reactor. It is reached the one way C++
// allows without changing Asio: an explicit instantiation may name private members, and a friend
// defined in it hands out the member pointer. Checked against the Boost this was written for; a new
// Boost means re-reading epoll_reactor.ipp (start_op, perform_io, register_descriptor) before moving
// the number.
static_assert(BOOST_VERSION == 108100, "readiness.cpp relies on Boost 1.81's epoll_reactor: re-check it");
static_assert(std::is_same_v<asio::detail::reactor, asio::detail::epoll_reactor>,
              "readiness.cpp relies on Asio's epoll reactor");

namespace {

template <class Tag, typename Tag::type Member>
struct Expose {
    friend typename Tag::type member(Tag) { return Member; }
};

using Reactor = asio::detail::epoll_reactor;
using State = std::remove_pointer_t<Reactor::per_descriptor_data>;
using SocketBase = asio::basic_socket<asio::ip::tcp, asio::any_io_executor>;
using SocketImpl = asio::detail::io_object_impl<asio::detail::reactive_socket_service<asio::ip::tcp>, asio::any_io_executor>;

struct ImplOf {
    using type = SocketImpl SocketBase::*;
    friend type member(ImplOf);
};
struct TrySpeculative {
    using type = bool (State::*)[Reactor::max_ops];
    friend type member(TrySpeculative);
};
struct RegisteredEvents {
    using type = std::uint32_t State::*;
    friend type member(RegisteredEvents);
};
struct ReactorOf {
    using type = Reactor* State::*;
    friend type member(ReactorOf);
};
struct EpollFd {
    using type = int Reactor::*;
    friend type member(EpollFd);
};
struct TaskResult {   // the events of the socket's last report, kept until the next one
    using type = unsigned int asio::detail::scheduler_operation::*;
    friend type member(TaskResult);
};

template struct Expose<ImplOf, &SocketBase::impl_>;
template struct Expose<TrySpeculative, &State::try_speculative_>;
template struct Expose<RegisteredEvents, &State::registered_events_>;
template struct Expose<ReactorOf, &State::reactor_>;
template struct Expose<EpollFd, &Reactor::epoll_fd_>;
template struct Expose<TaskResult, &asio::detail::scheduler_operation::task_result_>;

constexpr std::uint32_t kHungUp = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

asio::detail::reactive_socket_service_base::base_implementation_type& impl(Socket& socket) {
    return (static_cast<SocketBase&>(socket).*member(ImplOf{})).get_implementation();
}

bool& may_read(State* state) { return (state->*member(TrySpeculative{}))[Reactor::read_op]; }
std::uint32_t& registered(State* state) { return state->*member(RegisteredEvents{}); }
unsigned int& last_events(State* state) {
    // descriptor_state derives privately from its operation base; only a C-style cast may convert to it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
    auto* operation = (asio::detail::scheduler_operation*)state;
#pragma GCC diagnostic pop
    return operation->*member(TaskResult{});
}

bool is_watched(State* state) { return state != nullptr && (registered(state) & EPOLLRDHUP) != 0; }
bool hung_up(State* state) { return (last_events(state) & kHungUp) != 0; }

// A read came back with less than it asked for (or nothing, EAGAIN): the socket is empty, and what
// comes next brings an edge, which sets the note again. A short read does not say that a FIN is not
// right behind the bytes it took, unless the socket reports FINs (watched) and none has shown.
void note_drained(State* state, bool empty) {
    if (state == nullptr || registered(state) == 0) { return; }
    if (empty || (is_watched(state) && !hung_up(state))) { may_read(state) = false; }
}

}  // namespace

bool watch(Socket& socket, bool drained) {
    auto& socket_impl = impl(socket);
    State* state = socket_impl.reactor_data_;
    if (state == nullptr || registered(state) == 0) { return false; }
    // The state may be a recycled one: forget the last owner's events. If bytes or a FIN are in
    // already, the EPOLL_CTL_MOD below reports them afresh, which sets the note again.
    last_events(state) = 0;
    const bool was = may_read(state);
    if (drained) { may_read(state) = false; }
    // Without EPOLLOUT: nothing waits to write now, and a write that has to wait adds it back (Asio's
    // start_op); with it, the MOD would report the socket writable for nothing.
    epoll_event event{};
    event.events = (registered(state) & ~static_cast<std::uint32_t>(EPOLLOUT)) | EPOLLRDHUP;
    event.data.ptr = state;
    Reactor* reactor = state->*member(ReactorOf{});
    if (::epoll_ctl(reactor->*member(EpollFd{}), EPOLL_CTL_MOD, socket_impl.socket_, &event) != 0) {
        may_read(state) = was;
        return false;
    }
    registered(state) = event.events;
    return true;
}

bool watched(Socket& socket) { return is_watched(impl(socket).reactor_data_); }

bool quiet(Socket& socket) {
    State* state = impl(socket).reactor_data_;
    return is_watched(state) && !may_read(state) && !hung_up(state);
}

ssize_t recv_now(Socket& socket, asio::mutable_buffer buffer) {
    auto& socket_impl = impl(socket);
    const ssize_t got = ::recv(socket_impl.socket_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (got > 0) {
        if (static_cast<std::size_t>(got) < buffer.size()) { note_drained(socket_impl.reactor_data_, false); }
    } else if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        const int saved = errno;
        note_drained(socket_impl.reactor_data_, true);
        errno = saved;
    }
    return got;
}

bool peek_quiet(Socket& socket) {
    auto& socket_impl = impl(socket);
    char byte = 0;
    if (::recv(socket_impl.socket_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        note_drained(socket_impl.reactor_data_, true);
        return true;
    }
    return false;
}

void settle(Socket& socket) {
    State* state = impl(socket).reactor_data_;
    if (!is_watched(state) || !may_read(state) || hung_up(state)) { return; }
    peek_quiet(socket);
}

namespace detail {

Place place(Socket& socket) {
    auto& socket_impl = impl(socket);
    State* state = socket_impl.reactor_data_;
    Reactor* reactor = state != nullptr ? state->*member(ReactorOf{})
                                        : &asio::use_service<Reactor>(asio::query(socket.get_executor(), asio::execution::context));
    return Place{reactor, &socket_impl.reactor_data_, socket_impl.socket_};
}

void CancelWait::operator()(asio::cancellation_type type) {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial | asio::cancellation_type::total)) !=
        asio::cancellation_type::none) {
        place_.reactor->cancel_ops_by_key(place_.fd, *place_.data, Reactor::read_op, this);
    }
}

// Speculative: if the note is set the wait completes at once without a syscall (the reactor "performs"
// it); if not, it joins the socket's read queue, and the next edge completes it. Asio's own async_wait
// is not speculative: it always queues, and re-arms the descriptor (EPOLL_CTL_MOD) so as not to miss
// bytes that came before it.
void start_wait(const Place& place, asio::detail::reactor_op* op, bool is_continuation) {
    place.reactor->start_op(Reactor::read_op, place.fd, *place.data, op, is_continuation, true);
}

}  // namespace detail

}  // namespace drover::proxy::readiness
