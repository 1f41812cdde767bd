#pragma once
// Least request by the power of two choices: draw two distinct eligible hosts at random and take the
// one with the better score weight / (active + 1), where active is the host's requests_active (open
// upstream connections for TCP, in-flight requests for HTTP; shared by all workers, read relaxed).
// A slow replica piles up active requests, its score falls and it loses most draws: traffic routes
// around it without any health signal. Two choices instead of the global minimum keeps a pick O(1)
// and avoids herding: every worker reading the same stale counts would send its next burst to one host.
// Per worker; the generator is seeded per instance.

#include <cstdint>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/rng.hpp"

namespace drover::proxy {

class LeastRequest final : public LoadBalancer {
public:
    explicit LeastRequest(std::uint64_t seed = random_seed()) : rng_(seed) {}

    const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) override;

private:
    static constexpr std::size_t kNone = ~std::size_t{0};
    // A uniformly drawn eligible host index other than `other`, or kNone.
    std::size_t draw(const ClusterSnapshot& snapshot, const ChooseContext& context, std::size_t other);

    Rng rng_;
    std::vector<std::uint32_t> eligible_;   // scratch for the rare exact draw
};

}  // namespace drover::proxy
