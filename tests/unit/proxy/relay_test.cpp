#include "proxy/relay.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <utility>

namespace drover::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// A connected pair of loopback TCP sockets: {connecting side, accepted side}. `receive_buffer` (bytes,
// 0: the kernel's default) is set on the listener, so the accepted side has it from its first byte.
std::pair<tcp::socket, tcp::socket> connected_pair(asio::io_context& io, int receive_buffer = 0) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    if (receive_buffer > 0) { acceptor.set_option(asio::socket_base::receive_buffer_size(receive_buffer)); }
    tcp::socket connecting(io);
    connecting.connect(acceptor.local_endpoint());
    tcp::socket accepted = acceptor.accept();
    return {std::move(connecting), std::move(accepted)};
}

// Small pieces (under the relay's own read buffer) are written on at once while the receiver has room;
// once it stops reading, the rest of a piece waits for an asynchronous write, the sender is held back,
// and what piles up meanwhile goes through pooled buffers and splice. None of it may be lost, doubled
// or reordered, and the sender's EOF must arrive after the last byte.
TEST(SocketRelay, BytesStayWholeAndInOrderWhenTheReceiverStopsReading) {
    asio::io_context io;
    auto [writer, a] = connected_pair(io);
    auto [b, reader] = connected_pair(io, 4096);
    b.set_option(asio::socket_base::send_buffer_size(4096));

    BufferPool buffers;
    DeadlineQueue deadlines(io);
    std::atomic<std::uint64_t> a_to_b{0};
    std::atomic<std::uint64_t> b_to_a{0};
    std::atomic<bool> done{false};
    SocketRelay relay(buffers, deadlines, a, b, std::chrono::seconds(30), RelayCounters{a_to_b, b_to_a}, [&] { done = true; });
    relay.start();
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });

    // The test's own sockets are used by this thread only; the relay's by the loop's.
    std::mt19937 random(7);
    std::string sent;
    for (int i = 0; i < 2000; ++i) {
        std::string piece(300, '\0');
        for (auto& c : piece) { c = static_cast<char>(random()); }
        asio::write(writer, asio::buffer(piece));
        sent += piece;
        if (i % 50 == 0) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }   // small reads, mostly
    }
    writer.shutdown(tcp::socket::shutdown_send);

    std::string received;
    boost::system::error_code ec;
    std::array<char, 8192> chunk;
    while (!ec) {
        const std::size_t n = reader.read_some(asio::buffer(chunk), ec);
        received.append(chunk.data(), n);
    }
    EXPECT_EQ(ec, asio::error::eof);
    EXPECT_EQ(received.size(), sent.size());
    EXPECT_TRUE(received == sent) << "bytes lost, doubled or reordered";
    EXPECT_EQ(a_to_b.load(), sent.size());

    reader.close();   // the relay's other direction ends: the relay finishes
    for (int i = 0; i < 500 && !done; ++i) { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }
    EXPECT_TRUE(done) << "the relay did not finish after both sides closed";
    work.reset();
    io.stop();
    loop.join();
}

}  // namespace
}  // namespace drover::proxy
