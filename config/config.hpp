#pragma once
// The typed configuration: what config/loader.cpp produces from YAML and every other layer reads.
// Plain values with their defaults in member initializers; no YAML type ever appears here.
// Keys and meanings follow ../shared/CONFIG.md (the public interface); docs/configuration.md documents
// every key with its default.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace drover::config {

using Duration = std::chrono::milliseconds;
using namespace std::chrono_literals;

// Where a value came from in the user's file; 1-based line and column. Empty file for defaults.
struct Mark {
    std::string file;
    int line = 0;
    int column = 0;

    // A mark says where a value was written, not what it is: settings that differ only in where they
    // sit in the file are the same settings (a reload that moved a block changes nothing).
    friend bool operator==(const Mark&, const Mark&) { return true; }
};

// An IP literal and a port: "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0" (port 0 = pick any).
struct Address {
    std::string host;   // IP literal without brackets
    std::uint16_t port = 0;

    std::string str() const;   // re-bracketed for IPv6: "[::1]:80"
    bool operator==(const Address&) const = default;
};

struct AdminConfig {
    Address address{"127.0.0.1", 9901};
    Mark mark;   // where address was written (empty: the default)

    bool operator==(const AdminConfig&) const = default;
};

struct LogConfig {
    enum class Level { debug, info, warn, error };
    Level level = Level::info;
};

struct ShutdownConfig {
    Duration drain_timeout = 15s;   // SIGTERM: how long live connections may finish before being closed
    // How long a keep-alive connection idle between requests is kept once a drain starts (or its
    // listener is removed): a request that comes meanwhile is answered with Connection: close.
    Duration idle_grace = 1s;
    // Between the drain's start (SIGTERM, POST /drain) and the listeners closing: /ready answers 503
    // while everything is served as usual, so load balancers polling it stop sending first.
    Duration delay = 0s;
};

// Protection of the process itself: past 95% of max_memory (resident), new connections are refused
// and new requests shed, so the work already admitted can finish instead of the process dying.
struct ProcessConfig {
    std::uint64_t max_memory = 0;   // bytes; 0 = no limit of Drover's own (the kernel's still applies)

    bool operator==(const ProcessConfig&) const = default;
};

struct TlsCertificate {
    std::string cert;   // PEM chain (leaf first); paths, relative ones resolved against the config file's folder
    std::string key;    // PEM private key
    Mark mark;          // where the entry is: errors loading the files point here

    bool operator==(const TlsCertificate&) const = default;
};

struct ListenerTls {
    std::vector<TlsCertificate> certificates;   // the first is the default: served when SNI matches none
    // Client certificates (mutual TLS): when set, every client must present one that this bundle's
    // CAs issued; empty = none asked for.
    std::string client_ca;
    enum class Version { tls1_2, tls1_3 };
    Version min_version = Version::tls1_2;
    Mark mark;

    bool operator==(const ListenerTls&) const = default;
};

struct RouteMatch {
    std::string host;          // exact, or "*.suffix"; empty = any
    std::string path_prefix;   // empty = any
};

struct Route {
    RouteMatch match;
    std::string cluster;            // exactly one of cluster and cluster_template
    std::string cluster_template;   // a cluster whose dns.name holds {host}: one instance per Host
    Mark mark;
};

struct ListenerLimits {
    std::uint64_t max_connections = 100000;
    std::uint64_t max_request_header_bytes = 64 * 1024;
    std::uint64_t max_request_body_bytes = 0;   // 0 = unlimited
    std::size_t max_request_headers = 100;        // header fields per request
    std::size_t max_uri_bytes = 8 * 1024;         // request-target length

    bool operator==(const ListenerLimits&) const = default;
};

struct ListenerTimeouts {
    Duration request_headers = 10s;
    Duration idle = 60s;

    bool operator==(const ListenerTimeouts&) const = default;
};

enum class Protocol { http, tcp };

struct Listener {
    std::string name;
    Address address;
    Protocol protocol = Protocol::http;
    std::optional<ListenerTls> tls;
    std::vector<Route> routes;   // http only
    std::string cluster;         // tcp only
    ListenerLimits limits;
    ListenerTimeouts timeouts;
    Mark mark;
};

struct StaticEndpoint {
    Address address;
    std::uint32_t weight = 1;

    bool operator==(const StaticEndpoint&) const = default;
};

struct StaticDiscovery {
    std::vector<StaticEndpoint> endpoints;

    bool operator==(const StaticDiscovery&) const = default;
};

struct DnsDiscovery {
    enum class Type { a, aaaa, a_aaaa, srv };
    std::string name;
    Type type = Type::a_aaaa;
    std::optional<std::uint16_t> port;   // required for a/aaaa; srv records carry their own
    std::vector<Address> servers;        // empty = the system resolver configuration
    Duration refresh_min = 1s;
    Duration refresh_max = 30s;
    // How long the last good set may keep serving after DNS starts failing; absent = until DNS
    // answers again. Past it, the set is dropped and the cluster has no hosts.
    std::optional<Duration> max_stale;

    bool operator==(const DnsDiscovery&) const = default;
};

struct FileDiscovery {
    std::string path;

    bool operator==(const FileDiscovery&) const = default;
};

using Discovery = std::variant<StaticDiscovery, DnsDiscovery, FileDiscovery>;

enum class LbPolicy { round_robin, least_request, random, maglev };

struct HashPolicy {
    enum class Kind { header, cookie, source_ip };
    Kind kind = Kind::source_ip;
    std::string name;   // header or cookie name

    bool operator==(const HashPolicy&) const = default;
};

struct StatusRange {
    int lo = 200;
    int hi = 399;
    bool operator==(const StatusRange&) const = default;
};

