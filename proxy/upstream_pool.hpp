#pragma once
// Idle keep-alive connections to upstream hosts, per worker (never shared across threads).
// A connection goes back only after a response that was read to its end, unambiguously framed, with
// no stray bytes after it. Before lending one out the pool checks it is still quiet (no EOF, no
// unsolicited bytes); idle ones close after their cluster's idle timeout, and each host keeps at most
// kMaxIdlePerHost of them.
// Connections are held by unique_ptr from connect to close: moving a Stream itself allocates a new
// beast::tcp_stream impl (and its timers), which was a large share of each pooled request's cost.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "discovery/host.hpp"
#include "proxy/stream.hpp"

namespace drover::proxy {

class UpstreamPool {
public:
    static constexpr std::size_t kMaxIdlePerHost = 64;

    explicit UpstreamPool(boost::asio::io_context& context);

    // An idle connection to `host` that is still usable and speaks `tls` (null: plain), or nullopt.
    // Connections made with other TLS settings (a reload changed them) are closed on the way.
    // A plain connection left drained by its last response, with no edge since (proxy/readiness.hpp),
    // passes as quiet without a syscall, unless `verify`: then recv(MSG_PEEK) tells, which also catches
    // a close the reactor has not reported yet (for requests that could not simply go again).
    std::unique_ptr<Stream> take(const discovery::Host& host, const health::TlsClient* tls, bool verify = true);
    // Parks a reusable connection until `idle` passes; closes it instead while requests of its cluster
    // wait for room under limits.max_connections (its place goes to them).
    void put(const std::shared_ptr<const discovery::Host>& host, std::unique_ptr<Stream> stream,
             std::chrono::milliseconds idle);
    // Closes the idle connection counted in `budget` that was parked the longest: a request of its
    // cluster needs the place (limits.max_connections) for a connection to another host. False if
    // this pool has none.
    bool close_idle(const ConnectionBudget& budget);
    // Closes the idle connections to a host discovery no longer lists (its in-flight requests finish
    // on the connections they hold).
    void drop(const discovery::Host& host);
    // Closes every idle connection (drain, shutdown).
    void clear();
    std::size_t idle_count() const;

private:
    struct Idle {
        std::unique_ptr<Stream> stream;
        std::chrono::steady_clock::time_point expires;
        IdleMark parked;   // counted idle in the stream's cluster budget until the entry goes
    };
    struct PerHost {
        std::shared_ptr<const discovery::Host> host;   // keeps counters alive while parked
        std::vector<Idle> idle;                         // most recent last: reuse the warmest
        // An entry left empty by take() stays (no erase and re-insert per request); sweep() removes it.
    };

    void sweep();
    void schedule_sweep();

    boost::asio::io_context& context_;
    std::unordered_map<const discovery::Host*, PerHost> hosts_;
    boost::asio::steady_timer sweeper_;
    bool sweep_scheduled_ = false;
};

}  // namespace drover::proxy
