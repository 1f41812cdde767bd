#pragma once
// Weighted random: each pick independent, host i chosen with probability weight_i / total.
// O(1) per pick whatever the weights (proxy/load_balancer/alias_table.hpp). Per worker; the generator
// is seeded per instance.

#include <cstdint>

#include "proxy/load_balancer/alias_table.hpp"
#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/rng.hpp"

namespace drover::proxy {

class WeightedRandom final : public LoadBalancer {
public:
    explicit WeightedRandom(std::uint64_t seed = random_seed()) : rng_(seed) {}

    const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) override;

private:
    Rng rng_;
    AliasTable table_;
};

}  // namespace drover::proxy
