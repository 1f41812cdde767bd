#include "proxy/load_balancer/round_robin.hpp"

#include <algorithm>

namespace drover::proxy {

namespace {

using Turn = RoundRobin::Turn;

// Times are fractions picks / weight, compared by cross-multiplying: exact, no floating point.
// picks stays below kRebaseAt (2^36) and weights at most 2^24, so these products fit in 64 bits.
constexpr std::uint64_t kRebaseAt = std::uint64_t{1} << 36;

// Heap orders (std heaps keep the *largest* on top, so these say "a comes after b"); ties by index.
struct StartsLater {
    bool operator()(const Turn& a, const Turn& b) const {
        const std::uint64_t sa = a.picks * b.weight;
        const std::uint64_t sb = b.picks * a.weight;
        return sa != sb ? sa > sb : a.index > b.index;
    }
};
struct FinishesLater {
    bool operator()(const Turn& a, const Turn& b) const {
        const std::uint64_t fa = (a.picks + 1) * b.weight;
        const std::uint64_t fb = (b.picks + 1) * a.weight;
        return fa != fb ? fa > fb : a.index > b.index;
    }
};

// The clock times a weight can exceed 2^64 (total weight up to hosts * 2^24); one 64x64->128 multiply.
__extension__ typedef unsigned __int128 Wide;

template <class Order>
Turn pop(std::vector<Turn>& heap) {
    std::pop_heap(heap.begin(), heap.end(), Order{});
    const Turn t = heap.back();
    heap.pop_back();
    return t;
}

template <class Order>
void push(std::vector<Turn>& heap, const Turn& t) {
    heap.push_back(t);
    std::push_heap(heap.begin(), heap.end(), Order{});
}

}  // namespace

const HostEntry* RoundRobin::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    if (version_ != snapshot.version) { reset(snapshot); }
    return uniform_ ? choose_uniform(snapshot, context) : choose_weighted(snapshot, context);
}

void RoundRobin::reset(const ClusterSnapshot& snapshot) {
    const auto& hosts = snapshot.hosts;
    version_ = snapshot.version;
    uniform_ = std::all_of(hosts.begin(), hosts.end(), [&](const HostEntry& h) {
        return effective_weight(h) == effective_weight(hosts.front());
    });
    next_ = 0;
    clock_ = 0;
    total_weight_ = 0;
    waiting_.clear();
    started_.clear();
    if (uniform_) { return; }
    // At time 0 every host's first turn has started.
    started_.reserve(hosts.size());
    waiting_.reserve(hosts.size());
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::uint32_t weight = effective_weight(hosts[i]);
        started_.push_back({0, weight, static_cast<std::uint32_t>(i)});
        total_weight_ += weight;
    }
    std::make_heap(started_.begin(), started_.end(), FinishesLater{});
}

const HostEntry* RoundRobin::choose_uniform(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (!context.exclude.empty()) {
        // A retry: the next eligible host from where the rotation stands, which is left alone.
        // Advancing it would hand a dead host every first pick: [dead, live] would go dead, (retry)
        // live, dead, live, ...
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            const std::size_t index = (next_ + i) % hosts.size();
            if (!context.excluded(hosts[index].host.get())) { return &hosts[index]; }
        }
        return nullptr;
    }
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::size_t index = next_ % hosts.size();
        next_ = index + 1;
        if (!context.excluded(hosts[index].host.get())) { return &hosts[index]; }
    }
    return nullptr;
}

const HostEntry* RoundRobin::choose_weighted(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (!context.exclude.empty()) {
        // A retry: the next eligible host in plain rotation, and the schedule is left alone. Charging
        // retries to the schedule would let them skew it: with a dead heavy host, every retry would
        // put the others ahead and the dead host would get every first pick.
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            const std::size_t index = retry_next_ % hosts.size();
            retry_next_ = index + 1;
            if (!context.excluded(hosts[index].host.get())) { return &hosts[index]; }
        }
        return nullptr;
    }
    // Turns whose start the clock has reached join the started ones: start <= clock / total weight.
    while (!waiting_.empty() &&
           Wide{waiting_.front().picks} * total_weight_ <= Wide{clock_} * waiting_.front().weight) {
        push<FinishesLater>(started_, pop<StartsLater>(waiting_));
    }
    // Some turn has always started: the counts sum to the clock, so some host is at or behind its share.
    if (started_.empty()) { return nullptr; }   // not reached
    Turn next = pop<FinishesLater>(started_);
    ++next.picks;
    ++clock_;
    push<StartsLater>(waiting_, next);   // its next turn starts later; the loop above promotes it
    if (clock_ >= kRebaseAt) { rebase(); }
    return &hosts[next.index];
}

// Moves the clock and every host back by the same whole number of periods P (clock -= P * total,
// picks -= P * weight): every comparison above keeps its outcome, so the sequence goes on unchanged,
// and the counters stay small. Runs once per ~7e10 picks.
void RoundRobin::rebase() {
    std::uint64_t periods = clock_ / total_weight_;
    for (const Turn& t : waiting_) { periods = std::min(periods, t.picks / t.weight); }
    for (const Turn& t : started_) { periods = std::min(periods, t.picks / t.weight); }
    if (periods == 0) {
        // Only reachable if some host missed a whole period of turns: restart the schedule.
        version_ = ~std::uint64_t{0};
        return;
    }
    clock_ -= periods * total_weight_;
    for (Turn& t : waiting_) { t.picks -= periods * t.weight; }
    for (Turn& t : started_) { t.picks -= periods * t.weight; }
}

}  // namespace drover::proxy
