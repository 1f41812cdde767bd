#include "proxy/load_balancer/alias_table.hpp"

#include <algorithm>

namespace drover::proxy {

void AliasTable::build(const ClusterSnapshot& snapshot) {
    const auto& hosts = snapshot.hosts;
    version_ = snapshot.version;
    uniform_ = std::all_of(hosts.begin(), hosts.end(), [&](const HostEntry& h) {
        return effective_weight(h) == effective_weight(hosts.front());
    });
    buckets_.clear();
    if (uniform_) { return; }
    // Each of the n buckets holds `total` units; host i brings weight_i * n units. Underfull buckets
    // are topped up from overfull ones, so every bucket ends with at most two hosts. Integer units:
    // exact, whatever the weights (n * weight < 2^38).
    const std::size_t n = hosts.size();
    std::uint64_t total = 0;
    std::vector<std::uint64_t> units(n);
    for (std::size_t i = 0; i < n; ++i) {
        units[i] = std::uint64_t{effective_weight(hosts[i])} * n;
        total += effective_weight(hosts[i]);
    }
    buckets_.resize(n);
    std::vector<std::uint32_t> under;
    std::vector<std::uint32_t> over;
    for (std::size_t i = 0; i < n; ++i) { (units[i] < total ? under : over).push_back(static_cast<std::uint32_t>(i)); }
    __extension__ typedef unsigned __int128 Wide;
    while (!under.empty() && !over.empty()) {
        const std::uint32_t small = under.back();
        under.pop_back();
        const std::uint32_t large = over.back();
        buckets_[small] = {static_cast<std::uint32_t>((Wide{units[small]} << 32) / total), large};
        units[large] -= total - units[small];
        if (units[large] < total) {
            over.pop_back();
            under.push_back(large);
        }
    }
    // What is left is full (up to rounding): kept with certainty.
    for (const auto i : under) { buckets_[i] = {~std::uint32_t{0}, i}; }
    for (const auto i : over) { buckets_[i] = {~std::uint32_t{0}, i}; }
}

const HostEntry* AliasTable::draw_eligible(Rng& rng, const ClusterSnapshot& snapshot, const ChooseContext& context,
                                           const HostEntry* skip) {
    const auto& hosts = snapshot.hosts;
    const auto eligible = [&](const HostEntry& h) { return &h != skip && !context.excluded(h.host.get()); };
    std::uint64_t total = 0;
    for (const auto& h : hosts) {
        if (eligible(h)) { total += effective_weight(h); }
    }
    if (total == 0) { return nullptr; }
    std::uint64_t r = rng.below64(total);
    for (const auto& h : hosts) {
        if (!eligible(h)) { continue; }
        const std::uint64_t w = effective_weight(h);
        if (r < w) { return &h; }
        r -= w;
    }
    return nullptr;   // not reached: r < total
}

}  // namespace drover::proxy
