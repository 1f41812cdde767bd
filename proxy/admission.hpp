#pragma once
// The admission decisions of the HTTP data path, kept apart so they are measured on their own
// (benchmarks/micro/admission_bench.cpp): a request must take a cluster slot (limits.max_requests,
// shared by every worker), find a host with room (limits.max_requests_per_host) and, when on, a slot of
// its worker's adaptive limit. Refused, it waits (queue_timeout) or is shed with a Retry-After.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>

#include "discovery/host.hpp"
#include "proxy/cluster.hpp"

namespace drover::proxy {

// Takes one of the cluster's max_requests slots; the caller gives it back with release_cluster_slot.
inline bool take_cluster_slot(ClusterStats& stats, std::uint64_t max_requests) {
    if (stats.requests_active.fetch_add(1, std::memory_order_relaxed) < static_cast<std::int64_t>(max_requests)) {
        return true;
    }
    stats.requests_active.fetch_sub(1, std::memory_order_relaxed);
    return false;
}

// Gives a slot back: granted to the oldest request waiting for one (on any worker), else freed.
inline void release_cluster_slot(ClusterStats& stats) {
    if (!stats.request_waiters.grant_oldest()) { stats.requests_active.fetch_sub(1, std::memory_order_relaxed); }
}

// Whether `host` is under its cap of requests in flight (0 = no cap).
inline bool host_has_room(const discovery::Host& host, std::uint64_t cap) {
    return cap == 0 || host.stats().requests_active.load(std::memory_order_relaxed) < static_cast<std::int64_t>(cap);
}

// Gives a host's in-flight slot back: granted to the oldest request waiting for a host under
// max_requests_per_host `cap` (on any worker; it stays counted for that request), else freed. A host
// over its cap (a reload lowered it) grants nothing until it is back under.
inline void release_host_slot(ClusterStats& stats, const std::shared_ptr<const discovery::Host>& host, std::uint64_t cap) {
    if (cap > 0 && stats.host_waiters.has_waiters() &&
        host->stats().requests_active.load(std::memory_order_relaxed) <= static_cast<std::int64_t>(cap) &&
        stats.host_waiters.grant_oldest(host)) {
        return;
    }
    host->stats().requests_active.fetch_sub(1, std::memory_order_relaxed);
}

// A shed answer's Retry-After: how long the waiting requests (and this one) take to drain through
// `slots` at `latency_seconds` each, in whole seconds from 1 to 30.
inline std::uint32_t shed_retry_after(std::int64_t waiting, std::uint64_t slots, double latency_seconds) {
    const double queue = static_cast<double>(std::max<std::int64_t>(0, waiting) + 1);
    const double drain = queue / static_cast<double>(std::max<std::uint64_t>(1, slots)) * latency_seconds;
    return static_cast<std::uint32_t>(std::clamp(std::ceil(drain), 1.0, 30.0));
}

}  // namespace drover::proxy
