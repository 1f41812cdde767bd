#pragma once
// A configured listener: its shared state (bound address, the live-connection count its limit is
// checked against) and, per worker, an SO_REUSEPORT acceptor whose accept loop runs on that worker.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
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

struct ListenerState {
    config::Listener config;
    std::size_t index = 0;
    const AccessLog* access_log = nullptr;  // http: null when access logging is off
    std::vector<std::string> template_names;  // http: cluster templates by index (Router::kTemplate targets)
    boost::asio::ip::tcp::endpoint bound;
    // TLS listeners: what new connections handshake with; a reload that changes the certificates
    // swaps it (connections already up keep theirs).
    std::atomic<std::shared_ptr<const TlsServer>> tls;
    // Shared by every worker: touched once per connection, so one cache line is fine.
    std::atomic<std::int64_t> connections_active{0};
};

class Listener {
public:
    // Where it sends requests (routes, or a tcp listener's cluster) lives in each worker: a reload
    // replaces it there (Worker::set_routes).
    Listener(config::Listener config, std::size_t index);

    // Binds one acceptor per worker on the same address (SO_REUSEPORT: the kernel spreads
    // connections). Port 0 binds the first and reuses the port it got. Throws std::system_error.
    void bind(std::vector<Worker*> workers);
    // Starts the accept loops (call on the control thread before the workers run or via post).
    void start();
    // Closes the acceptors: new connections are refused from now on. Thread-safe (posts).
    void close();

    ListenerState& state() { return *state_; }
    const ListenerState& state() const { return *state_; }

private:
    struct PerWorker {
        Worker* worker;
        std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
    };

    std::shared_ptr<ListenerState> state_;
    std::vector<PerWorker> acceptors_;
};

}  // namespace drover::proxy
