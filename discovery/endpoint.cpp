#include "discovery/endpoint.hpp"

#include <algorithm>
#include <tuple>

namespace drover::discovery {

std::string to_string(const boost::asio::ip::tcp::endpoint& address) {
    const auto ip = address.address();
    const std::string host = ip.to_string();
    return (ip.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(address.port());
}

void sort_endpoints(EndpointSet& endpoints) {
    std::sort(endpoints.begin(), endpoints.end(), [](const Endpoint& a, const Endpoint& b) {
        return std::tie(a.address, a.priority, a.weight) < std::tie(b.address, b.priority, b.weight);
    });
}

}  // namespace drover::discovery
