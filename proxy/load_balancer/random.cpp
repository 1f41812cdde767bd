#include "proxy/load_balancer/random.hpp"

namespace drover::proxy {

namespace {
// Draws before giving up on luck and drawing among the eligible hosts only. Exclusions are the hosts
// a retry already tried, so a few draws nearly always land on an eligible host.
constexpr int kDraws = 4;
}  // namespace

const HostEntry* WeightedRandom::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (hosts.empty()) { return nullptr; }
    table_.update(snapshot);
    for (int i = 0; i < kDraws; ++i) {
        const HostEntry& entry = hosts[table_.draw(rng_, hosts.size())];
        if (!context.excluded(entry.host.get())) { return &entry; }
    }
    return AliasTable::draw_eligible(rng_, snapshot, context);
}

}  // namespace drover::proxy
