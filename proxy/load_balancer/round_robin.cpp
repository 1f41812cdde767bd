#include "proxy/load_balancer/round_robin.hpp"

#include <algorithm>

namespace drover::proxy {

namespace {

using Turn = RoundRobin::Turn;

// Times are fractions picks / weight, compared by cross-multiplying: exact, no floating point.
// A host's picks stay below kRebaseAt + 2 kScale (about 2^39) and weights at most 2^24, so these
// products fit in 64 bits.
constexpr std::uint64_t kRebaseAt = std::uint64_t{1} << 39;
constexpr std::uint64_t kScale = RoundRobin::kScale;

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
        const std::uint64_t fa = (a.picks + kScale) * b.weight;
        const std::uint64_t fb = (b.picks + kScale) * a.weight;
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
    carry_places();
    uniform_ = std::all_of(hosts.begin(), hosts.end(), [&](const HostEntry& h) {
        return effective_weight(h) == effective_weight(hosts.front());
    });
    // (next_ stays: the rotation goes on where it was; choose_uniform takes it modulo the hosts.)
    clock_ = 0;
    total_weight_ = 0;
    waiting_.clear();
    started_.clear();
    if (uniform_) { return; }
    // Every host at its share of one period (virtual time kScale: picks = kScale x weight), moved by
    // the lead it carries. Its turn has started unless the lead put it ahead of the clock.
    std::vector<Turn> turns;
    turns.reserve(hosts.size());
    hosts_.clear();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::uint32_t weight = effective_weight(hosts[i]);
        const discovery::Host* host = hosts[i].host.get();
        const auto it = std::lower_bound(carried_.begin(), carried_.end(), host,
                                         [](const Place& p, const discovery::Host* h) { return p.host < h; });
        const std::int64_t lead = it != carried_.end() && it->host == host ? it->lead : 0;
        const auto picks = static_cast<std::uint64_t>(static_cast<std::int64_t>(kScale * weight) + lead);
        turns.push_back({picks, weight, static_cast<std::uint32_t>(i)});
        hosts_.push_back(host);
        clock_ += picks;
        total_weight_ += weight;
    }
    // The clock is the sum of the picks, so some turn has started (some host is at or behind its share).
    started_.reserve(hosts.size());
    waiting_.reserve(hosts.size());
    for (const Turn& t : turns) {
        const bool started = Wide{t.picks} * total_weight_ <= Wide{clock_} * t.weight;
        (started ? started_ : waiting_).push_back(t);
    }
    std::make_heap(started_.begin(), started_.end(), FinishesLater{});
    std::make_heap(waiting_.begin(), waiting_.end(), StartsLater{});
}

// Each host's lead over its exact share now (picks - weight x clock / total), at most a turn either
// way: a host far behind (it was excluded by retries, say) is not owed a burst, nor one far ahead a
// long wait.
void RoundRobin::carry_places() {
    carried_.clear();
    if (total_weight_ == 0) { return; }   // uniform or empty: a rotation has no places
    const auto add = [this](const Turn& t) {
        const auto share = static_cast<std::int64_t>(Wide{clock_} * t.weight / total_weight_);
        const std::int64_t lead = static_cast<std::int64_t>(t.picks) - share;
        carried_.push_back({hosts_[t.index], std::clamp<std::int64_t>(lead, -static_cast<std::int64_t>(kScale),
                                                             static_cast<std::int64_t>(kScale))});
    };
    for (const Turn& t : waiting_) { add(t); }
    for (const Turn& t : started_) { add(t); }
    std::sort(carried_.begin(), carried_.end(), [](const Place& a, const Place& b) { return a.host < b.host; });
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
    next.picks += kScale;
    clock_ += kScale;
    push<StartsLater>(waiting_, next);   // its next turn starts later; the loop above promotes it
    if (next.picks >= kRebaseAt) { rebase(); }
    return &hosts[next.index];
}

// Moves the clock and every host back by the same whole number of periods P (clock -= P * kScale *
// total, picks -= P * kScale * weight): every comparison above keeps its outcome, so the sequence goes
// on unchanged, and the counters stay small. Runs once per ~2^33 picks of the heaviest host.
void RoundRobin::rebase() {
    std::uint64_t periods = clock_ / (kScale * total_weight_);
    for (const Turn& t : waiting_) { periods = std::min(periods, t.picks / (kScale * t.weight)); }
    for (const Turn& t : started_) { periods = std::min(periods, t.picks / (kScale * t.weight)); }
    if (periods == 0) {
        // Only reachable if some host missed a whole period of turns: restart the schedule.
        version_ = ~std::uint64_t{0};
        return;
    }
    clock_ -= periods * kScale * total_weight_;
    for (Turn& t : waiting_) { t.picks -= periods * kScale * t.weight; }
    for (Turn& t : started_) { t.picks -= periods * kScale * t.weight; }
}

}  // namespace drover::proxy
