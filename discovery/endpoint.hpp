#pragma once
// What discovery yields: the set of addresses a cluster should send to, each with a weight.
// Resolvers produce EndpointSets; the cluster diffs successive sets into its long-lived hosts.

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace drover::discovery {

struct Endpoint {
    boost::asio::ip::tcp::endpoint address;
    std::uint32_t weight = 1;
    // SRV priority: lower is preferred; 0 for sources without priorities. The best (lowest) group takes
    // the load while healthy; what its unavailable hosts cannot carry spills to the next groups
    // (health::select_priority_hosts).
    std::uint32_t priority = 0;

    bool operator==(const Endpoint&) const = default;
};

using EndpointSet = std::vector<Endpoint>;

// Orders a set by address (then priority and weight), so that two answers listing the same endpoints
// in a different order compare equal: DNS servers rotate their records.
void sort_endpoints(EndpointSet& endpoints);

// "127.0.0.1:80" / "[::1]:80": the one spelling used in logs, metrics labels and the admin JSON.
std::string to_string(const boost::asio::ip::tcp::endpoint& address);

}  // namespace drover::discovery
