#include "proxy/socket_options.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace drover::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

int int_option(int fd, int level, int name) {
    int value = -1;
    socklen_t size = sizeof value;
    EXPECT_EQ(::getsockopt(fd, level, name, &value, &size), 0);
    return value;
}

// Listeners set TCP_NODELAY once and accepted connections are not set one by one (proxy/listener.cpp):
// that relies on Linux copying the listener's TCP settings into each accepted socket.
TEST(SocketOptions, AcceptedSocketsInheritTcpNoDelayFromTheListener) {
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    acceptor.set_option(tcp::no_delay(true));
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    tcp::socket accepted = acceptor.accept();
    EXPECT_NE(int_option(accepted.native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
    EXPECT_EQ(int_option(client.native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);   // not set there
}

// Dead-peer detection on upstream connections: keepalive after 10 s idle, probes every 5 s, and a
// user timeout of 25 s that ends the connection (and stands in for the probe count).
TEST(SocketOptions, UpstreamConnectionsDetectDeadPeers) {
    asio::io_context io;
    tcp::socket socket(io);
    socket.open(tcp::v4());
    configure_upstream(socket);
    const int fd = socket.native_handle();
    EXPECT_NE(int_option(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    EXPECT_NE(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE), 10);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 25000);
}

}  // namespace
}  // namespace drover::proxy
