#include "proxy/cluster.hpp"

#include "config/log.hpp"
#include "discovery/static_resolver.hpp"

namespace drover::proxy {

Cluster::Cluster(config::Cluster config, std::unique_ptr<discovery::Resolver> resolver, Publish publish)
    : config_(std::make_shared<const config::Cluster>(std::move(config))),
      stats_(std::make_shared<ClusterStats>()),
      resolver_(std::move(resolver)),
      publish_(std::move(publish)) {
    // Until discovery answers, the cluster exists with no hosts.
    auto empty = std::make_shared<ClusterSnapshot>();
    empty->config = config_;
    empty->stats = stats_;
    snapshot_ = std::move(empty);
}

void Cluster::start() {
    resolver_->start([this](discovery::EndpointSet endpoints) { on_endpoints(std::move(endpoints)); });
}

void Cluster::stop() { resolver_->stop(); }

void Cluster::on_endpoints(discovery::EndpointSet endpoints) {
    // Hosts are keyed by address so a host that stays keeps its counters across sets.
    std::map<boost::asio::ip::tcp::endpoint, std::shared_ptr<const discovery::Host>> next;
    auto snapshot = std::make_shared<ClusterSnapshot>();
    snapshot->config = config_;
    snapshot->stats = stats_;
    snapshot->version = ++version_;
    snapshot->hosts.reserve(endpoints.size());
    std::size_t added = 0;
    for (const auto& endpoint : endpoints) {
        if (next.contains(endpoint.address)) { continue; }   // a set may repeat an address
        auto it = hosts_.find(endpoint.address);
        std::shared_ptr<const discovery::Host> host;
        if (it != hosts_.end()) {
            host = it->second;
        } else {
            host = std::make_shared<const discovery::Host>(endpoint.address);
            ++added;
        }
        next.emplace(endpoint.address, host);
        snapshot->hosts.push_back({host, endpoint.weight});
    }
    const std::size_t removed = hosts_.size() + added - next.size();
    hosts_ = std::move(next);
    snapshot_ = snapshot;
    log::info("cluster {}: {} hosts ({} added, {} removed)", config_->name, snapshot_->hosts.size(), added,
              removed);
    publish_(snapshot_);
}

std::unique_ptr<discovery::Resolver> make_resolver(const config::Cluster& config) {
    if (const auto* s = std::get_if<config::StaticDiscovery>(&config.discovery)) {
        return std::make_unique<discovery::StaticResolver>(*s);
    }
    // The loader refuses dns and file discovery until they are built.
    throw std::runtime_error("cluster " + config.name + ": discovery kind not supported yet");
}

}  // namespace drover::proxy
