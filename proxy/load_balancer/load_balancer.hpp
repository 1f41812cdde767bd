#pragma once
// The seam for load-balancing policies. A policy chooses a host from the snapshot it is handed and
// nothing else; it may keep per-worker state (one instance per worker per cluster, never shared), and
// must reset that state when the snapshot version changes. Policies that draw random numbers take a
// seed in their constructor, so tests fix it and each worker gets its own stream.
//
// Every policy returns nullptr when no eligible host remains, never returns a host listed in
// ChooseContext::exclude, and reads a host's weight through effective_weight().

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "config/config.hpp"
#include "proxy/cluster.hpp"

namespace drover::proxy {

struct ChooseContext {
    // Hosts already tried for this request or connection: a retry goes to a different host.
    std::span<const discovery::Host* const> exclude = {};
    // The request's key for consistent hashing (maglev): the client's source IP for TCP, a header or
    // cookie for HTTP (see hash.hpp). Absent: hashing policies fall back to a random pick.
    std::optional<std::uint64_t> hash = std::nullopt;

    bool excluded(const discovery::Host* host) const {
        return std::find(exclude.begin(), exclude.end(), host) != exclude.end();
    }
};

class LoadBalancer {
public:
    virtual ~LoadBalancer() = default;
    // nullptr when no eligible host remains.
    virtual const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) = 0;
};

// Weights as policies use them: discovery may hand out 0 (an SRV record may), which would starve a
// host for good or divide by zero, so it counts as 1; the cap keeps the schedulers' integer
// arithmetic (deadline products, credits) far from overflow. Config weights are 1..10000.
inline constexpr std::uint32_t kMaxEffectiveWeight = 1u << 24;
inline std::uint32_t effective_weight(const HostEntry& entry) {
    return std::clamp<std::uint32_t>(entry.weight, 1, kMaxEffectiveWeight);
}

// A fresh seed from std::random_device: for one worker's policy instance, never on the data path.
std::uint64_t random_seed();

std::unique_ptr<LoadBalancer> make_load_balancer(config::LbPolicy policy, std::uint64_t seed = random_seed());

}  // namespace drover::proxy
