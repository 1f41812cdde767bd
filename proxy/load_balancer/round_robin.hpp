#pragma once
// Weighted round robin, per worker, no shared state.
//
// Equal weights (the common case) take an O(1) rotation: a b c a b c.
//
// Mixed weights follow worst-case fair weighted fair queueing (WF2Q, Bennett & Zhang 1996) in
// O(log hosts) per pick. Virtual time runs at 1 / (total weight) per pick; host i's k-th turn starts
// at (k - 1) / w_i and finishes at k / w_i. Of the hosts whose turn has started, the one finishing
// first goes next. With weights 5,1,1 the order is a b a a c a a, repeating:
// never more than three a's in a row (smooth weighted round robin, NGINX's, allows four; a plain
// earliest-deadline schedule five). After any number of picks every host's count is within one pick of
// its exact share. Smooth weighted round robin gives a similar order at O(hosts) per pick, which is
// what this replaced (BM_RoundRobinChooseWeighted/10000: ~24 us before, ~160 ns now).
//
// Retries (a non-empty exclude list) go to the next eligible host in a plain rotation of their own
// and leave the schedule alone: first picks follow the weights exactly, whatever fails.
//
// A new snapshot (health, discovery, and every step of a slow-start or overload ramp) keeps each
// host's place: how far ahead of or behind its share it was, in turns (at most one either way), is
// carried into the schedule for the new weights. Starting over instead gave every host a turn within
// the first few picks after each change: a host whose weight overload lowered to a tenth, and whose
// busy answers rebuild the snapshot, got a third of the picks with three hosts.

#include <cstdint>
#include <vector>

#include "proxy/load_balancer/load_balancer.hpp"

namespace drover::proxy {

class RoundRobin final : public LoadBalancer {
public:
    const HostEntry* choose(const ClusterSnapshot& snapshot, const ChooseContext& context) override;

    // Turns are counted in kScale parts (a pick adds kScale): a carried place can be a fraction of one.
    static constexpr std::uint64_t kScale = 64;

    struct Turn {
        std::uint64_t picks;   // turns taken x kScale: the next starts at picks / weight, ends at (picks + kScale) / weight
        std::uint32_t weight;
        std::uint32_t index;   // into snapshot.hosts (and hosts_)
    };

private:
    struct Place {
        const discovery::Host* host;
        std::int64_t lead;   // x kScale, in [-kScale, kScale]: ahead of its share (+) or behind (-)
    };

    void reset(const ClusterSnapshot& snapshot);
    void carry_places();   // the current schedule's places into carried_
    const HostEntry* choose_uniform(const ClusterSnapshot& snapshot, const ChooseContext& context);
    const HostEntry* choose_weighted(const ClusterSnapshot& snapshot, const ChooseContext& context);
    void rebase();

    // Weighted: turns whose start is still ahead of the clock (a heap by start), and turns that have
    // started (a heap by finish). Every host is in exactly one of them between picks.
    std::vector<Turn> waiting_;
    std::vector<Turn> started_;
    std::uint64_t clock_ = 0;            // sum of picks (x kScale): virtual time * total
    std::uint64_t total_weight_ = 0;
    std::vector<const discovery::Host*> hosts_;   // by Turn::index: whose place a new snapshot carries
    std::vector<Place> carried_;                  // reset(): by host, sorted

    std::size_t retry_next_ = 0;         // retries: a plain rotation of their own

    std::size_t next_ = 0;   // uniform: the next index to hand out
    bool uniform_ = true;
    std::uint64_t version_ = ~std::uint64_t{0};
};

}  // namespace drover::proxy
