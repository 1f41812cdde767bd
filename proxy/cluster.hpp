#pragma once
// A cluster as the data path sees it (ClusterSnapshot, immutable, one per change) and as the control
// loop owns it (Cluster: runs the resolver, keeps long-lived hosts, builds and publishes snapshots).
// Workers never see Cluster; they read the snapshot last posted to them.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <optional>
#include <random>

#include "config/config.hpp"
#include "discovery/host.hpp"
#include "discovery/resolver.hpp"
#include "health/health_state.hpp"
#include "health/outcome.hpp"
#include "health/outlier_detector.hpp"
#include "health/overload.hpp"
#include "health/probe.hpp"
#include "health/selection.hpp"
#include "health/tls_client.hpp"
#include "proxy/connection_budget.hpp"

namespace drover::proxy {

// Cluster-wide counters and limits, shared by every worker (touched once per connection, not per byte).
// Upstream latency of one worker's requests to one cluster: its own cache lines, one writer (that
// worker, with plain relaxed load+store, no locked add), summed by /metrics.
struct LatencyHistogram {
    // Bounds (seconds) are kUpstreamDurationBuckets; the last count is +Inf.
    std::array<std::atomic<std::uint64_t>, 14> counts{};
    std::atomic<std::uint64_t> sum_micros{0};

    void add(std::chrono::microseconds elapsed);
};
inline constexpr std::array<double, 13> kUpstreamDurationBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                                    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

struct ClusterStats {
    // One per worker, made before any worker sees the cluster (Server::add_cluster); empty in tests.
    std::vector<std::unique_ptr<LatencyHistogram>> latency;
    // Upstream connections open (limits.max_connections): tcp relays, HTTP in use or parked idle.
    ConnectionBudget connections;
    std::atomic<std::uint64_t> unavailable_no_host{0};
    std::atomic<std::uint64_t> unavailable_max_connections{0};
    // Retries (HTTP): sent, refused by the retry budget, and by cause.
    std::atomic<std::uint64_t> retries{0};
    std::atomic<std::uint64_t> retries_budget_exhausted{0};
    std::atomic<std::uint64_t> retries_connect_failure{0};
    // Requests held while no host could take them: how many now, in all, and how they ended.
    std::atomic<std::int64_t> held_active{0};
    std::atomic<std::uint64_t> held_total{0};
    std::atomic<std::uint64_t> held_served{0};
    std::atomic<std::uint64_t> held_timed_out{0};
    std::atomic<std::uint64_t> held_rejected_full{0};   // past limits.max_pending: 503 at once
    std::atomic<std::uint64_t> held_client_left{0};     // tcp: the client closed while held
    // Admission (HTTP): requests in flight (limits.max_requests), waiting for a slot, and shed by why.
    std::atomic<std::int64_t> requests_active{0};
    GrantQueue request_waiters;   // requests waiting for a max_requests slot, oldest first, all workers
    // Requests waiting for a host under max_requests_per_host (every eligible one at it), oldest first,
    // all workers: a finished request grants its host's slot (the unit: the host) to the oldest.
    GrantQueue host_waiters;
    std::atomic<std::int64_t> pending_active{0};
    std::atomic<std::uint64_t> shed_max_requests{0};   // the cluster's breaker, queue full or timed out
    std::atomic<std::uint64_t> shed_host_capacity{0};  // every eligible host at max_requests_per_host
    std::atomic<std::uint64_t> shed_queue_full{0};     // past limits.max_pending waiting already
    std::atomic<std::uint64_t> shed_low_priority{0};   // x-drover-priority: low, not queued
    std::atomic<std::uint64_t> shed_adaptive{0};       // no adaptive-concurrency slot within queue_timeout
    std::atomic<std::uint64_t> shed_memory{0};         // the process was past process.max_memory
    std::atomic<std::uint64_t> shed_descriptors{0};    // no descriptor left for the upstream connection
    std::atomic<std::uint64_t> shed_max_connections{0};   // no room for a connection within queue_timeout
    std::atomic<std::int64_t> concurrency_limit{0};    // adaptive_concurrency: the workers' limits summed
    // Clusters made from a template on first use: when a request last used it (steady clock, ns), so
    // the control loop can drop it once idle. Written by workers only for such clusters.
    bool dynamic = false;
    std::atomic<std::int64_t> last_used_ns{0};
};

class MaglevTable;   // proxy/load_balancer/maglev.hpp

struct HostEntry {
    std::shared_ptr<const discovery::Host> host;
    std::uint32_t weight = 1;
    // maglev only: of the keys the table gives this host, the share it takes (out of kFullShare), the
    // rest going on to the next slot's host. Below full while the host ramps up (slow start) or says it
    // is overloaded, relative to the cluster's least held-back host: the table itself keeps the
    // configured weights, so that a ramp moves no other host's keys.
    static constexpr std::uint32_t kFullShare = 1u << 16;
    std::uint32_t key_share = kFullShare;
};

class Cluster;

// How workers tell the control loop what happened to each upstream attempt. Every failure is posted
// at once (an ejection-worthy streak must not wait for a sweep); a success only while the host has a
// failure streak to reset (HostStats::failing), so a healthy cluster costs one relaxed load per request.
class HealthReporter : public std::enable_shared_from_this<HealthReporter> {
public:
    HealthReporter(boost::asio::io_context& control, Cluster* cluster) : control_(control), cluster_(cluster) {}
    void report(const std::shared_ptr<const discovery::Host>& host, health::Outcome outcome) const;
    // The host said it is busy (429, or 503 with Retry-After): lower its share instead of ejecting it.
    void overloaded(const std::shared_ptr<const discovery::Host>& host, std::chrono::milliseconds retry_after) const;
    void detach() { cluster_ = nullptr; }   // control loop: the cluster is going away
    bool attached() const { return cluster_ != nullptr; }

private:
    boost::asio::io_context& control_;
    Cluster* cluster_;   // read and cleared on the control loop only
};

struct ClusterSnapshot {
    std::shared_ptr<const config::Cluster> config;
    std::shared_ptr<ClusterStats> stats;
    std::shared_ptr<HealthReporter> reporter;   // null for snapshots built outside a Cluster (tests)
    std::shared_ptr<const health::TlsClient> tls;   // TLS to the hosts; null = plain TCP
    // The hosts a request may go to now (healthy, not ejected, not draining; every counted host in
    // panic with use_all), in discovery order, with their effective weights (slow start and overload
    // folded in, in units of 1/kWeightScale of a configured weight).
    std::vector<HostEntry> hosts;
    std::size_t listed = 0;          // hosts discovery lists, eligible or not
    bool panic = false;
    // While no host is eligible: when one may be back, as a 503's Retry-After (seconds, >= 1).
    std::uint32_t retry_after_seconds = 1;
    std::uint64_t version = 0;      // grows with every rebuild; per-worker LB state keys off it
    // Maglev clusters only: the consistent-hashing table over `hosts`, built with the snapshot on the
    // control loop and read by every worker's Maglev policy.
    std::shared_ptr<const MaglevTable> maglev;
};

// Snapshot weights are the configured weight times this, so slow start and overload can cut a weight-1
// host to a fraction of its share in the integer weights the balancers use.
inline constexpr std::uint32_t kWeightScale = 100;

// Control loop only: one host of a cluster with its health, as /clusters shows it.
struct HostRecord {
    HostRecord(std::shared_ptr<const discovery::Host> h, const config::HealthCheck& check)
        : host(std::move(h)), health(check) {}

