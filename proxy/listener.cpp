#include "proxy/listener.hpp"

#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <thread>

#include "config/log.hpp"
#include "proxy/http_session.hpp"
#include "proxy/pressure.hpp"
#include "proxy/spawn.hpp"
#include "proxy/tcp_session.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);   // after EMFILE/ENFILE/ENOBUFS

// Accepts on one worker's acceptor and hands each connection to its session, until the acceptor
// closes. Handler-based: each accept's handler owns the loop (no coroutine to resume per connection,
// benchmarks/profile/http_keepalive_callgrind.py --case tcp-conn).
// A connection accepted on `worker`: admitted (memory, descriptors, max_connections) and handed to a
// session under the listener generation current now (a reload may have published new settings).
void admit(Worker& worker, Listener::Slot& slot, ListenerCounters& counters, tcp::socket socket) {
    auto listener = slot.current.load(std::memory_order_acquire);
    bump(counters.accepted);
    if (g_pressure.memory.load(std::memory_order_relaxed)) {
        bump(counters.rejected_memory);
        return;   // the socket closes
    }
    if (socket.native_handle() >= descriptor_ceiling()) {
        // Refuse new work near the descriptor limit instead of failing the work already admitted.
        bump(counters.rejected_fd_limit);
        return;
    }
    const auto max_connections = static_cast<std::int64_t>(listener->config.limits.max_connections);
    if (listener->connections_active().fetch_add(1, std::memory_order_relaxed) >= max_connections) {
        listener->connections_active().fetch_sub(1, std::memory_order_relaxed);
        bump(counters.rejected_max_connections);
        return;
    }
    if (listener->config.protocol == config::Protocol::http) {
        accept_http(worker, std::move(listener), std::move(socket));
    } else {
        accept_tcp(worker, std::move(listener), std::move(socket));
    }
}

class AcceptLoop {
public:
    AcceptLoop(Worker& worker, std::shared_ptr<Listener::Slot> slot, std::shared_ptr<tcp::acceptor> acceptor)
        : worker_(worker),
          slot_(std::move(slot)),
          acceptor_(std::move(acceptor)),
          counters_(slot_->current.load()->counters(worker.index())),
          pause_(worker.context()),
          next_(worker.new_socket()) {}

    static void accept(std::unique_ptr<AcceptLoop> loop) {
        auto& acceptor = *loop->acceptor_;
        auto& next = loop->next_;
        acceptor.async_accept(next, [loop = std::move(loop)](boost::system::error_code ec) mutable {
            auto& self = *loop;
            tcp::socket socket = std::move(self.next_);   // leaves next_ closed, ready for the next one
            if (ec) {
                if (ec == asio::error::operation_aborted || !self.acceptor_->is_open()) { return; }
                // Out of descriptors or buffers: back off instead of spinning on a full accept queue.
                log::warn("listener {}: accept failed: {}", self.slot_->current.load()->config.name, ec.message());
                self.pause_.expires_after(kAcceptBackoff);
                self.pause_.async_wait([loop = std::move(loop)](boost::system::error_code) mutable { accept(std::move(loop)); });
                return;
            }
            try {
                admit(self.worker_, *self.slot_, self.counters_, std::move(socket));
            } catch (const std::exception& e) {
                // The connection is lost (its socket closed with it); the listener keeps accepting.
                g_escaped_exceptions.fetch_add(1, std::memory_order_relaxed);
                log::error("listener {}: unexpected exception: {}", self.slot_->current.load()->config.name, e.what());
            }
            accept(std::move(loop));
        });
    }

private:
    Worker& worker_;
    std::shared_ptr<Listener::Slot> slot_;
    // Shared with its Listener, which a reload may drop while this loop unwinds (or waits out a backoff).
    std::shared_ptr<tcp::acceptor> acceptor_;
    ListenerCounters& counters_;
    asio::steady_timer pause_;
    tcp::socket next_;   // the socket the pending accept fills
};

}  // namespace

namespace {
// Acceptors Listener::close has posted to their workers and that are not closed yet.
std::atomic<std::int64_t> g_closing_acceptors{0};
}  // namespace

