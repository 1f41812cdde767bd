#include "proxy/socket_options.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace drover::proxy {

namespace {
constexpr int kKeepIdleSeconds = 10;
constexpr int kKeepIntervalSeconds = 5;
constexpr int kKeepCount = 3;   // probes, as the user timeout below counts them
constexpr unsigned kUserTimeoutMs = (kKeepIdleSeconds + kKeepIntervalSeconds * kKeepCount) * 1000;
}  // namespace

void configure_upstream(boost::asio::ip::tcp::socket& socket) {
    boost::system::error_code ignored;
    socket.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
    socket.set_option(boost::asio::socket_base::keep_alive(true), ignored);
    const int fd = socket.native_handle();
    // Best effort: a failure leaves the kernel's defaults, which only make dead hosts slower to notice.
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &kKeepIdleSeconds, sizeof kKeepIdleSeconds);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepIntervalSeconds, sizeof kKeepIntervalSeconds);
    // No TCP_KEEPCNT: with TCP_USER_TIMEOUT set, Linux ends a probed connection by that timeout and
    // ignores the probe count (tcp(7)), so it would be a syscall per connection for nothing.
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &kUserTimeoutMs, sizeof kUserTimeoutMs);
}

}  // namespace drover::proxy