    struct Event {
        std::chrono::steady_clock::time_point at;
        std::string what;   // "healthy", "unhealthy", "ejected", "returned", "overloaded", "added"
        std::string why;    // of the latest, when repeated
        std::uint32_t times = 1;   // the same event this many times in a row (a host answering busy)
    };
    static constexpr std::size_t kEvents = 32;

    std::shared_ptr<const discovery::Host> host;
    std::uint32_t weight = 1;
    std::uint32_t priority = 0;
    health::HealthState health;
    std::optional<std::chrono::steady_clock::time_point> slow_start_since;
    bool draining = false;
    bool removed = false;   // left discovery: its probe loop ends
    bool warming = false;   // of the cluster's first set, not probed yet (see Cluster::warming)
    std::optional<health::ProbeResult> last_probe;
    std::chrono::steady_clock::time_point last_probe_at{};
    std::deque<Event> events;   // newest last, at most kEvents
    // Why it last turned unhealthy, and was last ejected: kept apart from `events`, which a long
    // outage can cycle through, so /clusters can always say why a host is out.
    std::string unhealthy_why;
    std::string ejected_why;
    std::optional<boost::asio::steady_timer> probe_timer;
    std::uint64_t probe_generation = 0;   // a reload that changes the checks starts a new probe loop

    void note(std::chrono::steady_clock::time_point at, std::string what, std::string why);
};

class Cluster {
public:
    using Publish = std::function<void(std::shared_ptr<const ClusterSnapshot>)>;
    using Clock = std::chrono::steady_clock;

    // `tls`: TLS to the hosts as clusters[].tls asks (built by the caller, so that a bad file is a config
    // error rather than a dead cluster); null = plain TCP. Probes use it too.
    Cluster(config::Cluster config, std::unique_ptr<discovery::Resolver> resolver, Publish publish,
            boost::asio::io_context& control, std::shared_ptr<const health::TlsClient> tls = nullptr);
    ~Cluster();
    Cluster(const Cluster&) = delete;
    Cluster& operator=(const Cluster&) = delete;

    void start();
    void stop();

