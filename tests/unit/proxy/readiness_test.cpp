#include "proxy/readiness.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace drover::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

// Real TCP connections on loopback: `near` is the side read and waited on, `far` the peer.
struct Pair {
    tcp::socket near;
    tcp::socket far;
};

class ReadinessTest : public ::testing::Test {
protected:
    Pair connect() {
        tcp::acceptor acceptor(context_, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        tcp::socket far(context_);
        far.connect(acceptor.local_endpoint());
        tcp::socket near = acceptor.accept();
        near.non_blocking(true);
        return Pair{std::move(near), std::move(far)};
    }

    // Runs the loop until `done` says so, for at most `limit`; returns `done()`.
    template <class Done>
    bool run_until(Done done, std::chrono::milliseconds limit = 2s) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < until) {
            context_.restart();
            context_.run_one_for(10ms);
        }
        return done();
    }

    void settle() { run_until([] { return false; }, 100ms); }

    // Starts a wait on `socket`; its outcome lands in the returned slot (the fixture keeps it).
    std::optional<error_code>& start_wait(tcp::socket& socket) {
        auto& result = results_.emplace_back();
        readiness::async_wait(socket, [&result](error_code ec) { result = ec; });
        return result;
    }

    // Runs the loop until the wait behind `result` ends; whether it ended without an error.
    bool woken(const std::optional<error_code>& result) {
        return run_until([&] { return result.has_value(); }) && !*result;
    }

    // The same, for a wait that must end cancelled.
    bool aborted(const std::optional<error_code>& result) {
        return run_until([&] { return result.has_value(); }) && *result == asio::error::operation_aborted;
    }

    static void send(tcp::socket& socket, std::string_view bytes) { asio::write(socket, asio::buffer(bytes)); }

    // Reads what is there with recv_now; returns the bytes read (0 for EAGAIN or end of file).
    static std::size_t read(tcp::socket& socket, std::size_t asked = 4096) {
        std::string buffer(asked, '\0');
        const ssize_t got = readiness::recv_now(socket, asio::buffer(buffer));
        return got > 0 ? static_cast<std::size_t>(got) : 0;
    }

    // Waits until the reactor has reported the socket's news (bytes, FIN): a wait then ends at once.
    bool reported(tcp::socket& socket) { return run_until([&] { return !readiness::quiet(socket); }); }

    // A watched connection whose peer sent `last` and then its FIN, both reported by the reactor.
    Pair finished(std::string_view last) {
        auto pair = connect();
        EXPECT_TRUE(readiness::watch(pair.near, true));
        send(pair.far, last);
        pair.far.shutdown(tcp::socket::shutdown_send);
        EXPECT_TRUE(reported(pair.near));
        settle();
        return pair;
    }

    asio::io_context context_;
    // Keeps run_one_for() polling the reactor while nothing is pending: edges are what is watched.
    asio::executor_work_guard<asio::io_context::executor_type> work_{context_.get_executor()};
    std::deque<std::optional<error_code>> results_;   // start_wait's: stable addresses
};

TEST_F(ReadinessTest, AWaitOnADrainedSocketEndsAtItsFirstBytes) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    EXPECT_TRUE(readiness::watched(pair.near));
    EXPECT_TRUE(readiness::quiet(pair.near));
    auto& result = start_wait(pair.near);
    settle();
    EXPECT_FALSE(result) << "woken with nothing to read";
    send(pair.far, "hello");
    EXPECT_TRUE(woken(result));
    EXPECT_FALSE(readiness::quiet(pair.near));
    EXPECT_EQ(read(pair.near), 5u);
}

// Watching counts a socket as drained only because bytes already in are reported afresh.
TEST_F(ReadinessTest, BytesInBeforeTheWatchWakeTheFirstWait) {
    auto pair = connect();
    send(pair.far, "early");
    settle();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    auto& result = start_wait(pair.near);
    EXPECT_TRUE(woken(result));
    EXPECT_EQ(read(pair.near), 5u);
}

