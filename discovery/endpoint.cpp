#include "discovery/endpoint.hpp"

namespace drover::discovery {

std::string to_string(const boost::asio::ip::tcp::endpoint& address) {
    const auto ip = address.address();
    const std::string host = ip.to_string();
    return (ip.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(address.port());
}

}  // namespace drover::discovery
