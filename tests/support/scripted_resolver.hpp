#pragma once
// A discovery::Resolver that delivers whatever the test or benchmark pushes, as a real resolver
// would from the control loop. Shared by tests/unit and benchmarks/micro.

#include <utility>

#include "discovery/resolver.hpp"

namespace drover::testing {

class ScriptedResolver final : public discovery::Resolver {
public:
    void start(UpdateCallback on_update) override { on_update_ = std::move(on_update); }
    void stop() override {}
    discovery::ResolverStatus status() const override {
        discovery::ResolverStatus s;
        s.kind = "scripted";
        return s;
    }
    void push(discovery::EndpointSet set) { on_update_(std::move(set)); }

private:
    UpdateCallback on_update_;
};

}  // namespace drover::testing
