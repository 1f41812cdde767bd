#pragma once
// The seam for load-balancing policies. A policy chooses a host from the snapshot it is handed and
// nothing else; it may keep per-worker state (one instance per worker per cluster, never shared), and
// must reset that state when the snapshot version changes.

#include <cstdint>
#include <memory>
#include <span>

#include "config/config.hpp"
#include "proxy/cluster.hpp"

namespace drover::proxy {

struct ChooseContext {
    // Hosts already tried for this request or connection: a retry goes to a different host.
    std::span<const discovery::Host* const> exclude;
};

class LoadBalancer {
public:
    virtual ~LoadBalancer() = default;
    // nullptr when no eligible host remains.
    virtual const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) = 0;
};

std::unique_ptr<LoadBalancer> make_load_balancer(config::LbPolicy policy);

}  // namespace drover::proxy