// Not known drained (a new watch that is not, or nothing watched): the wait ends at once, without
// waiting for bytes; the read after it tells.
TEST_F(ReadinessTest, AWaitOnASocketNotKnownDrainedEndsAtOnce) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, false));
    EXPECT_FALSE(readiness::quiet(pair.near));
    EXPECT_TRUE(woken(start_wait(pair.near)));
    auto other = connect();
    EXPECT_FALSE(readiness::watched(other.near));
    EXPECT_TRUE(woken(start_wait(other.near)));
}

TEST_F(ReadinessTest, AShortReadDrainsTheSocketAFullOneDoesNot) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    send(pair.far, "0123456789");
    ASSERT_TRUE(reported(pair.near));
    EXPECT_EQ(read(pair.near), 10u);
    EXPECT_TRUE(readiness::quiet(pair.near)) << "a read that got less than it asked for left nothing behind";

    send(pair.far, "0123456789");
    ASSERT_TRUE(reported(pair.near));
    EXPECT_EQ(read(pair.near, 4), 4u);
    EXPECT_FALSE(readiness::quiet(pair.near)) << "a full read may have left bytes behind";
    EXPECT_EQ(read(pair.near), 6u);
    EXPECT_TRUE(readiness::quiet(pair.near));

    // The next bytes come as an edge after the drain.
    auto& result = start_wait(pair.near);
    settle();
    EXPECT_FALSE(result);
    send(pair.far, "more");
    EXPECT_TRUE(woken(result));
}

// EAGAIN says the socket is empty on any socket; a short read says so only on a watched one, where a
// FIN behind the bytes would show.
// A read that filled its buffer exactly leaves the note set with nothing behind it: a wait would end
// at once for nothing (a parked client woke and got a 408; an upstream looked like it had answered).
// settle() and peek_quiet() ask the kernel and correct it; they keep a note that is true.
TEST_F(ReadinessTest, AStaleNoteAfterAFullReadIsCorrectedByAskingTheKernel) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    send(pair.far, "0123456789");
    ASSERT_TRUE(reported(pair.near));
    EXPECT_EQ(read(pair.near, 10), 10u);
    EXPECT_FALSE(readiness::quiet(pair.near)) << "a full read cannot tell that nothing follows";
    readiness::settle(pair.near);
    EXPECT_TRUE(readiness::quiet(pair.near));
    auto& result = start_wait(pair.near);
    settle();
    EXPECT_FALSE(result) << "the wait must last until the next bytes";
    send(pair.far, "x");
    EXPECT_TRUE(woken(result));
    EXPECT_EQ(read(pair.near), 1u);

    // With bytes behind the full read, the note stays: they are there to read.
    send(pair.far, "0123456789");
    ASSERT_TRUE(reported(pair.near));
    EXPECT_EQ(read(pair.near, 5), 5u);
    EXPECT_FALSE(readiness::peek_quiet(pair.near));
    readiness::settle(pair.near);
    EXPECT_FALSE(readiness::quiet(pair.near));
    EXPECT_EQ(read(pair.near, 5), 5u);
    EXPECT_TRUE(readiness::peek_quiet(pair.near));
    EXPECT_TRUE(readiness::quiet(pair.near));
}

TEST_F(ReadinessTest, OnASocketNotWatchedOnlyEagainDrains) {
    auto pair = connect();
    EXPECT_EQ(read(pair.near), 0u);
    auto& result = start_wait(pair.near);
    settle();
    EXPECT_FALSE(result) << "EAGAIN left the socket known drained: the wait is for the next bytes";
    send(pair.far, "abc");
    EXPECT_TRUE(woken(result));
    EXPECT_EQ(read(pair.near), 3u);
    EXPECT_TRUE(woken(start_wait(pair.near))) << "a short read on a socket that does not report FINs drains nothing";
}

// The peer's FIN right behind its last bytes: the read that takes them returns short, yet a read
// would still find the end of file, and no edge is coming to say so.
TEST_F(ReadinessTest, AFinThatCameWithTheLastBytesIsNeverQuiet) {
    auto pair = finished("last");
    EXPECT_EQ(read(pair.near), 4u);
    EXPECT_FALSE(readiness::quiet(pair.near));
    EXPECT_TRUE(woken(start_wait(pair.near)));
    std::string buffer(16, '\0');
    EXPECT_EQ(readiness::recv_now(pair.near, asio::buffer(buffer)), 0) << "end of file";
}

