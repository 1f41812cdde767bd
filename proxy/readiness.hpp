#pragma once
// Which of a worker's plain sockets have bytes to read, known without trying a read.
//
// Asio's epoll reactor learns a socket is readable only by trying: a read it starts first calls
// recv() and waits only after EAGAIN, and a wait for readability re-arms the descriptor with
// EPOLL_CTL_MOD. Either costs a syscall every time a connection waits (for its client's next request,
// for its backend's response), and the pool checked each idle connection with recv(MSG_PEEK): three
// syscalls of a keep-alive request's seven where HAProxy makes none (benchmarks/profile).
//
// Readiness keeps an epoll instance of its own, nested in the worker's reactor, and watches plain
// sockets on it edge-triggered, for their whole life. One harvest per loop turn (an epoll_wait on the
// nested instance) covers every socket with news. A socket's Watch tells:
//   - seen: an edge came (bytes, or the peer's FIN or reset) since the last before_read();
//   - drained: the last read the owner reported (after_read) got fewer bytes than it asked for, so
//     the socket was empty then, and whatever comes later brings an edge.
//   - hung up: a harvest found the peer's FIN (or a reset) already in. A read that takes the last bytes
//     before a FIN returns short, but the FIN brings no later edge: such a socket is never quiet again.
// quiet() (drained, nothing seen, not hung up) means a read would find nothing: wait with
// async_wait() instead.
// Anything else ("don't know") falls back to an ordinary read or wait, so a read the owner does not
// report costs at most a syscall; it never loses a wake-up.
//
// Everything here runs on the worker's thread. Pending waits are not work to the io_context: they do
// not keep its run() going (a worker's inbox does).

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace drover::proxy {

class Readiness {
public:
    using Waiter = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    // A socket's place in the table; moves with the socket, and forgets it when destroyed (the socket
    // stays registered until it closes; its edges are ignored).
    class Watch {
    public:
        Watch() = default;
        Watch(Watch&& other) noexcept;
        Watch& operator=(Watch&& other) noexcept;
        ~Watch();

        explicit operator bool() const { return owner_ != nullptr; }
        // Around each read of the socket the owner wants counted: before_read() forgets the edges
        // seen so far; after_read() records whether the read drained the socket.
        void before_read();
        void after_read(std::size_t got, std::size_t asked);
        bool seen() const;
        bool quiet() const;

    private:
        friend class Readiness;
        Watch(Readiness* owner, std::uint32_t index) : owner_(owner), index_(index) {}
        void release();

        Readiness* owner_ = nullptr;
        std::uint32_t index_ = 0;
    };

    Readiness();
    ~Readiness();
    Readiness(const Readiness&) = delete;
    Readiness& operator=(const Readiness&) = delete;

    // Opens the epoll instance and starts waiting on it (before the loop runs).
    void start(boost::asio::io_context& context);
    // Destroys the waits still pending, without running them, and closes the epoll instance. Before the
    // context goes: a pending wait may own a coroutine whose frame holds the context's sockets.
    void stop();

    // Watches `fd` (a connected, plain socket) from now on. A new watch counts as drained: adding a
    // socket that already has bytes reports them as an edge. Empty (never quiet) if it cannot be added.
    Watch watch(int fd);

    // Completes at the watched socket's next edge, or with operation_aborted when cancelled (cancel(),
    // the token's cancellation slot, or the watch's end). Start it only while the watch is quiet(),
    // and at most one per watch.
    template <class Token>
    auto async_wait(Watch& watch, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this, &watch](auto handler) {
                const Ticket ticket = begin_wait(watch.index_);
                auto& waiter = slots_[ticket.index].waiter.emplace(std::move(handler));
                // The type-erased handler forwards the token's cancellation to a slot of its own.
                auto slot = waiter.get_cancellation_slot();
                if (slot.is_connected()) {
                    slot.assign([this, ticket](boost::asio::cancellation_type) { cancel_wait(ticket); });
                }
            },
            token);
    }
    // Ends the watch's pending wait, if any, with operation_aborted (its socket is closing).
    void cancel(Watch& watch);

    std::size_t watched() const { return slots_.size() - free_.size(); }

private:
    struct Slot {
        std::uint32_t generation = 0;   // of the watch using it; events carry it, so stale ones are told
        std::uint32_t wait = 0;         // the current wait's number, for its cancellation handler
        bool live = false;
        bool seen = false;
        bool hung_up = false;   // the peer's FIN or a reset showed: stays
        bool drained = false;
        std::optional<Waiter> waiter;
    };
    struct Ticket {
        std::uint32_t index;
        std::uint32_t generation;
        std::uint32_t wait;
    };

    Ticket begin_wait(std::uint32_t index);
    void cancel_wait(Ticket ticket);
    void abort_wait(Slot& slot);
    void release(std::uint32_t index);
    friend struct ReadinessHarvest;
    void on_edge();
    void harvest();
    void run_woken();

    struct Registration;   // the nested instance's place in the reactor (readiness.cpp)

    boost::asio::io_context* context_ = nullptr;
    int epoll_fd_ = -1;
    std::unique_ptr<Registration> registration_;
    std::vector<Slot> slots_;
    std::vector<std::uint32_t> free_;
    std::vector<Waiter> woken_;     // harvested waits, run once the table is up to date
    std::vector<Waiter> running_;   // run_woken()'s batch
};

}  // namespace drover::proxy
