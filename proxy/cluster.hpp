#pragma once
// A cluster as the data path sees it (ClusterSnapshot, immutable, one per change) and as the control
// loop owns it (Cluster: runs the resolver, keeps long-lived hosts, builds and publishes snapshots).
// Workers never see Cluster; they read the snapshot last posted to them.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "config/config.hpp"
#include "discovery/host.hpp"
#include "discovery/resolver.hpp"

namespace drover::proxy {

// Cluster-wide counters and limits, shared by every worker (touched once per connection, not per byte).
struct ClusterStats {
    std::atomic<std::int64_t> upstream_connections_active{0};
    std::atomic<std::uint64_t> unavailable_no_host{0};
    std::atomic<std::uint64_t> unavailable_max_connections{0};
    // Clusters made from a template on first use: when a request last used it (steady clock, ns), so
    // the control loop can drop it once idle. Written by workers only for such clusters.
    bool dynamic = false;
    std::atomic<std::int64_t> last_used_ns{0};
};

class MaglevTable;   // proxy/load_balancer/maglev.hpp

struct HostEntry {
    std::shared_ptr<const discovery::Host> host;
    std::uint32_t weight = 1;
};

struct ClusterSnapshot {
    std::shared_ptr<const config::Cluster> config;
    std::shared_ptr<ClusterStats> stats;
    std::vector<HostEntry> hosts;   // in discovery order
    std::uint64_t version = 0;      // grows with every rebuild; per-worker LB state keys off it
    // Maglev clusters only: the consistent-hashing table over `hosts`, built with the snapshot on the
    // control loop and read by every worker's Maglev policy.
    std::shared_ptr<const MaglevTable> maglev;
};

class Cluster {
public:
    using Publish = std::function<void(std::shared_ptr<const ClusterSnapshot>)>;

    Cluster(config::Cluster config, std::unique_ptr<discovery::Resolver> resolver, Publish publish);

    void start();
    void stop();

    const std::string& name() const { return config_->name; }
    const config::Cluster& config() const { return *config_; }
    const ClusterStats& stats() const { return *stats_; }
    std::shared_ptr<const ClusterSnapshot> snapshot() const { return snapshot_; }
    void mark_dynamic() { stats_->dynamic = true; }
    // Marks the cluster used now (dynamic clusters: the idle sweep reads it).
    void touch() const {
        stats_->last_used_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    // Where the hosts come from and how that is going (kind, resolved, stale, failures, last error).
    discovery::ResolverStatus discovery_status() const { return resolver_->status(); }

    // Host-set changes applied so far (control loop only, like everything in Cluster).
    struct HostChanges {
        std::uint64_t added = 0;
        std::uint64_t removed = 0;
        std::uint64_t weight = 0;   // a host that stayed with a new weight
    };
    const HostChanges& host_changes() const { return host_changes_; }

private:
    void on_endpoints(discovery::EndpointSet endpoints);

    std::shared_ptr<const config::Cluster> config_;
    std::shared_ptr<ClusterStats> stats_;
    std::unique_ptr<discovery::Resolver> resolver_;
    Publish publish_;
    std::map<boost::asio::ip::tcp::endpoint, std::shared_ptr<const discovery::Host>> hosts_;
    std::shared_ptr<const ClusterSnapshot> snapshot_;
    std::uint64_t version_ = 0;
    HostChanges host_changes_;
};

// The resolver a cluster's `discovery` block asks for. DNS and file resolvers run on `control`.
std::unique_ptr<discovery::Resolver> make_resolver(const config::Cluster& config,
                                                   boost::asio::io_context& control);

}  // namespace drover::proxy
