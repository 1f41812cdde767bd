#pragma once
// Draws a host index in proportion to the hosts' effective weights in O(1): Walker's alias method
// (Vose's construction), a table built once per snapshot version in O(hosts). One draw picks a bucket
// and, with the bucket's odds, either its own host or its alias. Equal weights need no table: one
// uniform draw. Used by `random` (each pick) and `least_request` (its two candidates).

#include <cstdint>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"
#include "proxy/load_balancer/rng.hpp"

namespace drover::proxy {

class AliasTable {
public:
    // Rebuilds for `snapshot` if its version is not the one built for. Returns whether weights are equal.
    bool update(const ClusterSnapshot& snapshot) {
        if (version_ != snapshot.version) { build(snapshot); }
        return uniform_;
    }
    bool uniform() const { return uniform_; }

    // An index into hosts (of the snapshot last updated for, non-empty), in proportion to weight.
    std::size_t draw(Rng& rng, std::size_t hosts) const {
        if (uniform_) { return rng.below(static_cast<std::uint32_t>(hosts)); }
        // One 64-bit draw: the high half picks the bucket, the low half decides between its two hosts.
        const std::uint64_t r = rng.next();
        const auto bucket = static_cast<std::size_t>(((r >> 32) * hosts) >> 32);
        const Bucket& b = buckets_[bucket];
        return static_cast<std::uint32_t>(r) < b.keep ? bucket : b.alias;
    }

    // The exact draw among hosts neither excluded nor `skip`, in proportion to weight: O(hosts), for
    // when random draws keep hitting excluded hosts. Null if none is left.
    static const HostEntry* draw_eligible(Rng& rng, const ClusterSnapshot& snapshot, const ChooseContext& context,
                                          const HostEntry* skip = nullptr);

private:
    struct Bucket {
        std::uint32_t keep;    // the bucket's own host with probability keep / 2^32, else `alias`
        std::uint32_t alias;   // a full bucket is its own alias
    };

    void build(const ClusterSnapshot& snapshot);

    std::vector<Bucket> buckets_;   // mixed weights only
    bool uniform_ = true;
    std::uint64_t version_ = ~std::uint64_t{0};
};

}  // namespace drover::proxy
