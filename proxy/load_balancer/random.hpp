#pragma once
// Weighted random: each pick independent, host i chosen with probability weight_i / total.
// O(1) per pick whatever the weights: equal weights take one draw; mixed weights use Walker's alias
// method (Vose's construction), a table built once per snapshot version in O(hosts): one draw picks
// a bucket and, with the bucket's odds, either its own host or its alias. Per worker; the generator
// is seeded per instance.

#include <cstdint>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/rng.hpp"

namespace drover::proxy {

class WeightedRandom final : public LoadBalancer {
public:
    explicit WeightedRandom(std::uint64_t seed = random_seed()) : rng_(seed) {}

    const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) override;

private:
    struct Bucket {
        std::uint32_t keep;    // the bucket's own host with probability keep / 2^32, else `alias`
        std::uint32_t alias;   // a full bucket is its own alias
    };

    void reset(const ClusterSnapshot& snapshot);
    std::size_t draw(std::size_t hosts);
    const HostEntry* choose_among_eligible(const ClusterSnapshot& snapshot, const ChooseContext& context);

    Rng rng_;
    std::vector<Bucket> buckets_;   // mixed weights only
    bool uniform_ = true;
    std::uint64_t version_ = ~std::uint64_t{0};
};

}  // namespace drover::proxy
