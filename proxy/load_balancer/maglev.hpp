#pragma once
// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016). A request key (ChooseContext::hash) maps to a slot of a lookup table whose
// slots are spread over the hosts in proportion to their weights. When one of N hosts leaves, about
// 1/N of the keys move (those that were on it) and nearly all others stay where they were.
//
// MaglevTable is immutable and built on the control loop, once per cluster snapshot (Cluster builds it
// into ClusterSnapshot::maglev for maglev clusters); every worker's Maglev policy reads the same one.
// A lookup is one modulo and one load.

#include <cstdint>
#include <span>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/random.hpp"

namespace drover::proxy {

class MaglevTable {
public:
    // The paper's advice is a prime well above 100 slots per host, so each host's share is within
    // about 1% of its weight; 65537 (256 KiB of slots) covers clusters of up to 655 hosts.
    static constexpr std::uint32_t kMinSize = 65537;

    // Fills the table for `hosts` (snapshot order; weights honoured). Hosts are placed in the order of
    // their names, so the same set gives the same table whatever order discovery listed it in.
    // Expected O(size * log size): milliseconds for a thousand hosts. Control loop only.
    explicit MaglevTable(std::span<const HostEntry> hosts, std::uint32_t min_size = kMinSize);

    // The smallest prime >= max(min_size, 100 * hosts).
    static std::uint32_t size_for(std::size_t hosts, std::uint32_t min_size = kMinSize);

    std::uint32_t size() const { return static_cast<std::uint32_t>(slots_.size()); }
    std::size_t host_count() const { return host_count_; }
    std::uint32_t slot_of(std::uint64_t hash) const { return static_cast<std::uint32_t>(hash % slots_.size()); }
    // An index into the snapshot's hosts.
    std::uint32_t host_at(std::uint32_t slot) const { return slots_[slot]; }

private:
    std::vector<std::uint32_t> slots_;
    std::size_t host_count_ = 0;
};

class Maglev final : public LoadBalancer {
public:
    explicit Maglev(std::uint64_t seed = random_seed()) : fallback_(seed) {}

    // The key's slot; with exclusions (a retry), the next slots in table order until an eligible host:
    // a retry of the same key lands on the same second choice every time. No key (or a snapshot built
    // without a table): a weighted random pick.
    const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) override;

private:
    WeightedRandom fallback_;
};

}  // namespace drover::proxy