TEST_F(ReadinessTest, AResetIsNeverQuiet) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    pair.far.set_option(asio::socket_base::linger(true, 0));
    pair.far.close();
    ASSERT_TRUE(reported(pair.near));
    EXPECT_TRUE(woken(start_wait(pair.near)));
    std::string buffer(16, '\0');
    EXPECT_LT(readiness::recv_now(pair.near, asio::buffer(buffer)), 0);
    EXPECT_EQ(errno, ECONNRESET);
    EXPECT_FALSE(readiness::quiet(pair.near));
}

TEST_F(ReadinessTest, TheTokensCancellationSlotEndsTheWait) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    asio::cancellation_signal signal;
    std::optional<error_code> result;
    readiness::async_wait(pair.near, asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    settle();
    signal.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(aborted(result));
    // The socket stays drained, and the next wait gets the next bytes.
    auto& second = start_wait(pair.near);
    settle();
    EXPECT_FALSE(second);
    send(pair.far, "x");
    EXPECT_TRUE(woken(second));
}

TEST_F(ReadinessTest, ClosingTheSocketEndsItsWait) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    auto& result = start_wait(pair.near);
    settle();
    pair.near.close();
    EXPECT_TRUE(aborted(result));
}

// What is known lives in the socket's registration: it moves with the socket.
TEST_F(ReadinessTest, AMovedSocketKeepsWhatIsKnown) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    tcp::socket moved = std::move(pair.near);
    EXPECT_TRUE(readiness::watched(moved));
    EXPECT_TRUE(readiness::quiet(moved));
    EXPECT_FALSE(readiness::watched(pair.near));
    EXPECT_FALSE(readiness::quiet(pair.near));
    auto& result = start_wait(moved);
    send(pair.far, "moved");
    EXPECT_TRUE(woken(result));
}

// Asio recycles a closed socket's reactor state: a socket watched after a hung-up one must not inherit
// its FIN.
TEST_F(ReadinessTest, ARecycledStateForgetsItsFormerSocket) {
    for (int round = 0; round < 3; ++round) {
        auto pair = finished("bye");
        EXPECT_FALSE(readiness::quiet(pair.near));
        pair.near.close();
        pair.far.close();
    }
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    EXPECT_TRUE(readiness::quiet(pair.near));
    send(pair.far, "hi");
    ASSERT_TRUE(reported(pair.near));
    EXPECT_EQ(read(pair.near), 2u);
    EXPECT_TRUE(readiness::quiet(pair.near));
}

// Watching takes EPOLLOUT out of the registration (nothing waits to write then); a write that has to
// wait later puts it back.
TEST_F(ReadinessTest, AWriteThatMustWaitStillCompletes) {
    auto pair = connect();
    ASSERT_TRUE(readiness::watch(pair.near, true));
    const std::string chunk(1 << 20, 'x');
    std::size_t written = 0;
    bool done = false;
    asio::async_write(pair.near, asio::buffer(chunk), [&](error_code ec, std::size_t n) {
        EXPECT_FALSE(ec);
        written = n;
        done = true;
    });
    std::string sink(1 << 16, '\0');
    std::size_t drained = 0;
    pair.far.non_blocking(true);
    ASSERT_TRUE(run_until([&] {
        error_code ec;
        drained += pair.far.read_some(asio::buffer(sink), ec);
        return done && drained == chunk.size();
    }, 10s));
    EXPECT_EQ(written, chunk.size());
}

TEST_F(ReadinessTest, AClosedSocketCannotBeWatched) {
    tcp::socket socket(context_);
    EXPECT_FALSE(readiness::watch(socket, true));
    EXPECT_FALSE(readiness::quiet(socket));
    auto& result = start_wait(socket);
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(*result, asio::error::bad_descriptor);
}

}  // namespace
}  // namespace drover::proxy