bool wait_for_closing_acceptors(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (g_closing_acceptors.load() > 0) {
        if (std::chrono::steady_clock::now() >= until) { return false; }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

ListenerShared::ListenerShared(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) { per_worker.push_back(std::make_unique<ListenerCounters>()); }
}
ListenerShared::~ListenerShared() = default;

Listener::Listener(std::shared_ptr<ListenerState> state, std::size_t workers) : slot_(std::make_shared<Slot>()) {
    if (!state->shared) { state->shared = std::make_shared<ListenerShared>(workers); }
    slot_->current.store(std::move(state));
}

void Listener::update(config::Listener config, std::shared_ptr<const TlsServer> tls) {
    auto next = std::make_shared<ListenerState>();
    const auto& current = state();
    next->config = std::move(config);
    next->index = current.index;
    next->access_log = current.access_log;
    next->template_names = current.template_names;
    next->bound = current.bound;
    next->tls = std::move(tls);
    next->shared = current.shared;
    slot_->current.store(std::move(next), std::memory_order_release);
}

void Listener::bind(std::vector<Worker*> workers, bool exclusive) {
    auto& state_ref = state();
    const auto& address = state_ref.config.address;
    tcp::endpoint endpoint(asio::ip::make_address(address.host), address.port);
    if (exclusive && endpoint.port() != 0 && !workers.empty()) {
        // A socket without SO_REUSEPORT cannot bind where anyone listens: then the port is taken.
        tcp::acceptor probe(workers.front()->context());
        probe.open(endpoint.protocol());
        probe.set_option(asio::socket_base::reuse_address(true));   // TIME_WAIT left by the last run is no owner
        if (endpoint.protocol() == tcp::v6()) { probe.set_option(asio::ip::v6_only(true)); }
        probe.bind(endpoint);
    }
    for (Worker* worker : workers) {
        auto acceptor = std::make_shared<tcp::acceptor>(worker->context());
        acceptor->open(endpoint.protocol());
        acceptor->set_option(asio::socket_base::reuse_address(true));
        const int one = 1;
        if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
        }
        if (endpoint.protocol() == tcp::v6()) { acceptor->set_option(asio::ip::v6_only(true)); }
        // Accepted sockets inherit it (Linux copies the listener's TCP settings): a setsockopt per
        // connection less.
        acceptor->set_option(tcp::no_delay(true));
        acceptor->bind(endpoint);
        acceptor->listen(asio::socket_base::max_listen_connections);
        // Port 0: the first acceptor picks a port, the others join it.
        endpoint = acceptor->local_endpoint();
        acceptors_.push_back({worker, std::move(acceptor)});
    }
    state_ref.bound = endpoint;
}

void Listener::start() {
    for (auto& a : acceptors_) {
        a.worker->post([worker = a.worker, slot = slot_, acceptor = a.acceptor] {
            AcceptLoop::accept(std::make_unique<AcceptLoop>(*worker, slot, acceptor));
        });
    }
}

void Listener::close() {
    const auto shared = state().shared;
    shared->closed.store(true, std::memory_order_relaxed);
    for (auto& a : acceptors_) {
        g_closing_acceptors.fetch_add(1);
        a.worker->post([acceptor = a.acceptor, worker = a.worker, shared, slot = slot_] {
            // The connections it has end after their request (idle ones now)...
            worker->close_listener(shared.get());
            // ...and so do those still in its accept queue, taken now: closing a listening socket
            // resets them, and their clients may have sent a request already (the kernel accepted
            // them on the listener's behalf).
            boost::system::error_code ec;
            acceptor->non_blocking(true, ec);
            auto& counters = *shared->per_worker[worker->index()];
            for (tcp::socket socket = worker->new_socket(); !ec;) {
                acceptor->accept(socket, ec);
                if (ec) { break; }
                try {
                    admit(*worker, *slot, counters, std::move(socket));
                } catch (const std::exception& e) {
                    g_escaped_exceptions.fetch_add(1, std::memory_order_relaxed);
                    log::error("listener {}: unexpected exception: {}", slot->current.load()->config.name, e.what());
                }
                socket = worker->new_socket();
            }
            boost::system::error_code ignored;
            acceptor->close(ignored);
            g_closing_acceptors.fetch_sub(1);
        });
    }
}

}  // namespace drover::proxy