struct TcpProbe {
    bool operator==(const TcpProbe&) const = default;
};
struct HttpProbe {
    std::string path = "/";
    std::string host;   // empty = the cluster name
    std::vector<StatusRange> expected_statuses{{200, 399}};

    bool operator==(const HttpProbe&) const = default;
};
struct TlsProbe {
    bool operator==(const TlsProbe&) const = default;
};
using Probe = std::variant<TcpProbe, HttpProbe, TlsProbe>;

// On by default (self-healing): a cluster without a health_check block gets a TCP connect check with
// these values. `enabled: false` turns active checking off; every host then counts as healthy.
struct HealthCheck {
    bool enabled = true;
    Duration interval = 1s;
    Duration unhealthy_interval = 250ms;
    Duration timeout = 500ms;
    double jitter = 0.10;   // fraction of the interval
    std::uint32_t healthy_threshold = 2;
    std::uint32_t unhealthy_threshold = 2;
    Probe probe = TcpProbe{};

    bool operator==(const HealthCheck&) const = default;
};

// On by default, like HealthCheck; `enabled: false` turns passive ejection off.
struct OutlierDetection {
    bool enabled = true;
    std::uint32_t consecutive_failures = 3;
    Duration base_ejection_time = 5s;
    Duration max_ejection_time = 300s;
    double max_ejection_percent = 0.50;   // fraction

    bool operator==(const OutlierDetection&) const = default;
};

// Below panic_threshold: use every counted host (Envoy's behaviour), or none (hold, then 503).
enum class PanicPolicy { use_all, fail_closed };

enum class RetryOn { connect_failure, reset, timeout, status_502, status_503, status_504 };

struct Retries {
    std::uint32_t attempts = 2;   // extra tries, each on a different host
    std::vector<RetryOn> on{RetryOn::connect_failure, RetryOn::reset,      RetryOn::timeout,
                            RetryOn::status_502,      RetryOn::status_503, RetryOn::status_504};
    double budget = 0.20;   // fraction of requests that may be retries
    Duration per_try_timeout = 2s;

    bool operator==(const Retries&) const = default;
};

struct ClusterTimeouts {
    Duration connect = 1s;
    Duration request = 15s;
    Duration idle = 60s;

    bool operator==(const ClusterTimeouts&) const = default;
};

struct ClusterLimits {
    std::uint64_t max_connections = 1024;
    std::uint64_t max_pending = 256;
    std::uint64_t max_requests = 1024;
    // At most this many requests in flight to one host (0 = no cap): one slow replica cannot swallow
    // the cluster's slots, and when a host is lost the cluster's capacity shrinks with it at once.
    std::uint64_t max_requests_per_host = 0;
    Duration queue_timeout = 100ms;

    bool operator==(const ClusterLimits&) const = default;
};

struct AdaptiveConcurrency {
    std::uint32_t min_limit = 4;
    std::uint32_t max_limit = 1000;

    bool operator==(const AdaptiveConcurrency&) const = default;
};

struct UpstreamTls {
    std::string sni;    // sent as SNI and checked against the host's certificate; empty = neither
    std::string ca;     // PEM trust anchors; empty = the system's
    std::string cert;   // optional client certificate (mTLS), with its key
    std::string key;
    bool verify = true;   // verify the host's certificate chain (and name, with sni)
    Mark mark;

    bool operator==(const UpstreamTls&) const = default;
};

struct Cluster {
    std::string name;
    Discovery discovery;
    // P2C least request routes around a slow replica on its own: the self-healing default.
    LbPolicy load_balancing = LbPolicy::least_request;
    std::optional<HashPolicy> hash;
    HealthCheck health_check;
    OutlierDetection outlier_detection;
    double panic_threshold = 0.50;
    PanicPolicy panic_policy = PanicPolicy::use_all;
    // SRV priority groups: a group's health is this x its available share (capped at 1); the rest of its
    // load spills to the next groups (Envoy's overprovisioning factor). At least 1.
    double priority_overprovisioning = 1.40;
    Duration slow_start = 10s;
    // While no host can take a request (all down, or still unchecked at start), requests wait this long
    // for one to come back before a 503; 0 answers 503 at once.
    Duration hold_timeout = 3s;
    Retries retries;
    ClusterTimeouts timeouts;
    ClusterLimits limits;
    std::optional<AdaptiveConcurrency> adaptive_concurrency;
    std::optional<UpstreamTls> tls;
    // Templates only (dns.name holds {host}): bounds on the clusters made from it on first use.
    std::uint32_t max_clusters = 100;
    Duration idle_timeout = std::chrono::minutes(5);
    Mark mark;

    // A template is instantiated per request Host instead of being resolved itself.
    bool is_template() const;
    // The service the cluster stands for: the Host of HTTP checks and the SNI of TLS checks when the
    // config names none. Its name; for a cluster made from a template ("template/host"), the host;
    // for a template itself, "{host}".
    std::string service_name() const;
};

struct AccessLogConfig {
    std::string path = "stderr";   // "stderr" or a file (appended to), relative to the config's folder
    Mark mark;

    bool operator==(const AccessLogConfig&) const = default;
};

struct Config {
    std::string source;   // file the config came from ("<demo>" for the embedded one)
    AdminConfig admin;
    std::optional<AccessLogConfig> access_log;   // absent = off
    std::uint32_t workers = 0;   // 0 = auto: the number of cores
    Mark workers_mark;           // where workers was written (empty: the default)
    LogConfig log;
    ShutdownConfig shutdown;
    ProcessConfig process;
    std::vector<Listener> listeners;
    Mark listeners_mark;   // the listeners key's value, or the file's start without one
    std::vector<Cluster> clusters;

    const Cluster* find_cluster(std::string_view name) const;
};

}  // namespace drover::config