    const std::string& name() const { return config_->name; }
    const config::Cluster& config() const { return *config_; }
    const ClusterStats& stats() const { return *stats_; }
    // One latency histogram per worker; call before any worker sees the cluster.
    void track_latency(std::size_t workers) {
        for (std::size_t i = 0; i < workers; ++i) { stats_->latency.push_back(std::make_unique<LatencyHistogram>()); }
    }
    std::shared_ptr<const ClusterSnapshot> snapshot() const { return snapshot_; }
    void mark_dynamic() { stats_->dynamic = true; }
    // Marks the cluster used now (dynamic clusters: the idle sweep reads it).
    void touch() const {
        stats_->last_used_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    // Where the hosts come from and how that is going (kind, resolved, stale, failures, last error).
    // The resolver's; while a new one (a reload) has not answered yet and the hosts of the one before
    // serve, resolved and stale.
    discovery::ResolverStatus discovery_status() const;

    // Host-set changes applied so far (control loop only, like everything in Cluster).
    struct HostChanges {
        std::uint64_t added = 0;
        std::uint64_t removed = 0;
        std::uint64_t weight = 0;   // a host that stayed with a new weight
    };
    const HostChanges& host_changes() const { return host_changes_; }

    // Health, for the status views (control loop).
    struct HealthCounters {
        std::uint64_t became_healthy = 0;
        std::uint64_t became_unhealthy = 0;
        std::uint64_t probes = 0;
        std::uint64_t probe_failures = 0;
        std::uint64_t probes_not_run = 0;   // Drover out of descriptors or buffers: no verdict
        std::uint64_t panics = 0;   // times the cluster entered panic
    };
    const HealthCounters& health_counters() const { return health_counters_; }
    const health::OutlierDetector& outlier() const { return outlier_; }
    const health::Overload& overload() const { return overload_; }
    // Hosts in discovery order.
    const std::vector<std::shared_ptr<HostRecord>>& hosts() const { return order_; }
    const HostRecord* find_host(std::string_view name) const;
    // The last selection: eligibility and slow-start share per host (same order as hosts()).
    const health::Selection& selection() const { return selection_; }
    bool panic() const { return snapshot_->panic; }
    // Hosts of the first discovered set not checked yet: /ready waits for them, so a fresh process is
    // not sent traffic it would have to hold until its hosts pass their first checks.
    std::size_t warming() const { return warming_; }

    // A reload changed this cluster's settings: hosts keep their health, ejections, drains and
    // counters; the new settings apply from the next probe, outcome and request. A new `tls` reaches
    // the workers with the next snapshot; connections pooled under the old one are not lent out again.
    // A new load-balancing policy or hash applies from the next snapshot. New discovery settings for
    // the same source (refresh bounds, max_stale) go to the running resolver; a new source (another
    // name, list or file) gets a new resolver, and the hosts serve until it delivers a set, which then
    // replaces them as any discovery update does (hosts it lists again keep their state). True then.
    bool reconfigure(config::Cluster config, std::shared_ptr<const health::TlsClient> tls);
    const std::shared_ptr<const health::TlsClient>& tls() const { return tls_; }

    // Admin drain of one host: no new requests (in-flight ones finish, then its connections close);
    // undrain brings it back through slow start. False when the cluster has no such host.
    bool set_draining(std::string_view host, bool draining);

    // From the reporter (control loop).
    void on_outcome(const std::shared_ptr<const discovery::Host>& host, health::Outcome outcome);
    void on_overload(const std::shared_ptr<const discovery::Host>& host, std::chrono::milliseconds retry_after);

private:
    void on_endpoints(discovery::EndpointSet endpoints);
    void rebuild();
    void start_probe(const std::shared_ptr<HostRecord>& record, bool initial);
    boost::asio::awaitable<void> probe_loop(std::shared_ptr<HostRecord> record, std::chrono::milliseconds first_delay);
    void on_probe(HostRecord& record, const health::ProbeResult& result);
    boost::asio::awaitable<void> maintain();
    void wake_maintenance();
    double unit_random();
    health::HostInput input_of(const HostRecord& record, Clock::time_point now) const;
    std::uint32_t retry_after_seconds(Clock::time_point now) const;

    std::shared_ptr<const config::Cluster> config_;
    std::shared_ptr<const health::TlsClient> tls_;
    std::shared_ptr<ClusterStats> stats_;
    std::unique_ptr<discovery::Resolver> resolver_;
    Publish publish_;
    boost::asio::io_context& control_;
    std::shared_ptr<HealthReporter> reporter_;
    std::map<boost::asio::ip::tcp::endpoint, std::shared_ptr<HostRecord>> hosts_;
    std::vector<std::shared_ptr<HostRecord>> order_;
    std::shared_ptr<const ClusterSnapshot> snapshot_;
    std::uint64_t version_ = 0;
    HostChanges host_changes_;
    HealthCounters health_counters_;
    Clock::time_point last_local_probe_warning_{};   // on_probe: one warning per 10 s
    std::mt19937_64 random_{std::random_device{}()};
    health::OutlierDetector outlier_;
    health::Overload overload_;
    health::SelectionSettings selection_settings_;
    health::Selection selection_;
    std::shared_ptr<boost::asio::steady_timer> maintenance_;
    bool started_ = false;
    bool stopped_ = false;
    bool first_set_ = true;
    bool inherited_ = false;   // the hosts are from the resolver before a reload's new one (discovery_status)
    bool ramping_ = false;
    std::size_t warming_ = 0;   // an eligible host is in slow start or recovering from overload
};

// The resolver a cluster's `discovery` block asks for. DNS and file resolvers run on `control`.
std::unique_ptr<discovery::Resolver> make_resolver(const config::Cluster& config,
                                                   boost::asio::io_context& control);

}  // namespace drover::proxy
