#include "proxy/load_balancer/round_robin.hpp"

#include <algorithm>
#include <stdexcept>

namespace drover::proxy {

namespace {
bool excluded(const ChooseContext& context, const discovery::Host* host) {
    return std::find(context.exclude.begin(), context.exclude.end(), host) != context.exclude.end();
}
}  // namespace

const HostEntry* RoundRobin::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (version_ != snapshot.version) {
        version_ = snapshot.version;
        uniform_ = std::all_of(hosts.begin(), hosts.end(),
                               [&](const HostEntry& h) { return h.weight == hosts.front().weight; });
        current_.assign(uniform_ ? 0 : hosts.size(), 0);
        next_ = 0;
    }
    return uniform_ ? choose_uniform(snapshot, context) : choose_weighted(snapshot, context);
}

const HostEntry* RoundRobin::choose_uniform(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::size_t index = next_ % hosts.size();
        next_ = index + 1;
        if (!excluded(context, hosts[index].host.get())) { return &hosts[index]; }
    }
    return nullptr;
}

const HostEntry* RoundRobin::choose_weighted(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    // Each eligible host gains its weight; the leader is chosen and pays back the round's total.
    std::int64_t total = 0;
    std::size_t best = hosts.size();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        if (excluded(context, hosts[i].host.get())) { continue; }
        const auto weight = static_cast<std::int64_t>(hosts[i].weight);
        current_[i] += weight;
        total += weight;
        if (best == hosts.size() || current_[i] > current_[best]) { best = i; }
    }
    if (best == hosts.size()) { return nullptr; }
    current_[best] -= total;
    return &hosts[best];
}

std::unique_ptr<LoadBalancer> make_load_balancer(config::LbPolicy policy) {
    if (policy == config::LbPolicy::round_robin) { return std::make_unique<RoundRobin>(); }
    // The loader refuses the other policies until they are built; reaching here is a bug.
    throw std::invalid_argument("load balancing policy not built yet");
}

}  // namespace drover::proxy
