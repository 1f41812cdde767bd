#include "discovery/static_resolver.hpp"

namespace drover::discovery {

StaticResolver::StaticResolver(const config::StaticDiscovery& config) {
    endpoints_.reserve(config.endpoints.size());
    for (const auto& e : config.endpoints) {
        // The loader has already checked that the host is an IP literal.
        endpoints_.push_back({{boost::asio::ip::make_address(e.address.host), e.address.port}, e.weight});
    }
}

void StaticResolver::start(UpdateCallback on_update) {
    started_ = std::chrono::steady_clock::now();
    on_update(endpoints_);
}

ResolverStatus StaticResolver::status() const {
    ResolverStatus s;
    s.kind = "static";
    s.resolved = started_.has_value();
    s.successes = started_ ? 1 : 0;
    s.last_success = started_;
    return s;
}

}  // namespace drover::discovery
