#include "proxy/cluster.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "config/log.hpp"
#include "discovery/dns_resolver.hpp"
#include "discovery/file_resolver.hpp"
#include "discovery/static_resolver.hpp"
#include "proxy/load_balancer/maglev.hpp"

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

namespace {
// Per-host change lines per update; a large first set or a mass change is summarised past this.
constexpr std::size_t kChangeLogLines = 20;
}  // namespace

void Cluster::on_endpoints(discovery::EndpointSet endpoints) {
    // SRV priorities: only the best (lowest) group serves. Once health checking exists, the next group
    // must take over while the best one has no healthy host; until then a group is "up" if listed.
    if (!endpoints.empty()) {
        std::uint32_t best = endpoints.front().priority;
        for (const auto& e : endpoints) { best = std::min(best, e.priority); }
        std::erase_if(endpoints, [best](const discovery::Endpoint& e) { return e.priority != best; });
    }
    // What each surviving host weighed before, to count weight changes.
    std::map<boost::asio::ip::tcp::endpoint, std::uint32_t> old_weights;
    for (const auto& h : snapshot_->hosts) { old_weights.emplace(h.host->address(), h.weight); }
    std::size_t change_lines = 0;
    const auto log_change = [&](const std::string& line) {
        if (change_lines++ < kChangeLogLines) { log::info("{}", line); }
    };
    std::uint64_t reweighted = 0;

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
            const auto old = old_weights.find(endpoint.address);
            if (old != old_weights.end() && old->second != endpoint.weight) {
                ++reweighted;
                log_change(fmt::format("cluster {}: host {} weight {} -> {}", config_->name, host->name(),
                                       old->second, endpoint.weight));
            }
        } else {
            host = std::make_shared<const discovery::Host>(endpoint.address);
            ++added;
            log_change(fmt::format("cluster {}: host {} added (weight {})", config_->name, host->name(),
                                   endpoint.weight));
        }
        next.emplace(endpoint.address, host);
        snapshot->hosts.push_back({host, endpoint.weight});
    }
    if (config_->load_balancing == config::LbPolicy::maglev) {
        // Built here, on the control loop, so no worker ever pays for it on a request.
        snapshot->maglev = std::make_shared<const MaglevTable>(snapshot->hosts);
    }
    const std::size_t removed = hosts_.size() + added - next.size();
    for (const auto& [address, host] : hosts_) {
        // Live TCP connections keep going: each holds the snapshot that holds its host.
        if (!next.contains(address)) {
            log_change(fmt::format("cluster {}: host {} removed", config_->name, host->name()));
            // Requests in flight to it finish; their connections then close instead of being pooled.
            host->stats().removed.store(true, std::memory_order_relaxed);
        }
    }
    if (change_lines > kChangeLogLines) {
        log::info("cluster {}: ... and {} more host changes", config_->name, change_lines - kChangeLogLines);
    }
    host_changes_.added += added;
    host_changes_.removed += removed;
    host_changes_.weight += reweighted;
    hosts_ = std::move(next);
    snapshot_ = snapshot;
    log::info("cluster {}: {} hosts ({} added, {} removed, {} reweighted)", config_->name,
              snapshot_->hosts.size(), added, removed, reweighted);
    publish_(snapshot_);
}

std::unique_ptr<discovery::Resolver> make_resolver(const config::Cluster& config,
                                                   boost::asio::io_context& control) {
    if (const auto* s = std::get_if<config::StaticDiscovery>(&config.discovery)) {
        return std::make_unique<discovery::StaticResolver>(*s);
    }
    if (const auto* d = std::get_if<config::DnsDiscovery>(&config.discovery)) {
        return std::make_unique<discovery::DnsResolver>(control, config.name, *d);
    }
    return std::make_unique<discovery::FileResolver>(control, config.name,
                                                     std::get<config::FileDiscovery>(config.discovery));
}

}  // namespace drover::proxy
