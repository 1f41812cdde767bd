#pragma once
// Byte relay between two connected sockets (or streams, TLS ones included), both ways: used by TCP sessions and by HTTP upgrades
// (WebSocket) once the backend agreed. Half-close passes through; an error in either direction, or
// `idle` with no byte either way, closes both. Idle sockets hold no buffer (see BufferPool).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

#include "proxy/buffer_pool.hpp"
#include "proxy/deadline_queue.hpp"
#include "proxy/pipe.hpp"
#include "proxy/stream.hpp"

namespace drover::proxy {

struct RelayCounters {
    std::atomic<std::uint64_t>& client_to_upstream;
    std::atomic<std::uint64_t>& upstream_to_client;
};

// A relay between two sockets made of plain completion handlers, no coroutine: an idle connection
// costs two pending reads, an entry on the worker's deadline queue and this object. start() returns
// at once. `done` runs once both directions ended and both sockets are closed, from the last of this
// object's handlers, as the last thing it does: `done` may destroy the object (and nothing of it may
// be pending then). It does not post `done`: that was a trip through the scheduler per connection
// (benchmarks/profile/http_keepalive_callgrind.py --case tcp-conn).
class SocketRelay {
public:
    SocketRelay(BufferPool& buffers, DeadlineQueue& deadlines, boost::asio::ip::tcp::socket& a,
                boost::asio::ip::tcp::socket& b, std::chrono::milliseconds idle, RelayCounters counters,
                std::function<void()> done);
    SocketRelay(const SocketRelay&) = delete;
    SocketRelay& operator=(const SocketRelay&) = delete;

    void start();

private:
    using Clock = std::chrono::steady_clock;

    // A direction broke on `ec`; `other` is the socket on the far side from the failure. A reset (or a
    // write into a peer that reset) is passed on to `other` as a reset, then both close.
    void fail(boost::asio::ip::tcp::socket& other, const boost::system::error_code& ec);

    // One direction: reads into a small buffer of its own (an idle direction holds no other), borrows
    // a pooled buffer when that one fills, and writes what it read on. One buffer in flight is the
    // back-pressure: nothing more is read until it is written.
    // A read that fills the whole pooled buffer means a bulk transfer: the direction then moves its
    // bytes with splice(2) through a pipe of its own, socket to socket inside the kernel, no copy
    // through user space (what HAProxy's splice-auto does). Small exchanges never pay for the pipe.
    class Direction {
    public:
        // Bytes a direction reads without borrowing a buffer: a small request or response, in one read.
        static constexpr std::size_t kSmallBuffer = 512;

        Direction(SocketRelay& relay, boost::asio::ip::tcp::socket& from, boost::asio::ip::tcp::socket& to,
                  std::atomic<std::uint64_t>& counter)
            : relay_(relay), from_(from), to_(to), counter_(counter) {}
        Direction(const Direction&) = delete;
        Direction& operator=(const Direction&) = delete;
        void start();
        // While a write of this direction waits for room: whether its receiver took bytes since the
        // last look (its send queue changed; the first look after blocking says yes). A receiver that
        // reads slowly keeps a full send buffer, so no read or finished write would show its traffic.
        bool moving();

    private:
        void receive();                                           // into small_, asynchronously
        void write_rest(const char* data, std::size_t n, bool full);   // waits for room, writes on
        void block() { queued_ = kUnknown; blocked_ = true; }
        void unblock() { blocked_ = false; }
        void read();                                              // into a pooled buffer, at once
        void forward(const char* data, std::size_t n, bool full); // writes what was read on
        void written(bool full);   // the last read is out: `full` (it filled its buffer) reads on at once
        void ended(const boost::system::error_code& ec);          // EOF, error or cancelled
        bool start_splicing();   // false: no pipe to be had (descriptor limits): keep copying
        void splice_in();        // socket -> pipe
        void splice_out();       // pipe -> socket, then splice_in again
        void pass_fin();
        void finish();

        SocketRelay& relay_;
        boost::asio::ip::tcp::socket& from_;
        boost::asio::ip::tcp::socket& to_;
        std::atomic<std::uint64_t>& counter_;
        BufferPool::Lease buffer_{nullptr, BufferPool::Return{nullptr}};
        Pipe pipe_;                 // splice mode
        std::array<char, kSmallBuffer> small_;
        std::size_t in_pipe_ = 0;   // bytes spliced in and not yet out
        static constexpr int kUnknown = -1;
        int queued_ = kUnknown;     // the receiver's send queue at the last look (moving())
        bool blocked_ = false;      // a write waits for room
    };

    // Bytes moved: the idle deadline starts again. A list move on the worker's deadline queue, where a
    // timer of the relay's own cost a timer set, cancel and cancelled handler per connection.
    void touch() {
        if (resetting_ == nullptr) { deadlines_.schedule(idle_deadline_, idle_); }
    }
    void close_both();   // while a reset waits (resetting_): the other socket only
    void direction_finished();
    void end();
    void reset_wait_over();

    struct IdleDeadline final : DeadlineQueue::Entry {
        explicit IdleDeadline(SocketRelay& r) : relay(r) {}
        // No read, and no write finished, for `idle`: unless a blocked write's receiver is still taking
        // bytes, both directions end, then `done`. While a reset waits (fail()), the next look at it.
        void expired() override {
            if (relay.resetting_ != nullptr) {
                relay.reset_wait_over();
                return;
            }
            if (relay.up_.moving() | relay.down_.moving()) {   // both looked at: each keeps its mark
                relay.touch();
                return;
            }
            relay.close_both();
        }
        SocketRelay& relay;
    };

    BufferPool& buffers_;
    DeadlineQueue& deadlines_;
    boost::asio::ip::tcp::socket& a_;
    boost::asio::ip::tcp::socket& b_;
    std::chrono::milliseconds idle_;
    IdleDeadline idle_deadline_{*this};   // unscheduled when done or destroyed
    std::function<void()> done_;
    boost::asio::ip::tcp::socket* resetting_ = nullptr;   // gets a reset once its send queue is out
    Clock::time_point reset_by_{};                         // ... or closes normally at this time
    int running_ = 2;
    Direction up_;
    Direction down_;
};

boost::asio::awaitable<void> relay(BufferPool& buffers, DeadlineQueue& deadlines, boost::asio::ip::tcp::socket& client,
                                   boost::asio::ip::tcp::socket& upstream, std::chrono::milliseconds idle,
                                   RelayCounters counters);

// The same between two streams, either of them TLS (two plain ones take the socket path above).
boost::asio::awaitable<void> relay(BufferPool& buffers, DeadlineQueue& deadlines, Stream& client, Stream& upstream, std::chrono::milliseconds idle,
                                   RelayCounters counters);

}  // namespace drover::proxy
