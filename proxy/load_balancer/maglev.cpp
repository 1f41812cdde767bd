#include "proxy/load_balancer/maglev.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include "proxy/load_balancer/hash.hpp"

namespace drover::proxy {

namespace {

constexpr std::uint32_t kEmpty = std::numeric_limits<std::uint32_t>::max();
// Slots looked at past hosts that hold a key back, before the first of them takes it after all.
constexpr std::uint32_t kHeldBackSteps = 64;

bool is_prime(std::uint64_t n) {
    if (n < 2) { return false; }
    for (std::uint64_t d = 2; d * d <= n; ++d) {
        if (n % d == 0) { return false; }
    }
    return true;
}

}  // namespace

std::uint32_t MaglevTable::size_for(std::size_t hosts, std::uint32_t min_size) {
    // Capped so the table stays addressable by 32-bit slots (a billion-slot table is not a use case).
    const std::uint64_t wanted =
        std::max<std::uint64_t>({min_size, 100 * std::uint64_t{hosts}, 2});
    std::uint64_t n = std::min<std::uint64_t>(wanted, std::uint64_t{1} << 31);
    while (!is_prime(n)) { ++n; }
    return static_cast<std::uint32_t>(n);
}

MaglevTable::MaglevTable(std::span<const HostEntry> hosts, std::uint32_t min_size) : host_count_(hosts.size()) {
    if (hosts.empty()) { return; }
    const std::uint32_t size = size_for(hosts.size(), min_size);

    // Each host walks its own permutation of the slots, offset + j * skip (mod size; size is prime, so
    // any skip visits every slot), derived from its name alone: a host's preferences do not depend on
    // which other hosts exist, which is what keeps remapping minimal.
    struct Placer {
        std::uint32_t index;    // into hosts
        std::uint32_t weight;
        std::uint32_t next;     // the next slot of its permutation to try
        std::uint32_t skip;
        std::uint64_t credit;   // weighted turns: a host places a slot each time credit reaches max_weight
    };
    std::vector<Placer> placers;
    placers.reserve(hosts.size());
    std::uint32_t max_weight = 0;
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const std::string& name = hosts[i].host->name();
        const std::uint32_t weight = effective_weight(hosts[i]);
        max_weight = std::max(max_weight, weight);
        placers.push_back({static_cast<std::uint32_t>(i), weight,
                           static_cast<std::uint32_t>(hash_bytes(name, 0x6d61676c6576ULL) % size),
                           static_cast<std::uint32_t>(hash_bytes(name, 0x736b6970ULL) % (size - 1) + 1), 0});
    }
    std::sort(placers.begin(), placers.end(), [&](const Placer& a, const Placer& b) {
        return hosts[a.index].host->name() < hosts[b.index].host->name();
    });
    // Every host places a slot in the first round (credit starts topped up to max_weight), then
    // weight / max_weight slots per round: shares follow weights, and even the lightest host has a slot.
    for (auto& p : placers) { p.credit = max_weight - p.weight; }

    slots_.assign(size, kEmpty);
    std::uint32_t filled = 0;
    while (filled < size) {
        for (auto& p : placers) {
            p.credit += p.weight;
            if (p.credit < max_weight) { continue; }
            p.credit -= max_weight;
            std::uint32_t slot = p.next;
            while (slots_[slot] != kEmpty) {
                slot += p.skip;
                if (slot >= size) { slot -= size; }
            }
            slots_[slot] = p.index;
            p.next = slot + p.skip >= size ? slot + p.skip - size : slot + p.skip;
            if (++filled == size) { break; }
        }
    }
}

const HostEntry* Maglev::choose(const ClusterSnapshot& snapshot, const ChooseContext& context) {
    const auto& hosts = snapshot.hosts;
    if (hosts.empty()) { return nullptr; }
    const MaglevTable* table = snapshot.maglev.get();
    if (!context.hash || table == nullptr || table->host_count() != hosts.size()) {
        return fallback_.choose(snapshot, context);
    }
    std::uint32_t slot = table->slot_of(*context.hash);
    const HostEntry& owner = hosts[table->host_at(slot)];
    if (context.exclude.empty() && owner.key_share == HostEntry::kFullShare) { return &owner; }
    if (context.exclude.size() >= hosts.size() &&
        std::all_of(hosts.begin(), hosts.end(), [&](const HostEntry& h) { return context.excluded(h.host.get()); })) {
        return nullptr;
    }
    // A host ramping up (or overloaded) takes the keys whose place in [0, kFullShare) falls below its
    // key_share and passes the others on: the same keys every time, and as its share grows it gains
    // keys without giving any back, so a key moves at most once in a ramp.
    const auto place = static_cast<std::uint32_t>((*context.hash * 0x9e3779b97f4a7c15ULL) >> 48);
    const HostEntry* passed_over = nullptr;   // the first host that would have taken the key but for its share
    // Neighbouring slots belong to unrelated hosts, so this ends within a few steps of the number of
    // excluded (or held-back) hosts.
    for (std::uint32_t step = 0; step < table->size(); ++step) {
        const HostEntry& entry = hosts[table->host_at(slot)];
        if (!context.excluded(entry.host.get())) {
            if (place < entry.key_share) { return &entry; }
            if (passed_over == nullptr) { passed_over = &entry; }
            if (step >= kHeldBackSteps) { return passed_over; }   // every near host holds back: no better choice
        }
        slot = slot + 1 == table->size() ? 0 : slot + 1;
    }
    if (passed_over != nullptr) { return passed_over; }
    // Every slot's host is excluded, yet some host is not: it had no slot (a tiny weight next to huge
    // ones). Rare enough for the exact random pick.
    return fallback_.choose(snapshot, context);
}

}  // namespace drover::proxy
