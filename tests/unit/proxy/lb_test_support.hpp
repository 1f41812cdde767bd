#pragma once
// Snapshots and pick statistics shared by the load-balancing policy tests.

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"

namespace drover::proxy::testing {

// Hosts 10.0.<i/256>.<i%256>:80 with the given weights.
inline ClusterSnapshot make_snapshot(const std::vector<std::uint32_t>& weights, std::uint64_t version = 1) {
    ClusterSnapshot s;
    s.version = version;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const auto address = boost::asio::ip::make_address_v4(static_cast<std::uint32_t>(0x0a000000 + i));
        auto host = std::make_shared<const discovery::Host>(boost::asio::ip::tcp::endpoint(address, 80));
        s.hosts.push_back({host, weights[i]});
    }
    return s;
}

inline std::vector<std::uint32_t> uniform(std::size_t hosts) { return std::vector<std::uint32_t>(hosts, 1); }

inline std::size_t index_of(const ClusterSnapshot& s, const HostEntry* e) {
    return static_cast<std::size_t>(e - s.hosts.data());
}

// How often each host was chosen in `picks` picks (every pick must find a host).
inline std::vector<int> count_picks(LoadBalancer& lb, const ClusterSnapshot& s, int picks,
                                    const ChooseContext& context = {}) {
    std::vector<int> counts(s.hosts.size(), 0);
    for (int i = 0; i < picks; ++i) {
        const HostEntry* e = lb.choose(s, context);
        if (e == nullptr) { return {}; }
        ++counts[index_of(s, e)];
    }
    return counts;
}

inline std::vector<const discovery::Host*> hosts_at(const ClusterSnapshot& s, std::initializer_list<std::size_t> at) {
    std::vector<const discovery::Host*> out;
    for (const auto i : at) { out.push_back(s.hosts[i].host.get()); }
    return out;
}

}  // namespace drover::proxy::testing
