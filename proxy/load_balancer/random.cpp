#include "proxy/load_balancer/random.hpp"

#include <algorithm>

namespace drover::proxy {

namespace {
// Draws before giving up on luck and drawing among the eligible hosts only. Exclusions are the hosts
// a retry already tried, so a few draws nearly always land on an eligible host.
constexpr int kDraws = 4;
}  // namespace

const HostEntry* WeightedRandom::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (hosts.empty()) { return nullptr; }
    if (version_ != snapshot.version) { reset(snapshot); }
    for (int i = 0; i < kDraws; ++i) {
        const HostEntry& entry = hosts[draw(hosts.size())];
        if (!context.excluded(entry.host.get())) { return &entry; }
    }
    return choose_among_eligible(snapshot, context);
}

void WeightedRandom::reset(const ClusterSnapshot& snapshot) {
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

std::size_t WeightedRandom::draw(std::size_t hosts) {
    if (uniform_) { return rng_.below(static_cast<std::uint32_t>(hosts)); }
    // One 64-bit draw: the high half picks the bucket, the low half decides between its two hosts.
    const std::uint64_t r = rng_.next();
    const auto bucket = static_cast<std::size_t>(((r >> 32) * hosts) >> 32);
    const Bucket& b = buckets_[bucket];
    return static_cast<std::uint32_t>(r) < b.keep ? bucket : b.alias;
}

// The exact draw, O(hosts * excluded): only when kDraws draws in a row hit excluded hosts.
const HostEntry* WeightedRandom::choose_among_eligible(const ClusterSnapshot& snapshot,
                                                       const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    std::uint64_t total = 0;
    for (const auto& h : hosts) {
        if (!context.excluded(h.host.get())) { total += effective_weight(h); }
    }
    if (total == 0) { return nullptr; }
    std::uint64_t r = rng_.below64(total);
    for (const auto& h : hosts) {
        if (context.excluded(h.host.get())) { continue; }
        const std::uint64_t w = effective_weight(h);
        if (r < w) { return &h; }
        r -= w;
    }
    return nullptr;   // not reached: r < total
}

}  // namespace drover::proxy
