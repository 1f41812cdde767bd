#pragma once
// Socket options of upstream connections. TCP keepalive and TCP_USER_TIMEOUT make a host that vanished
// without a word (powered off, cable cut, partitioned) visible in about 25 s on an idle pooled or
// relayed connection, and bound how long unacknowledged data may wait, instead of the kernel's defaults
// of two hours and about 15 minutes.

#include <boost/asio/ip/tcp.hpp>

namespace drover::proxy {

void configure_upstream(boost::asio::ip::tcp::socket& socket);

}  // namespace drover::proxy
