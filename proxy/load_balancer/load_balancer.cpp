#include "proxy/load_balancer/load_balancer.hpp"

#include <random>

#include "proxy/load_balancer/least_request.hpp"
#include "proxy/load_balancer/maglev.hpp"
#include "proxy/load_balancer/random.hpp"
#include "proxy/load_balancer/round_robin.hpp"

namespace drover::proxy {

std::uint64_t random_seed() {
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
}

std::unique_ptr<LoadBalancer> make_load_balancer(config::LbPolicy policy, std::uint64_t seed) {
    switch (policy) {
        case config::LbPolicy::round_robin: return std::make_unique<RoundRobin>();
        case config::LbPolicy::least_request: return std::make_unique<LeastRequest>(seed);
        case config::LbPolicy::random: return std::make_unique<WeightedRandom>(seed);
        case config::LbPolicy::maglev: return std::make_unique<Maglev>(seed);
    }
    return std::make_unique<RoundRobin>();   // not reached: the switch covers every policy
}

}  // namespace drover::proxy
