#pragma once
// Least request by the power of two choices: draw two distinct eligible hosts and take the one with
// fewer active requests for its weight, where active is the host's requests_active (open upstream
// connections for TCP, in-flight requests for HTTP; shared by all workers, read relaxed). A slow
// replica piles up active requests and loses most draws: traffic routes around it without any health
// signal. Two choices instead of the global minimum keeps a pick O(1) and avoids herding: every worker
// reading the same stale counts would send its next burst to one host.
//
// Equal weights: uniform draws, and fewer active wins. Mixed weights (set, or lowered by slow start
// or overload): each candidate is drawn in proportion to its weight (alias_table.hpp) and the lower
// active / weight wins, a tie to the first draw. So with nothing in flight (a client that sends one
// request at a time) shares follow the weights, where comparing weight / (active + 1) would hand
// every pick to the heavier host (a host ramping up in slow start would get nothing until its ramp
// ended); under load, hosts settle where their active counts are in proportion to their weights.
// Per worker; the generator is seeded per instance.

#include <cstdint>
#include <vector>

#include "proxy/load_balancer/alias_table.hpp"
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
    const HostEntry* choose_weighted(const ClusterSnapshot& snapshot, const ChooseContext& context);

    Rng rng_;
    AliasTable table_;
    std::vector<std::uint32_t> eligible_;   // scratch for the rare exact draw
};

}  // namespace drover::proxy
