#pragma once
// A configured listener: its settings (one immutable generation per reload that changed them), what
// its generations share (connection count, counters) and, per worker, an SO_REUSEPORT acceptor whose
// accept loop runs on that worker.

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/router.hpp"
#include "proxy/tls_server.hpp"

namespace drover::proxy {

class AccessLog;
class Worker;
struct ListenerCounters;

// What every generation of one listener shares: the live-connection count its limit is checked
// against, and the per-worker counters (each worker writes only its own; /metrics sums them).
struct ListenerShared {
    explicit ListenerShared(std::size_t workers);
    ~ListenerShared();
    // Touched once per connection, so one cache line shared by the workers is fine.
    std::atomic<std::int64_t> connections_active{0};
    std::vector<std::unique_ptr<ListenerCounters>> per_worker;
    // A reload removed the listener: its HTTP connections close after the request they are serving.
    std::atomic<bool> closed{false};
};

// One generation of a listener's settings. Immutable once published: a reload that changes the
// listener publishes a new one, which connections accepted from then on use; connections already up
// keep the one they started with.
struct ListenerState {
    config::Listener config;
    std::size_t index = 0;   // the listener's slot, stable across reloads (per-worker routes)
    const AccessLog* access_log = nullptr;  // http: null when access logging is off
    std::vector<std::string> template_names;  // http: cluster templates by index (Router::kTemplate targets)
    boost::asio::ip::tcp::endpoint bound;
    std::shared_ptr<const TlsServer> tls;     // TLS listeners: what new connections handshake with
    std::shared_ptr<ListenerShared> shared;

    std::atomic<std::int64_t>& connections_active() const { return shared->connections_active; }
    ListenerCounters& counters(std::size_t worker) const { return *shared->per_worker[worker]; }
};

// Whether acceptors of closed listeners may still be open: their workers close them (Listener::close),
// and a reload that binds the same port again must wait for that. Waits up to `timeout` for them.
bool wait_for_closing_acceptors(std::chrono::milliseconds timeout);

class Listener {
public:
    // Where it sends requests (routes, or a tcp listener's cluster) lives in each worker: a reload
    // replaces it there (Worker::set_routes).
    Listener(std::shared_ptr<ListenerState> state, std::size_t workers);

    // Binds one acceptor per worker on the same address (SO_REUSEPORT: the kernel spreads
    // connections). Port 0 binds the first and reuses the port it got. Throws std::system_error.
    // `exclusive`: the port must be free first. SO_REUSEPORT would otherwise let this bind join the
    // listening sockets of another process of the same user (a second Drover), and the kernel would
    // split the connections between the two. Not exclusive: a listener of this process still holds
    // the address (a reload replacing it), and the two overlap until the old one closes.
    void bind(std::vector<Worker*> workers, bool exclusive = true);
    // Starts the accept loops (call on the control thread before the workers run or via post).
    void start();
    // Closes the acceptors: new connections are refused from now on. Thread-safe (posts). The Listener
    // may be destroyed right after: what the workers still do with its acceptors keeps them alive.
    void close();

    // The current generation. Control loop only (which is the only one to replace it).
    ListenerState& state() { return *slot_->current.load(std::memory_order_acquire); }
    const ListenerState& state() const { return *slot_->current.load(std::memory_order_acquire); }
    // A reload's new settings for the same socket: a new generation built from the current one with
    // `config` and `tls` (index, bound address, access log and counters carry over).
    void update(config::Listener config, std::shared_ptr<const TlsServer> tls);

    struct Slot {
        std::atomic<std::shared_ptr<ListenerState>> current;
    };

private:
    struct PerWorker {
        Worker* worker;
        std::shared_ptr<boost::asio::ip::tcp::acceptor> acceptor;   // and its accept loop's
    };

    std::shared_ptr<Slot> slot_;   // shared with the accept loops
    std::vector<PerWorker> acceptors_;
};

}  // namespace drover::proxy
