#pragma once
// The seam between a cluster and where its endpoints come from (static list, DNS, watched file).
// A resolver runs on the control loop and calls `on_update` with every new complete EndpointSet;
// it never reports an empty set for a failure (failure is not emptiness: it keeps quiet instead).
// The one exception is an explicit operator bound: a DNS set that stayed stale past `max_stale`.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "discovery/endpoint.hpp"

namespace drover::discovery {

// What the admin views and metrics show about a resolver. Read on the control loop.
struct ResolverStatus {
    std::string_view kind;                 // "static" | "dns" | "file"
    bool resolved = false;                 // at least one set was ever delivered
    bool stale = false;                    // serving the last good set while refreshes fail
    std::uint32_t consecutive_failures = 0;
    std::uint64_t successes = 0;           // refreshes that produced a set (changed or not)
    std::uint64_t failures = 0;            // refreshes that did not (the last good set stayed)
    std::uint64_t stale_drops = 0;         // stale sets dropped for outliving max_stale
    std::optional<std::chrono::steady_clock::time_point> last_success;
    std::string last_error;                // the most recent failure, "" if none yet
};

class Resolver {
public:
    using UpdateCallback = std::function<void(EndpointSet)>;

    virtual ~Resolver() = default;
    // Starts producing sets; the first may be delivered before start() returns.
    virtual void start(UpdateCallback on_update) = 0;
    virtual void stop() = 0;
    virtual ResolverStatus status() const = 0;
    // A reload changed the cluster's discovery: true when this resolver takes `next` as it runs, its
    // state kept (the same names asked of the same servers, new refresh bounds or max_stale); false
    // when `next` needs a resolver of its own (another name, list or file).
    virtual bool update(const config::Discovery& next) {
        (void)next;
        return false;
    }
};

}  // namespace drover::discovery
