#pragma once
// A fixed list of endpoints from the config: delivers its one set on start and never changes.

#include <chrono>

#include "config/config.hpp"
#include "discovery/resolver.hpp"

namespace drover::discovery {

class StaticResolver final : public Resolver {
public:
    explicit StaticResolver(const config::StaticDiscovery& config);

    void start(UpdateCallback on_update) override;
    void stop() override {}
    ResolverStatus status() const override;

private:
    EndpointSet endpoints_;
    std::optional<std::chrono::steady_clock::time_point> started_;
};

}  // namespace drover::discovery
