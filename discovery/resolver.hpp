#pragma once
// The seam between a cluster and where its endpoints come from (static list, DNS, watched file).
// A resolver runs on the control loop and calls `on_update` with every new complete EndpointSet;
// it never reports an empty set for a failure (failure is not emptiness: it keeps quiet instead).

#include <functional>

#include "discovery/endpoint.hpp"

namespace drover::discovery {

class Resolver {
public:
    using UpdateCallback = std::function<void(EndpointSet)>;

    virtual ~Resolver() = default;
    // Starts producing sets; the first may be delivered before start() returns.
    virtual void start(UpdateCallback on_update) = 0;
    virtual void stop() = 0;
};

}  // namespace drover::discovery
