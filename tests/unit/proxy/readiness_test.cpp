#include "proxy/readiness.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <deque>
#include <optional>
#include <string_view>

namespace drover::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;

// Real TCP connections on loopback: `near` is the side watched, `far` the peer that writes to it.
struct Pair {
    tcp::socket near;
    tcp::socket far;
};

class ReadinessTest : public ::testing::Test {
protected:
    void SetUp() override { readiness_.start(context_); }
    void TearDown() override { readiness_.stop(); }

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

    // Starts a wait on `watch`; its outcome lands in the returned slot (the fixture keeps it).
    std::optional<error_code>& start_wait(Readiness::Watch& watch) {
        auto& result = results_.emplace_back();
        readiness_.async_wait(watch, [&result](error_code ec) { result = ec; });
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

    // Reads what is there, reporting the read to `watch`; returns the bytes read.
    static std::size_t read(tcp::socket& socket, Readiness::Watch& watch, std::size_t asked = 4096) {
        std::string buffer(asked, '\0');
        watch.before_read();
        const ssize_t got = ::recv(socket.native_handle(), buffer.data(), asked, MSG_DONTWAIT);
        const std::size_t n = got > 0 ? static_cast<std::size_t>(got) : 0;
        watch.after_read(n, asked);
        return n;
    }

    asio::io_context context_;
    // Readiness's waits are not work to the context (on a worker, its inbox keeps the loop going).
    asio::executor_work_guard<asio::io_context::executor_type> work_{context_.get_executor()};
    std::deque<std::optional<error_code>> results_;   // start_wait's: stable addresses
    Readiness readiness_;
};

TEST_F(ReadinessTest, AWaitOnAQuietSocketEndsAtItsFirstBytes) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    ASSERT_TRUE(watch);
    EXPECT_EQ(readiness_.watched(), 1u);
    EXPECT_TRUE(watch.quiet());
    auto& result = start_wait(watch);
    settle();
    EXPECT_FALSE(result) << "woken with nothing to read";
    send(pair.far, "hello");
    EXPECT_TRUE(woken(result));
    EXPECT_TRUE(watch.seen());
    EXPECT_FALSE(watch.quiet());
}

// A watch starts out drained: bytes that are already in when the socket is added show as an edge.
TEST_F(ReadinessTest, BytesInBeforeTheWatchWakeTheFirstWait) {
    auto pair = connect();
    send(pair.far, "early");
    settle();
    auto watch = readiness_.watch(pair.near.native_handle());
    auto& result = start_wait(watch);
    EXPECT_TRUE(woken(result));
}

TEST_F(ReadinessTest, AShortReadDrainsTheSocketAFullOneDoesNot) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    send(pair.far, "0123456789");
    ASSERT_TRUE(run_until([&] { return watch.seen(); }));
    EXPECT_EQ(read(pair.near, watch), 10u);
    EXPECT_TRUE(watch.quiet()) << "a read that got less than it asked for left nothing behind";

    send(pair.far, "0123456789");
    ASSERT_TRUE(run_until([&] { return watch.seen(); }));
    EXPECT_EQ(read(pair.near, watch, 4), 4u);
    EXPECT_FALSE(watch.quiet()) << "a full read may have left bytes behind";
    EXPECT_EQ(read(pair.near, watch), 6u);
    EXPECT_TRUE(watch.quiet());

    // The next bytes come as an edge after the drain.
    auto& result = start_wait(watch);
    send(pair.far, "more");
    EXPECT_TRUE(woken(result));
}

// The peer's FIN right behind its last bytes: the read that takes them returns short, yet a read
// would still find the end of file, and no edge is coming to say so.
TEST_F(ReadinessTest, AFinThatCameWithTheLastBytesIsNeverQuiet) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    send(pair.far, "last");
    pair.far.shutdown(tcp::socket::shutdown_send);
    settle();
    ASSERT_TRUE(watch.seen());
    EXPECT_EQ(read(pair.near, watch), 4u);
    EXPECT_FALSE(watch.quiet());
}

TEST_F(ReadinessTest, CancelEndsTheWaitWithOperationAborted) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    auto& result = start_wait(watch);
    readiness_.cancel(watch);
    EXPECT_FALSE(result) << "completed inside cancel()";
    EXPECT_TRUE(aborted(result));
    // Bytes after the cancel wake nothing twice.
    send(pair.far, "late");
    settle();
}

TEST_F(ReadinessTest, TheTokensCancellationSlotEndsTheWait) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    asio::cancellation_signal signal;
    std::optional<error_code> result;
    readiness_.async_wait(watch, asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    settle();
    signal.emit(asio::cancellation_type::terminal);
    EXPECT_TRUE(aborted(result));
    // A stale emit, after the wait ended and another began, leaves the new one alone.
    auto& second = start_wait(watch);
    signal.emit(asio::cancellation_type::terminal);
    settle();
    EXPECT_FALSE(second);
    send(pair.far, "x");
    EXPECT_TRUE(woken(second));
}

TEST_F(ReadinessTest, ForgettingAWatchEndsItsWait) {
    auto pair = connect();
    auto watch = std::make_unique<Readiness::Watch>(readiness_.watch(pair.near.native_handle()));
    auto& result = start_wait(*watch);
    watch.reset();
    EXPECT_EQ(readiness_.watched(), 0u);
    EXPECT_TRUE(aborted(result));
}

// A slot freed by one socket's watch and taken by another's: the first socket stays registered (it
// is still open) but its edges carry the old generation and wake nothing.
TEST_F(ReadinessTest, AReusedSlotIgnoresItsFormerSocket) {
    auto first = connect();
    auto second = connect();
    { auto forgotten = readiness_.watch(first.near.native_handle()); }
    auto watch = readiness_.watch(second.near.native_handle());
    auto& result = start_wait(watch);
    send(first.far, "not yours");
    settle();
    EXPECT_FALSE(result);
    EXPECT_FALSE(watch.seen());
    send(second.far, "yours");
    EXPECT_TRUE(woken(result));
}

// Watching a socket again after its watch was forgotten (it is still in the epoll set).
TEST_F(ReadinessTest, ASocketCanBeWatchedAgain) {
    auto pair = connect();
    { auto forgotten = readiness_.watch(pair.near.native_handle()); }
    auto watch = readiness_.watch(pair.near.native_handle());
    ASSERT_TRUE(watch);
    auto& result = start_wait(watch);
    send(pair.far, "again");
    EXPECT_TRUE(woken(result));
}

TEST_F(ReadinessTest, WatchingWhatIsNotASocketGivesAnEmptyWatch) {
    auto watch = readiness_.watch(-1);
    EXPECT_FALSE(watch);
    EXPECT_FALSE(watch.quiet()) << "an empty watch must send its owner to an ordinary read";
    EXPECT_EQ(readiness_.watched(), 0u);
}

// stop() (the worker going away) destroys pending waits without running them.
TEST_F(ReadinessTest, StopDestroysPendingWaitsUnrun) {
    auto pair = connect();
    auto watch = readiness_.watch(pair.near.native_handle());
    auto owned = std::make_shared<int>(0);
    std::weak_ptr<int> alive = owned;
    bool ran = false;
    readiness_.async_wait(watch, [&ran, owned = std::move(owned)](error_code) { ran = true; });
    readiness_.stop();
    EXPECT_TRUE(alive.expired());
    settle();
    EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace drover::proxy
