#include "proxy/load_balancer/least_request.hpp"

#include <algorithm>

namespace drover::proxy {

namespace {

// Draws before giving up on luck and listing the eligible hosts (see random.cpp).
constexpr int kDraws = 4;

std::uint64_t active_requests(const HostEntry& entry) {
    const std::int64_t active = entry.host->stats().requests_active.load(std::memory_order_relaxed);
    // Clamped: a counter is never negative for long, and the products below must not overflow.
    return static_cast<std::uint64_t>(std::clamp<std::int64_t>(active, 0, std::int64_t{1} << 32));
}

}  // namespace

const HostEntry* LeastRequest::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (hosts.empty()) { return nullptr; }
    if (!table_.update(snapshot)) { return choose_weighted(snapshot, context); }
    const std::size_t first = draw(snapshot, context, kNone);
    if (first == kNone) { return nullptr; }
    const std::size_t second = draw(snapshot, context, first);
    if (second == kNone) { return &hosts[first]; }
    const HostEntry& a = hosts[first];
    const HostEntry& b = hosts[second];
    // Equal weights: fewer active wins; a tie goes to the first draw, which is as random as the second.
    return active_requests(a) <= active_requests(b) ? &a : &b;
}

const HostEntry* LeastRequest::choose_weighted(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    const auto candidate = [&](const HostEntry* other) -> const HostEntry* {
        for (int i = 0; i < kDraws; ++i) {
            const HostEntry& entry = hosts[table_.draw(rng_, hosts.size())];
            if (&entry != other && !context.excluded(entry.host.get())) { return &entry; }
        }
        return AliasTable::draw_eligible(rng_, snapshot, context, other);
    };
    const HostEntry* a = candidate(nullptr);
    if (a == nullptr) { return nullptr; }
    const HostEntry* b = candidate(a);
    if (b == nullptr) { return a; }
    // active_a / weight_a <= active_b / weight_b, cross-multiplied (< 2^57); a tie (nothing in flight)
    // goes to the first draw, which was drawn by weight.
    return active_requests(*a) * effective_weight(*b) <= active_requests(*b) * effective_weight(*a) ? a : b;
}

std::size_t LeastRequest::draw(const ClusterSnapshot& snapshot, const ChooseContext& context, std::size_t other) {
    const auto& hosts = snapshot.hosts;
    const std::size_t n = hosts.size();
    const std::size_t candidates = other == kNone ? n : n - 1;
    if (candidates == 0) { return kNone; }
    for (int i = 0; i < kDraws; ++i) {
        std::size_t index = rng_.below(static_cast<std::uint32_t>(candidates));
        if (other != kNone && index >= other) { ++index; }   // skip `other` without a redraw
        if (!context.excluded(hosts[index].host.get())) { return index; }
    }
    eligible_.clear();
    for (std::size_t i = 0; i < n; ++i) {
        if (i != other && !context.excluded(hosts[i].host.get())) {
            eligible_.push_back(static_cast<std::uint32_t>(i));
        }
    }
    if (eligible_.empty()) { return kNone; }
    return eligible_[rng_.below(static_cast<std::uint32_t>(eligible_.size()))];
}

}  // namespace drover::proxy
