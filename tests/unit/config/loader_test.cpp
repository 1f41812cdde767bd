// config/loader: YAML -> Config, every documented key, every error with file:line:col and key path.
// Inline YAML starts on the line after `R"(`; load() drops that first newline so line 1 is the first
// line written, which keeps the expected line numbers readable next to the text.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "config/loader.hpp"

namespace drover::config {
namespace {

using namespace std::chrono_literals;

std::string data_file(std::string_view name) {
    return std::string{DROVER_TEST_DATA_DIR "/config/data/"} + std::string{name};
}

std::string read_text(const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

LoadResult load(std::string_view yaml) {
    if (!yaml.empty() && yaml.front() == '\n') { yaml.remove_prefix(1); }
    return load_string(yaml, "test.yaml");
}

LoadResult load_all(std::string_view yaml) { return load(yaml); }

std::string listing(const LoadResult& r) {
    std::string out;
    for (const auto& e : r.errors) { out += "  " + e.str() + "\n"; }
    return out.empty() ? "  (no errors)\n" : out;
}

// True when some error is at line:column with this key path and its message contains `text`.
::testing::AssertionResult HasError(const LoadResult& r, int line, int column, std::string_view path,
                                    std::string_view text) {
    for (const auto& e : r.errors) {
        if (e.mark.line == line && e.mark.column == column && e.path == path &&
            e.message.find(text) != std::string::npos) {
            return ::testing::AssertionSuccess();
        }
    }
    return ::testing::AssertionFailure()
           << "no error " << line << ":" << column << ": " << path << ": ..." << text << "...\nerrors:\n"
           << listing(r);
}

// The same, and it is the only error.
::testing::AssertionResult HasOnlyError(const LoadResult& r, int line, int column, std::string_view path,
                                        std::string_view text) {
    if (r.errors.size() != 1) {
        return ::testing::AssertionFailure() << "expected exactly one error, got " << r.errors.size() << ":\n"
                                             << listing(r);
    }
    if (r.config) { return ::testing::AssertionFailure() << "a Config was returned despite an error"; }
    return HasError(r, line, column, path, text);
}

::testing::AssertionResult HasWarning(const LoadResult& r, int line, int column, std::string_view path,
                                      std::string_view text) {
    for (const auto& w : r.warnings) {
        if (w.warning && w.mark.line == line && w.mark.column == column && w.path == path &&
            w.message.find(text) != std::string::npos) {
            return ::testing::AssertionSuccess();
        }
    }
    std::string warnings;
    for (const auto& w : r.warnings) { warnings += "  " + w.str() + "\n"; }
    return ::testing::AssertionFailure() << "no warning " << line << ":" << column << ": " << path << ": ..." << text
                                         << "...\nwarnings:\n" << warnings;
}

::testing::AssertionResult Loads(const LoadResult& r) {
    if (r.ok() && r.config) { return ::testing::AssertionSuccess(); }
    return ::testing::AssertionFailure() << "expected no errors, got:\n" << listing(r);
}

// ---------------------------------------------------------------------------------------------------
// Valid files
// ---------------------------------------------------------------------------------------------------

TEST(Loader, MinimalTcpFileLoadsWithDefaults) {
    const std::string path = data_file("minimal_tcp.yaml");
    const auto r = load_file(path);
    ASSERT_TRUE(Loads(r));
    const Config& c = *r.config;
    EXPECT_EQ(c.source, path);
    EXPECT_EQ(c.admin.address, (Address{"127.0.0.1", 9901}));
    EXPECT_EQ(c.workers, 0u);
    EXPECT_EQ(c.log.level, LogConfig::Level::info);
    EXPECT_EQ(c.shutdown.drain_timeout, 15s);
    EXPECT_EQ(c.shutdown.idle_grace, 1s);
    EXPECT_EQ(c.shutdown.delay, 0s);

    ASSERT_EQ(c.listeners.size(), 1u);
    const Listener& l = c.listeners[0];
    EXPECT_EQ(l.name, "pg");
    EXPECT_EQ(l.address, (Address{"127.0.0.1", 15432}));
    EXPECT_EQ(l.protocol, Protocol::tcp);
    EXPECT_EQ(l.cluster, "postgres");
    EXPECT_FALSE(l.tls);
    EXPECT_TRUE(l.routes.empty());
    EXPECT_EQ(l.limits.max_connections, 100000u);
    EXPECT_EQ(l.limits.max_request_header_bytes, 64u * 1024);
    EXPECT_EQ(l.limits.max_request_body_bytes, 0u);
    EXPECT_EQ(l.timeouts.request_headers, 10s);
    EXPECT_EQ(l.timeouts.idle, 60s);
    EXPECT_EQ(l.mark.file, path);
    EXPECT_EQ(l.mark.line, 3);
    EXPECT_EQ(l.mark.column, 5);

    ASSERT_EQ(c.clusters.size(), 1u);
    const Cluster& k = c.clusters[0];
    EXPECT_EQ(k.name, "postgres");
    ASSERT_TRUE(std::holds_alternative<StaticDiscovery>(k.discovery));
    const auto& endpoints = std::get<StaticDiscovery>(k.discovery).endpoints;
    ASSERT_EQ(endpoints.size(), 2u);
    EXPECT_EQ(endpoints[0].address, (Address{"10.0.0.1", 5432}));
    EXPECT_EQ(endpoints[0].weight, 1u);
    EXPECT_EQ(endpoints[1].address, (Address{"10.0.0.2", 5432}));
    EXPECT_EQ(k.load_balancing, LbPolicy::least_request);
    EXPECT_FALSE(k.hash);
    // Self-healing by default: a TCP check and outlier detection with their documented values.
    EXPECT_TRUE(k.health_check.enabled);
    EXPECT_TRUE(std::holds_alternative<TcpProbe>(k.health_check.probe));
    EXPECT_TRUE(k.outlier_detection.enabled);
    EXPECT_EQ(k.hold_timeout, 3s);
    EXPECT_EQ(k.panic_policy, PanicPolicy::use_all);
    EXPECT_DOUBLE_EQ(k.panic_threshold, 0.5);
    EXPECT_EQ(k.slow_start, 10s);
    EXPECT_EQ(k.retries.attempts, 2u);
    EXPECT_EQ(k.retries.on.size(), 6u);
    EXPECT_DOUBLE_EQ(k.retries.budget, 0.2);
    EXPECT_EQ(k.retries.per_try_timeout, 2s);
    EXPECT_EQ(k.timeouts.connect, 1s);
    EXPECT_EQ(k.timeouts.request, 15s);
    EXPECT_EQ(k.timeouts.idle, 60s);
    EXPECT_EQ(k.limits.max_connections, 1024u);
    EXPECT_EQ(k.limits.max_pending, 256u);
    EXPECT_EQ(k.limits.max_requests, 1024u);
    EXPECT_EQ(k.limits.queue_timeout, 100ms);
    EXPECT_FALSE(k.adaptive_concurrency);
    EXPECT_FALSE(k.tls);
    EXPECT_EQ(k.mark.line, 9);
    EXPECT_EQ(k.mark.column, 5);
    EXPECT_EQ(c.find_cluster("postgres"), &k);
}

TEST(Loader, AllKeysRoundTrip) {
    const auto r = load_file(data_file("all_keys.yaml"));
    ASSERT_TRUE(Loads(r));
    const Config& c = *r.config;
    EXPECT_EQ(c.admin.address, (Address{"127.0.0.2", 9902}));
    EXPECT_EQ(c.workers, 4u);
    EXPECT_EQ(c.log.level, LogConfig::Level::debug);
    EXPECT_EQ(c.shutdown.drain_timeout, 20s);
    EXPECT_EQ(c.shutdown.idle_grace, 250ms);
    EXPECT_EQ(c.shutdown.delay, 2s);

    ASSERT_EQ(c.listeners.size(), 2u);
    const Listener& web = c.listeners[0];
    EXPECT_EQ(web.name, "web");
    EXPECT_EQ(web.address, (Address{"0.0.0.0", 8080}));
    EXPECT_EQ(web.protocol, Protocol::http);
    ASSERT_TRUE(web.tls);
    ASSERT_EQ(web.tls->certificates.size(), 2u);
    EXPECT_EQ(web.tls->certificates[0].cert, data_file("certs/web.pem"));
    EXPECT_EQ(web.tls->certificates[0].key, data_file("certs/web.key"));
    EXPECT_EQ(web.tls->certificates[1].cert, data_file("certs/other.pem"));
    EXPECT_EQ(web.tls->certificates[1].key, data_file("certs/other.key"));
    ASSERT_EQ(web.routes.size(), 3u);
    EXPECT_EQ(web.routes[0].match.host, "api.example.com");
    EXPECT_EQ(web.routes[0].match.path_prefix, "/v1/");
    EXPECT_EQ(web.routes[0].cluster, "api");
    EXPECT_EQ(web.routes[0].mark.line, 25);
    EXPECT_EQ(web.routes[0].mark.column, 9);
    EXPECT_EQ(web.routes[1].match.host, "*.example.com");
    EXPECT_EQ(web.routes[1].match.path_prefix, "");
    EXPECT_EQ(web.routes[1].cluster, "web");
    EXPECT_EQ(web.routes[2].match.host, "");
    EXPECT_EQ(web.routes[2].match.path_prefix, "");
    EXPECT_EQ(web.routes[2].cluster, "web");
    EXPECT_EQ(web.cluster, "");
    EXPECT_EQ(web.limits.max_connections, 50000u);
    EXPECT_EQ(web.limits.max_request_header_bytes, 32u * 1024);
    EXPECT_EQ(web.limits.max_request_body_bytes, 10u * 1000 * 1000);
    EXPECT_EQ(web.timeouts.request_headers, 5s);
    EXPECT_EQ(web.timeouts.idle, 90s);
    EXPECT_EQ(web.mark.line, 16);
    EXPECT_EQ(web.mark.column, 5);

    const Listener& pg = c.listeners[1];
    EXPECT_EQ(pg.name, "pg");
    EXPECT_EQ(pg.address, (Address{"::1", 15432}));
    EXPECT_EQ(pg.protocol, Protocol::tcp);
    EXPECT_EQ(pg.cluster, "postgres");
    EXPECT_EQ(pg.limits.max_connections, 200u);
    EXPECT_EQ(pg.timeouts.idle, 2min);
    EXPECT_EQ(pg.mark.line, 33);

    ASSERT_EQ(c.clusters.size(), 6u);
    const Cluster& w = c.clusters[0];
    EXPECT_EQ(w.name, "web");
    EXPECT_EQ(w.mark.line, 41);
    EXPECT_EQ(w.mark.column, 5);
    ASSERT_TRUE(std::holds_alternative<DnsDiscovery>(w.discovery));
    const auto& dns = std::get<DnsDiscovery>(w.discovery);
    EXPECT_EQ(dns.name, "web.default.svc.cluster.local");
    EXPECT_EQ(dns.type, DnsDiscovery::Type::a_aaaa);
    EXPECT_EQ(dns.port, std::optional<std::uint16_t>{8080});
    ASSERT_EQ(dns.servers.size(), 2u);
    EXPECT_EQ(dns.servers[0], (Address{"127.0.0.1", 5353}));
    EXPECT_EQ(dns.servers[1], (Address{"::1", 53}));
    EXPECT_EQ(dns.refresh_min, 2s);
    EXPECT_EQ(dns.refresh_max, 1min);
    EXPECT_EQ(w.load_balancing, LbPolicy::maglev);
    ASSERT_TRUE(w.hash);
    EXPECT_EQ(w.hash->kind, HashPolicy::Kind::header);
    EXPECT_EQ(w.hash->name, "x-user-id");
    const HealthCheck& hc = w.health_check;
    EXPECT_EQ(hc.interval, 2s);
    EXPECT_EQ(hc.unhealthy_interval, 500ms);
    EXPECT_EQ(hc.timeout, 750ms);
    EXPECT_DOUBLE_EQ(hc.jitter, 0.2);
    EXPECT_EQ(hc.healthy_threshold, 3u);
    EXPECT_EQ(hc.unhealthy_threshold, 4u);
    ASSERT_TRUE(std::holds_alternative<HttpProbe>(hc.probe));
    const auto& http = std::get<HttpProbe>(hc.probe);
    EXPECT_EQ(http.path, "/healthz");
    EXPECT_EQ(http.host, "web.internal");
    EXPECT_EQ(http.expected_statuses, (std::vector<StatusRange>{{200, 299}, {304, 304}}));
    EXPECT_EQ(w.outlier_detection.consecutive_failures, 5u);
    EXPECT_EQ(w.outlier_detection.base_ejection_time, 10s);
    EXPECT_EQ(w.outlier_detection.max_ejection_time, 10min);
    EXPECT_DOUBLE_EQ(w.outlier_detection.max_ejection_percent, 0.3);
    EXPECT_DOUBLE_EQ(w.panic_threshold, 0.4);
    EXPECT_EQ(w.slow_start, 30s);
    EXPECT_EQ(w.retries.attempts, 3u);
    EXPECT_EQ(w.retries.on,
              (std::vector<RetryOn>{RetryOn::connect_failure, RetryOn::reset, RetryOn::status_503}));
    EXPECT_DOUBLE_EQ(w.retries.budget, 0.25);
    EXPECT_EQ(w.retries.per_try_timeout, 1500ms);
    EXPECT_EQ(w.timeouts.connect, 2s);
    EXPECT_EQ(w.timeouts.request, 20s);
    EXPECT_EQ(w.timeouts.idle, 90s);
    EXPECT_EQ(w.limits.max_connections, 2048u);
    EXPECT_EQ(w.limits.max_pending, 128u);
    EXPECT_EQ(w.limits.max_requests, 4096u);
    EXPECT_EQ(w.limits.queue_timeout, 250ms);
    ASSERT_TRUE(w.adaptive_concurrency);
    EXPECT_EQ(w.adaptive_concurrency->min_limit, 8u);
    EXPECT_EQ(w.adaptive_concurrency->max_limit, 500u);
    ASSERT_TRUE(w.tls);
    EXPECT_EQ(w.tls->sni, "web.internal");
    EXPECT_TRUE(w.tls->verify);
    EXPECT_EQ(w.tls->mark.line, 78);
    EXPECT_EQ(w.tls->ca, data_file("certs/ca.pem"));
    EXPECT_EQ(w.tls->cert, data_file("certs/client.pem"));
    EXPECT_EQ(w.tls->key, data_file("certs/client.key"));

    const Cluster& api = c.clusters[1];
    EXPECT_EQ(api.name, "api");
    ASSERT_TRUE(std::holds_alternative<StaticDiscovery>(api.discovery));
    const auto& endpoints = std::get<StaticDiscovery>(api.discovery).endpoints;
    ASSERT_EQ(endpoints.size(), 2u);
    EXPECT_EQ(endpoints[0].address, (Address{"127.0.0.1", 9001}));
    EXPECT_EQ(endpoints[0].weight, 1u);
    EXPECT_EQ(endpoints[1].address, (Address{"::1", 9002}));
    EXPECT_EQ(endpoints[1].weight, 3u);
    EXPECT_EQ(api.load_balancing, LbPolicy::least_request);

    const Cluster& postgres = c.clusters[2];
    ASSERT_TRUE(std::holds_alternative<FileDiscovery>(postgres.discovery));
    EXPECT_EQ(std::get<FileDiscovery>(postgres.discovery).path, "/etc/drover/endpoints/postgres.yaml");
    EXPECT_EQ(postgres.load_balancing, LbPolicy::random);
    EXPECT_TRUE(std::holds_alternative<TcpProbe>(postgres.health_check.probe));
    EXPECT_EQ(postgres.health_check.interval, 1s);   // the rest keeps its defaults

    const Cluster& srv = c.clusters[3];
    ASSERT_TRUE(std::holds_alternative<DnsDiscovery>(srv.discovery));
    EXPECT_EQ(std::get<DnsDiscovery>(srv.discovery).type, DnsDiscovery::Type::srv);
    EXPECT_EQ(std::get<DnsDiscovery>(srv.discovery).port, std::nullopt);
    ASSERT_TRUE(srv.hash);
    EXPECT_EQ(srv.hash->kind, HashPolicy::Kind::cookie);
    EXPECT_EQ(srv.hash->name, "session");
    EXPECT_TRUE(std::holds_alternative<TlsProbe>(srv.health_check.probe));

    const Cluster& sticky = c.clusters[4];
    EXPECT_EQ(std::get<DnsDiscovery>(sticky.discovery).type, DnsDiscovery::Type::a);
    EXPECT_EQ(std::get<DnsDiscovery>(sticky.discovery).port, std::optional<std::uint16_t>{80});
    ASSERT_TRUE(sticky.hash);
    EXPECT_EQ(sticky.hash->kind, HashPolicy::Kind::source_ip);

    const Cluster& v6 = c.clusters[5];
    EXPECT_EQ(std::get<DnsDiscovery>(v6.discovery).type, DnsDiscovery::Type::aaaa);
    EXPECT_EQ(v6.load_balancing, LbPolicy::round_robin);
}

// The first ```yaml block in `markdown` after `heading` (empty heading: the first block at all).
std::string yaml_block(const std::string& markdown, std::string_view heading = {}) {
    const auto from = heading.empty() ? 0 : markdown.find(heading);
    if (from == std::string::npos) { return {}; }
    const std::string fence = "```yaml\n";
    const auto begin = markdown.find(fence, from);
    if (begin == std::string::npos) { return {}; }
    const auto end = markdown.find("```", begin + fence.size());
    return markdown.substr(begin + fence.size(), end - begin - fence.size());
}

// The first ```yaml block of CONFIG.md, the public schema. It lives in the team's shared/ folder
// beside the repository (CI has it there); a clone on its own has only docs/configuration.md, so the
// checks against CONFIG.md skip, saying so, rather than fail a user's test run.
bool config_md_present() { return std::filesystem::exists(DROVER_SHARED_DIR "/CONFIG.md"); }
std::string config_md_example() { return yaml_block(read_text(DROVER_SHARED_DIR "/CONFIG.md")); }
#define SKIP_WITHOUT_CONFIG_MD()                                                                  \
    if (!config_md_present()) { GTEST_SKIP() << DROVER_SHARED_DIR "/CONFIG.md is not beside this clone"; }

// Every word used as a key ("name:", "{ cert: ...") in a YAML text, comments removed.
std::set<std::string> keys_in(const std::string& yaml) {
    std::set<std::string> keys;
    std::istringstream lines{yaml};
    const std::regex key{R"(([A-Za-z_][A-Za-z0-9_]*):(\s|$))"};
    for (std::string line; std::getline(lines, line);) {
        if (const auto hash = line.find('#'); hash != std::string::npos) { line.erase(hash); }
        for (std::sregex_iterator it{line.begin(), line.end(), key}, end; it != end; ++it) {
            keys.insert((*it)[1]);
        }
    }
    return keys;
}

TEST(Loader, ConfigMdExampleParses) {
    SKIP_WITHOUT_CONFIG_MD();
    const std::string example = config_md_example();
    ASSERT_FALSE(example.empty()) << "no ```yaml block in " DROVER_SHARED_DIR "/CONFIG.md";
    const auto r = load_string(example, "CONFIG.md");
    ASSERT_TRUE(Loads(r));
    EXPECT_TRUE(check_runnable(*r.config).empty());
    // Two settings of the example have no effect, and drover says so rather than refuse the public
    // interface's own example: a port with a srv lookup, and a hash with least_request.
    ASSERT_EQ(r.warnings.size(), 2u);
    EXPECT_EQ(r.warnings[0].path, "clusters[0].discovery.dns.port");
    EXPECT_NE(r.warnings[0].message.find("ignored with type srv"), std::string::npos) << r.warnings[0].str();
    EXPECT_EQ(r.warnings[1].path, "clusters[0].hash");
    EXPECT_NE(r.warnings[1].message.find("only load_balancing: maglev hashes"), std::string::npos)
        << r.warnings[1].str();
    EXPECT_FALSE(r.config->clusters[0].hash);   // ignored, so /config does not show it either
}

TEST(Loader, AllKeysFixtureCoversEveryKeyOfConfigMd) {
    SKIP_WITHOUT_CONFIG_MD();
    const auto documented = keys_in(config_md_example());
    const auto covered = keys_in(read_text(data_file("all_keys.yaml")));
    ASSERT_GT(documented.size(), 50u);
    for (const auto& key : documented) {
        EXPECT_TRUE(covered.count(key)) << "CONFIG.md key '" << key << "' is missing from all_keys.yaml";
    }
    EXPECT_TRUE(covered.count("log"));
    EXPECT_TRUE(covered.count("shutdown"));
}

TEST(Loader, DocsExamplesLoad) {
    const std::string docs = read_text(DROVER_TEST_DATA_DIR "/../../docs/configuration.md");
    const std::string minimal = yaml_block(docs, "## A minimal file");
    ASSERT_FALSE(minimal.empty());
    EXPECT_TRUE(Loads(load_string(minimal, "configuration.md (minimal)")));   // as it is today
    const std::string full = yaml_block(docs, "## Full example");
    ASSERT_FALSE(full.empty());
    EXPECT_TRUE(Loads(load_string(full, "configuration.md (full)")));
    if (!config_md_present()) { return; }
    const auto shown = keys_in(full);
    for (const auto& key : keys_in(config_md_example())) {
        EXPECT_TRUE(shown.count(key)) << "CONFIG.md key '" << key << "' is missing from the full example";
    }
}

TEST(Loader, AbsentProtocolMeansHttp) {
    const auto r = load(R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - cluster: web
    limits: { max_request_headers: 50, max_uri_bytes: 4KiB }
access_log: { path: /var/log/drover/access.log }
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
)");
    ASSERT_TRUE(r.config) << listing(r);
    EXPECT_EQ(r.config->listeners[0].protocol, Protocol::http);
    EXPECT_EQ(r.config->listeners[0].limits.max_request_headers, 50u);
    EXPECT_EQ(r.config->listeners[0].limits.max_uri_bytes, 4096u);
    ASSERT_TRUE(r.config->access_log);
    EXPECT_EQ(r.config->access_log->path, "/var/log/drover/access.log");
}

TEST(Loader, SupportedSubsetLoadsWithoutAllowUnsupported) {
    const auto r = load(R"(
admin:
  address: 127.0.0.1:9902
workers: 2
log: { level: warn }
shutdown: { drain_timeout: 5s }
listeners:
  - name: pg
    address: 0.0.0.0:5432
    protocol: tcp
    cluster: postgres
    limits: { max_connections: 10 }
    timeouts: { idle: 30s }
clusters:
  - name: postgres
    discovery:
      static: [10.0.0.1:5432, { address: 10.0.0.2:5432, weight: 2 }]
    load_balancing: round_robin
    retries: { attempts: 1 }
    timeouts: { connect: 250ms }
    limits: { max_connections: 100 }
)");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->workers, 2u);
    EXPECT_EQ(r.config->log.level, LogConfig::Level::warn);
    EXPECT_EQ(r.config->clusters[0].retries.attempts, 1u);
    EXPECT_EQ(r.config->clusters[0].timeouts.connect, 250ms);
}

// ---------------------------------------------------------------------------------------------------
// Reading: files, syntax, structure
// ---------------------------------------------------------------------------------------------------

TEST(Loader, UnreadableFileIsOneErrorWithoutLine) {
    const auto r = load_file("/nonexistent/drover.yaml");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_FALSE(r.config);
    EXPECT_EQ(r.errors[0].mark.file, "/nonexistent/drover.yaml");
    EXPECT_EQ(r.errors[0].mark.line, 0);
    EXPECT_EQ(r.errors[0].message, "cannot read file: No such file or directory");
    EXPECT_EQ(r.errors[0].str(), "/nonexistent/drover.yaml: cannot read file: No such file or directory");
}

TEST(Loader, DirectoryIsUnreadable) {
    const auto r = load_file(DROVER_TEST_DATA_DIR "/config/data");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].mark.line, 0);
    EXPECT_EQ(r.errors[0].message, "cannot read file: Is a directory");
}

TEST(Loader, SyntaxErrorIsReportedAtTheParsersMark) {
    const auto r = load(R"(
listeners:
  - name: [web
    address: 127.0.0.1:80
)");
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_FALSE(r.config);
    EXPECT_EQ(r.errors[0].path, "");
    EXPECT_GE(r.errors[0].mark.line, 2);
    EXPECT_GT(r.errors[0].mark.column, 0);
    EXPECT_NE(r.errors[0].message.find("end of sequence flow not found"), std::string::npos) << listing(r);
}

TEST(Loader, BadIndentationIsASyntaxError) {
    const auto r = load("workers: 2\n  log: 1\n");
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].mark.line, 2);
    EXPECT_EQ(r.errors[0].str().rfind("test.yaml:2:", 0), 0u) << r.errors[0].str();
}

TEST(Loader, ErrorStrIsFileLineColumnPathMessage) {
    const auto r = load("workers: 0\n");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].str(),
              "test.yaml:1:10: workers: workers must be auto or a number from 1 to 256, got '0'");
}

TEST(Loader, EmptyFileGivesDefaults) {
    const auto r = load("");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->source, "test.yaml");
    EXPECT_TRUE(r.config->listeners.empty());
    EXPECT_EQ(r.config->admin.address, (Address{"127.0.0.1", 9901}));
}

TEST(Loader, SecondYamlDocumentIsAnError) {
    const auto r = load("workers: 2\n---\nworkers: 3\n");
    EXPECT_TRUE(HasOnlyError(r, 3, 1, "", "one YAML document"));
}

TEST(Loader, TopLevelMustBeAMap) {
    EXPECT_TRUE(HasOnlyError(load("- a\n- b\n"), 1, 1, "", "expected a map"));
}

TEST(Loader, UnknownKeySuggestsTheClosestKey) {
    const auto r = load(R"(
clusters:
  - name: postgres
    helth_check: {}
    discovery:
      static: [10.0.0.1:5432]
)");
    EXPECT_TRUE(HasOnlyError(r, 3, 5, "clusters[0].helth_check",
                             "unknown key 'helth_check' (did you mean 'health_check'?)"));
}

TEST(Loader, UnknownKeyFarFromAnyKeyHasNoSuggestion) {
    const auto r = load("frobnicate: 1\n");
    ASSERT_TRUE(HasOnlyError(r, 1, 1, "frobnicate", "unknown key 'frobnicate'"));
    EXPECT_EQ(r.errors[0].message, "unknown key 'frobnicate'");
}

TEST(Loader, UnknownKeyInFlowMapPointsAtTheKey) {
    const auto r = load("log: { level: info, levle: debug }\n");
    EXPECT_TRUE(HasOnlyError(r, 1, 21, "log.levle", "unknown key 'levle' (did you mean 'level'?)"));
}

TEST(Loader, DuplicateKeyInBlockMap) {
    const auto r = load(R"(
admin:
  address: 127.0.0.1:9901
  address: 127.0.0.1:9902
)");
    EXPECT_TRUE(HasOnlyError(r, 3, 3, "admin.address", "duplicate key 'address' (first at line 2, column 3)"));
}

TEST(Loader, DuplicateKeyInFlowMap) {
    const auto r = load("log: { level: info, level: debug }\n");
    EXPECT_TRUE(HasOnlyError(r, 1, 21, "log.level", "duplicate key 'level'"));
}

TEST(Loader, DuplicateTopLevelKey) {
    const auto r = load("workers: 2\nlog: { level: info }\nworkers: 3\n");
    EXPECT_TRUE(HasOnlyError(r, 3, 1, "workers", "duplicate key 'workers' (first at line 1, column 1)"));
}

TEST(Loader, WrongTypesAreAllReported) {
    const auto r = load(R"(
admin: 5
listeners: { name: x }
log:
  level: [debug]
clusters:
  - name: [a]
    discovery:
      static: [10.0.0.1:5432]
    limits: { max_connections: lots }
)");
    EXPECT_TRUE(HasError(r, 1, 8, "admin", "expected a map"));
    EXPECT_TRUE(HasError(r, 2, 12, "listeners", "expected a list"));
    EXPECT_TRUE(HasError(r, 4, 10, "log.level", "expected a string"));
    EXPECT_TRUE(HasError(r, 6, 11, "clusters[0].name", "expected a string"));
    EXPECT_TRUE(HasError(r, 9, 32, "clusters[0].limits.max_connections", "expected an integer, got 'lots'"));
    EXPECT_EQ(r.errors.size(), 5u) << listing(r);
}

TEST(Loader, KeysMustBeStrings) {
    const auto r = load("? [workers]\n: 2\n");
    EXPECT_TRUE(HasOnlyError(r, 1, 3, "", "expected a string key"));
}

TEST(Loader, AliasesWorkButMergeKeysAreRefused) {
    const auto r = load(R"(
clusters:
  - name: a
    discovery: &shared { static: [10.0.0.1:80] }
  - name: b
    discovery: *shared
    <<: { slow_start: 1s }
)");
    EXPECT_TRUE(HasOnlyError(r, 6, 5, "clusters[1].<<", "YAML merge keys ('<<') are not supported"));
    const auto ok = load(R"(
clusters:
  - name: a
    discovery: &shared { static: [10.0.0.1:80] }
  - name: b
    discovery: *shared
)");
    ASSERT_TRUE(Loads(ok));
    EXPECT_EQ(std::get<StaticDiscovery>(ok.config->clusters[1].discovery).endpoints[0].address,
              (Address{"10.0.0.1", 80}));
}

TEST(Loader, NeverThrowsOnTruncatedInput) {
    // Every prefix of a real file is some mix of syntax errors and schema errors; none may escape as
    // an exception, and any prefix that loads must yield a Config.
    const std::string text = read_text(data_file("all_keys.yaml"));
    ASSERT_FALSE(text.empty());
    for (std::size_t n = 0; n <= text.size(); n += 5) {
        LoadResult r;
        ASSERT_NO_THROW(r = load_string(std::string_view{text}.substr(0, n), "cut.yaml"))
            << "prefix of " << n << " bytes";
        EXPECT_EQ(r.ok(), r.config.has_value());
    }
}

TEST(Loader, ListItemMustBeAMap) {
    const auto r = load("listeners: [web]\n");
    EXPECT_TRUE(HasOnlyError(r, 1, 13, "listeners[0]", "expected a map"));
}

TEST(Loader, EmptyValueOfAScalarKeyPointsAtTheKey) {
    const auto r = load(R"(
shutdown:
  drain_timeout:
workers: 2
)");
    EXPECT_TRUE(HasOnlyError(r, 2, 3, "shutdown.drain_timeout", "expected a duration"));
}

TEST(Loader, EmptySectionMeansDefaults) {
    const auto r = load("admin:\nlog:\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->admin.address.port, 9901);
}

// ---------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------

TEST(Loader, Workers) {
    auto r = load("workers: auto\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->workers, 0u);
    r = load("workers: 256\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->workers, 256u);
    EXPECT_TRUE(HasOnlyError(load("workers: 257\n"), 1, 10, "workers", "auto or a number from 1 to 256"));
    EXPECT_TRUE(HasOnlyError(load("workers: 0\n"), 1, 10, "workers", "auto or a number from 1 to 256"));
    EXPECT_TRUE(HasOnlyError(load("workers: many\n"), 1, 10, "workers", "auto or a number from 1 to 256"));
    EXPECT_TRUE(
        HasOnlyError(load("workers: [1]\n"), 1, 10, "workers", "expected auto or a number of threads"));
}

TEST(Loader, LogLevels) {
    for (const auto& [word, level] :
         {std::pair{"debug", LogConfig::Level::debug}, std::pair{"info", LogConfig::Level::info},
          std::pair{"warn", LogConfig::Level::warn}, std::pair{"error", LogConfig::Level::error}}) {
        const auto r = load(std::string{"log: { level: "} + word + " }\n");
        ASSERT_TRUE(Loads(r));
        EXPECT_EQ(r.config->log.level, level);
    }
    EXPECT_TRUE(HasOnlyError(load("log: { level: eror }\n"), 1, 15, "log.level",
                             "'eror' is not one of debug, info, warn, error (did you mean 'error'?)"));
    const auto far = load("log: { level: verbose }\n");
    ASSERT_TRUE(HasOnlyError(far, 1, 15, "log.level", "'verbose' is not one of debug, info, warn, error"));
    EXPECT_EQ(far.errors[0].message.find("did you mean"), std::string::npos);
}

TEST(Loader, DurationNeedsAUnit) {
    const auto r = load(R"(
shutdown:
  drain_timeout: 30
)");
    EXPECT_TRUE(HasOnlyError(r, 2, 18, "shutdown.drain_timeout", "duration needs a unit, e.g. 500ms"));
}

TEST(Loader, DurationWithUnknownUnit) {
    EXPECT_TRUE(HasOnlyError(load("shutdown: { drain_timeout: 5us }\n"), 1, 28, "shutdown.drain_timeout",
                             "unknown duration unit 'us' (use ms, s, m or h)"));
}

TEST(Loader, QuotedValuesReadLikePlainOnes) {
    const auto r = load("shutdown: { drain_timeout: \"1.5s\" }\nworkers: '3'\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->shutdown.drain_timeout, 1500ms);
    EXPECT_EQ(r.config->workers, 3u);
}

TEST(Loader, ListenerAddressWithHostname) {
    const auto r = load(R"(
listeners:
  - name: pg
    address: db.internal:5432
    protocol: tcp
    cluster: postgres
clusters:
  - name: postgres
    discovery:
      static: [10.0.0.1:5432]
)");
    EXPECT_TRUE(HasOnlyError(r, 3, 14, "listeners[0].address",
                             "'db.internal' must be an IP address; use discovery.dns for names"));
}

TEST(Loader, AdminAddressMustBeValid) {
    EXPECT_TRUE(HasOnlyError(load("admin: { address: \"[::1]:99999\" }\n"), 1, 19, "admin.address",
                             "invalid port '99999'"));
    EXPECT_TRUE(HasOnlyError(load("admin: { address: ::1:9901 }\n"), 1, 19, "admin.address",
                             "IPv6 addresses need brackets"));
    EXPECT_TRUE(HasOnlyError(load("admin: { address: 127.0.0.1 }\n"), 1, 19, "admin.address",
                             "address needs a port"));
    const auto r = load("admin: { address: \"[::1]:9901\" }\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->admin.address, (Address{"::1", 9901}));
}

constexpr std::string_view kHttpListener = R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - cluster: web
)";

// An http listener (lines 1-5) plus this cluster body starting at line 6 ("clusters:").
std::string with_cluster(std::string_view cluster_yaml) {
    if (!cluster_yaml.empty() && cluster_yaml.front() == '\n') { cluster_yaml.remove_prefix(1); }
    return std::string{kHttpListener} + std::string{cluster_yaml};
}

TEST(Loader, SizeWithBadUnit) {
    const auto r = load_all(R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - cluster: web
    limits: { max_request_header_bytes: 64kb }
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
)");
    EXPECT_TRUE(HasOnlyError(r, 6, 41, "listeners[0].limits.max_request_header_bytes",
                             "unknown size unit 'kb' (use B, KiB, MiB, GiB, KB, MB or GB)"));
}

TEST(Loader, PercentOutOfRange) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    panic_threshold: 150%
)"));
    EXPECT_TRUE(
        HasOnlyError(r, 10, 22, "clusters[0].panic_threshold", "percentage must be between 0% and 100%"));
}

TEST(Loader, PriorityOverprovisioning) {
    const auto srv_cluster = [](std::string_view value) {
        return load_all(with_cluster(fmt::format(R"(
clusters:
  - name: web
    discovery:
      dns: {{ name: _web._tcp.example, type: srv }}
    priority_overprovisioning: {}
)", value)));
    };
    const auto ok = srv_cluster("200%");
    ASSERT_TRUE(ok.config) << listing(ok);
    EXPECT_TRUE(ok.warnings.empty());
    EXPECT_DOUBLE_EQ(ok.config->clusters[0].priority_overprovisioning, 2.0);
    EXPECT_DOUBLE_EQ(config::Cluster{}.priority_overprovisioning, 1.4);
    EXPECT_TRUE(HasOnlyError(srv_cluster("90%"), 10, 32, "clusters[0].priority_overprovisioning",
                             "percentage must be between 100% and 10000%"));

    // Without SRV there are no groups: accepted, with a warning.
    const auto static_hosts = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    priority_overprovisioning: 150%
)"));
    ASSERT_TRUE(static_hosts.config) << listing(static_hosts);
    EXPECT_TRUE(HasWarning(static_hosts, 10, 5, "clusters[0].priority_overprovisioning",
                           "priority_overprovisioning has no effect: only dns.type: srv gives priority groups"));
}

TEST(Loader, PercentNeedsASign) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    panic_threshold: 50
)"));
    EXPECT_TRUE(HasOnlyError(r, 10, 22, "clusters[0].panic_threshold", "percentage needs a '%', e.g. 50%"));
}

TEST(Loader, StaticEndpointForms) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static:
        - 10.0.0.1:80
        - { address: 10.0.0.2:80, weight: 10000 }
        - address: "[fd00::1]:80"
)"));
    ASSERT_TRUE(Loads(r));
    const auto& endpoints = std::get<StaticDiscovery>(r.config->clusters[0].discovery).endpoints;
    ASSERT_EQ(endpoints.size(), 3u);
    EXPECT_EQ(endpoints[1].weight, 10000u);
    EXPECT_EQ(endpoints[2].address, (Address{"fd00::1", 80}));
}

TEST(Loader, StaticEndpointErrors) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static:
        - { address: 10.0.0.1:80, weight: 0 }
        - { address: 10.0.0.2:80, weight: 10001 }
        - { weight: 2 }
        - web.internal:80
        - 10.0.0.5:0
        - [10.0.0.6:80]
        - 10.0.0.1:80
)"));
    EXPECT_TRUE(HasError(r, 10, 43, "clusters[0].discovery.static[0].weight", "must be between 1 and 10000"));
    EXPECT_TRUE(HasError(r, 11, 43, "clusters[0].discovery.static[1].weight", "must be between 1 and 10000"));
    EXPECT_TRUE(
        HasError(r, 12, 11, "clusters[0].discovery.static[2].address", "missing required key 'address'"));
    EXPECT_TRUE(
        HasError(r, 13, 11, "clusters[0].discovery.static[3]", "must be an IP address; use discovery.dns"));
    EXPECT_TRUE(HasError(r, 14, 11, "clusters[0].discovery.static[4]", "port 0 is not valid here"));
    EXPECT_TRUE(
        HasError(r, 15, 11, "clusters[0].discovery.static[5]", "expected an address or { address, weight }"));
    EXPECT_TRUE(HasError(r, 16, 11, "clusters[0].discovery.static[6]",
                         "10.0.0.1:80 is listed twice (first at line 10)"));
    EXPECT_EQ(r.errors.size(), 7u) << listing(r);
}

TEST(Loader, ExpectedStatuses) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      http: { expected_statuses: [200, 301-302, 99, 400-300, "2xx", 600] }
)"));
    EXPECT_TRUE(HasError(r, 11, 49, "clusters[0].health_check.http.expected_statuses[2]",
                         "status '99' is outside 100-599"));
    EXPECT_TRUE(HasError(r, 11, 53, "clusters[0].health_check.http.expected_statuses[3]",
                         "status range '400-300' is backwards"));
    EXPECT_TRUE(HasError(r, 11, 62, "clusters[0].health_check.http.expected_statuses[4]",
                         "expected a status or range"));
    EXPECT_TRUE(HasError(r, 11, 69, "clusters[0].health_check.http.expected_statuses[5]", "outside 100-599"));
    EXPECT_EQ(r.errors.size(), 4u) << listing(r);

    const auto ok = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      http: { path: /ready, expected_statuses: [200, 301-302] }
)"));
    ASSERT_TRUE(Loads(ok));
    const auto& probe = std::get<HttpProbe>(ok.config->clusters[0].health_check.probe);
    EXPECT_EQ(probe.path, "/ready");
    EXPECT_EQ(probe.host, "");
    EXPECT_EQ(probe.expected_statuses, (std::vector<StatusRange>{{200, 200}, {301, 302}}));
}

TEST(Loader, HealthCheckWithoutProbeDefaultsToTcp) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check: { interval: 5s }
)"));
    ASSERT_TRUE(Loads(r));
    EXPECT_TRUE(std::holds_alternative<TcpProbe>(r.config->clusters[0].health_check.probe));
    EXPECT_EQ(r.config->clusters[0].health_check.interval, 5s);
}

TEST(Loader, ATlsClusterWithoutProbeChecksWithATlsHandshake) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    tls: { sni: a.internal }
  - name: interval_only
    discovery: { static: [10.0.0.1:80] }
    tls: { sni: a.internal }
    health_check: { interval: 5s }
  - name: tcp_chosen
    discovery: { static: [10.0.0.1:80] }
    tls: { sni: a.internal }
    health_check: { tcp: {} }
)"));
    ASSERT_TRUE(Loads(r));
    EXPECT_TRUE(std::holds_alternative<TlsProbe>(r.config->clusters[0].health_check.probe));
    EXPECT_TRUE(std::holds_alternative<TlsProbe>(r.config->clusters[1].health_check.probe));
    EXPECT_EQ(r.config->clusters[1].health_check.interval, 5s);
    EXPECT_TRUE(std::holds_alternative<TcpProbe>(r.config->clusters[2].health_check.probe));
}

TEST(Loader, SelfHealingCanBeTurnedOffAndHoldAndPanicPolicySet) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check: { enabled: false }
    outlier_detection: { enabled: false }
    panic_policy: fail_closed
    hold_timeout: 0s
)"));
    ASSERT_TRUE(Loads(r));
    const auto& c = r.config->clusters[0];
    EXPECT_FALSE(c.health_check.enabled);
    EXPECT_FALSE(c.outlier_detection.enabled);
    EXPECT_EQ(c.panic_policy, PanicPolicy::fail_closed);
    EXPECT_EQ(c.hold_timeout, 0s);
    const auto bad = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check: { enabled: maybe }
    panic_policy: sometimes
)"));
    EXPECT_FALSE(bad.config);
    EXPECT_EQ(bad.errors.size(), 2u) << listing(bad);
}

TEST(Loader, RetryConditions) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    retries:
      on: [connect_failure, 502, "504", resett, 500]
)"));
    EXPECT_TRUE(HasError(
        r, 11, 41, "clusters[0].retries.on[3]",
        "'resett' is not one of connect_failure, reset, timeout, 502, 503, 504 (did you mean 'reset'?)"));
    EXPECT_TRUE(HasError(r, 11, 49, "clusters[0].retries.on[4]", "'500' is not one of"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);

    const auto ok = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    retries:
      on: [timeout, 502, "504"]
)"));
    ASSERT_TRUE(Loads(ok));
    EXPECT_EQ(ok.config->clusters[0].retries.on,
              (std::vector<RetryOn>{RetryOn::timeout, RetryOn::status_502, RetryOn::status_504}));
}

TEST(Loader, HashTakesExactlyOneKind) {
    auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    load_balancing: maglev
    hash: { header: x-user, cookie: session }
)"));
    EXPECT_TRUE(
        HasOnlyError(r, 11, 29, "clusters[0].hash.cookie",
                     "hash takes exactly one of header, cookie or source_ip; 'header' is already set"));

    r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    load_balancing: maglev
    hash: {}
)"));
    EXPECT_TRUE(HasOnlyError(r, 11, 11, "clusters[0].hash", "hash needs one of header, cookie or source_ip"));

    r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    load_balancing: maglev
    hash: { source_ip: false }
)"));
    EXPECT_TRUE(HasOnlyError(r, 11, 24, "clusters[0].hash.source_ip", "source_ip must be true"));
}

TEST(Loader, HealthCheckTakesOneProbe) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      tcp: {}
      http: { path: /healthz }
)"));
    EXPECT_TRUE(HasOnlyError(r, 12, 7, "clusters[0].health_check.http",
                             "health_check takes one probe (http, tcp or tls); 'tcp' is already set"));
}

TEST(Loader, HttpProbePathMustStartWithSlash) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      http: { path: healthz }
)"));
    EXPECT_TRUE(
        HasOnlyError(r, 11, 21, "clusters[0].health_check.http.path", "path 'healthz' must start with '/'"));
}

TEST(Loader, DnsTypeMustBeKnown) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      dns: { name: web.internal, type: mx, port: 80 }
)"));
    EXPECT_TRUE(
        HasOnlyError(r, 9, 40, "clusters[0].discovery.dns.type", "'mx' is not one of srv, a, aaaa, a+aaaa"));
}

TEST(Loader, UpstreamTlsCertAndKeyGoTogether) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    tls: { sni: web.internal, cert: client.pem }
)"));
    EXPECT_TRUE(HasOnlyError(r, 10, 31, "clusters[0].tls.cert", "cert and key go together"));
}

TEST(Loader, UpstreamTlsVerifyFalseRefusesAnUnusedCa) {
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    tls: { verify: false, ca: ca.pem }
)"));
    EXPECT_TRUE(HasOnlyError(r, 10, 31, "clusters[0].tls.ca", "ca is unused with verify: false"));
}

TEST(Loader, TlsPathsAreRelativeToTheConfigFile) {
    const auto r = load_string(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    tls: { ca: ../ca.pem, cert: /abs/client.pem, key: client.key }
)"), "/etc/drover/drover.yaml");
    ASSERT_TRUE(Loads(r));
    const auto& tls = *r.config->clusters[0].tls;
    EXPECT_EQ(tls.ca, "/etc/ca.pem");
    EXPECT_EQ(tls.cert, "/abs/client.pem");
    EXPECT_EQ(tls.key, "/etc/drover/client.key");
    EXPECT_TRUE(tls.verify);
}

TEST(Loader, ListenerTlsNeedsCertificates) {
    const auto r = load_all(R"(
listeners:
  - name: web
    address: 127.0.0.1:8443
    tls:
      certificates:
        - { cert: web.pem }
    routes:
      - cluster: web
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
)");
    EXPECT_TRUE(HasOnlyError(r, 6, 11, "listeners[0].tls.certificates[0].key", "missing required key 'key'"));
    EXPECT_TRUE(HasOnlyError(load_all(R"(
listeners:
  - name: web
    address: 127.0.0.1:8443
    tls: { certificates: [] }
    routes:
      - cluster: web
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
)"),
                             4, 26, "listeners[0].tls.certificates", "certificates needs at least one"));
}

// ---------------------------------------------------------------------------------------------------
// Semantic validation
// ---------------------------------------------------------------------------------------------------

constexpr std::string_view kPostgresCluster = R"(clusters:
  - name: postgres
    discovery:
      static: [10.0.0.1:5432]
)";

TEST(Loader, ListenerNameRequiredAndWellFormed) {
    EXPECT_TRUE(HasOnlyError(load(std::string{R"(
listeners:
  - address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster}),
                             2, 5, "listeners[0].name", "missing required key 'name'"));
    EXPECT_TRUE(HasOnlyError(load(std::string{R"(
listeners:
  - name: ""
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster}),
                             2, 11, "listeners[0].name", "listener name must not be empty"));
    EXPECT_TRUE(HasOnlyError(load(std::string{R"(
listeners:
  - name: my db
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster}),
                             2, 11, "listeners[0].name",
                             "listener name 'my db' may only contain letters, digits, '_', '.' and '-'"));
}

TEST(Loader, ClusterNameWellFormed) {
    const auto r = load(R"(
clusters:
  - name: "web/v2"
    discovery:
      static: [10.0.0.1:80]
)");
    EXPECT_TRUE(HasOnlyError(r, 2, 11, "clusters[0].name", "cluster name 'web/v2' may only contain"));
    EXPECT_TRUE(
        Loads(load("clusters:\n  - name: Web_v2.blue-1\n    discovery: { static: [10.0.0.1:80] }\n")));
}

TEST(Loader, DuplicateListenerName) {
    const auto r = load(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
  - name: pg
    address: 127.0.0.1:6432
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(r, 6, 11, "listeners[1].name",
                             "duplicate listener name 'pg' (first defined at test.yaml:2)"));
}

TEST(Loader, DuplicateClusterName) {
    const auto r = load(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
  - name: api
    discovery: { static: [10.0.0.2:80] }
  - name: web
    discovery: { static: [10.0.0.3:80] }
)");
    EXPECT_TRUE(HasOnlyError(r, 6, 11, "clusters[2].name",
                             "duplicate cluster name 'web' (first defined at test.yaml:2)"));
}

TEST(Loader, TwoListenersOnOneAddress) {
    const auto r = load(std::string{R"(
listeners:
  - name: a
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
  - name: b
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
  - name: c
    address: "[::1]:5432"
    protocol: tcp
    cluster: postgres
  - name: d
    address: "[0:0:0:0:0:0:0:1]:5432"
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 7, 14, "listeners[1].address",
                         "address 127.0.0.1:5432 is already used by listener 'a' (test.yaml:3)"));
    EXPECT_TRUE(HasError(r, 15, 14, "listeners[3].address",
                         "address [::1]:5432 is already used by listener 'c' (test.yaml:11)"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

// A wildcard and a specific address of its family on one port both bind (SO_REUSEPORT), and the
// specific one silently takes all the traffic sent to it. IPv6 listeners are v6-only, so [::] and
// 0.0.0.0 on one port are two separate sockets, and so are two specific addresses.
TEST(Loader, WildcardListenersOverlapSpecificOnes) {
    const auto r = load(std::string{R"(
listeners:
  - name: any4
    address: 0.0.0.0:5432
    protocol: tcp
    cluster: postgres
  - name: lo4
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
  - name: any6
    address: "[::]:5432"
    protocol: tcp
    cluster: postgres
  - name: lo6
    address: "[::1]:5432"
    protocol: tcp
    cluster: postgres
  - name: other4
    address: 127.0.0.2:5433
    protocol: tcp
    cluster: postgres
  - name: another4
    address: 127.0.0.3:5433
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 7, 14, "listeners[1].address",
                         "address 127.0.0.1:5432 overlaps listener 'any4' on 0.0.0.0:5432 (test.yaml:3): "
                         "connections to 127.0.0.1:5432 would all go to one of them"));
    EXPECT_TRUE(HasError(r, 15, 14, "listeners[3].address", "overlaps listener 'any6' on [::]:5432"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

// The admin endpoint binds without SO_REUSEPORT: a listener on its address would fail at start.
TEST(Loader, ListenersKeepOffTheAdminAddress) {
    const auto r = load(std::string{R"(
admin: { address: 127.0.0.1:9911 }
listeners:
  - name: a
    address: 127.0.0.1:9911
    protocol: tcp
    cluster: postgres
  - name: b
    address: 0.0.0.0:9911
    protocol: tcp
    cluster: postgres
  - name: c
    address: 127.0.0.1:9901
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 4, 14, "listeners[0].address",
                         "address 127.0.0.1:9911 is the admin endpoint's 127.0.0.1:9911 (test.yaml:1)"));
    EXPECT_TRUE(HasError(r, 8, 14, "listeners[1].address",
                         "address 0.0.0.0:9911 overlaps the admin endpoint's 127.0.0.1:9911 (test.yaml:1)"));
    EXPECT_EQ(r.errors.size(), 3u) << listing(r);   // b also overlaps a
    // The default admin address counts too, and the message says where to move it.
    const auto d = load(std::string{R"(
listeners:
  - name: a
    address: 127.0.0.1:9901
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(d, 3, 14, "listeners[0].address",
                             "is the admin endpoint's 127.0.0.1:9901 (the default: see admin.address)"));
}

TEST(Loader, PortZeroListenersMayShareAnAddress) {
    const auto r = load(std::string{R"(
listeners:
  - name: a
    address: 127.0.0.1:0
    protocol: tcp
    cluster: postgres
  - name: b
    address: 127.0.0.1:0
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(Loads(r));
}

TEST(Loader, TcpListenerNeedsACluster) {
    const auto r = load(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(r, 2, 5, "listeners[0].cluster", "tcp listeners need a cluster"));
}

TEST(Loader, TcpListenerRefusesHttpKeys) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
    routes:
      - cluster: postgres
    limits: { max_request_header_bytes: 8KiB, max_request_body_bytes: 1MB }
    timeouts: { request_headers: 5s }
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 6, 5, "listeners[0].routes", "routes apply to http listeners only"));
    EXPECT_TRUE(HasError(r, 8, 15, "listeners[0].limits.max_request_header_bytes",
                         "max_request_header_bytes applies to http listeners only"));
    EXPECT_TRUE(HasError(r, 8, 47, "listeners[0].limits.max_request_body_bytes",
                         "max_request_body_bytes applies to http listeners only"));
    EXPECT_TRUE(HasError(r, 9, 17, "listeners[0].timeouts.request_headers",
                         "request_headers applies to http listeners only"));
    EXPECT_EQ(r.errors.size(), 4u) << listing(r);
}

TEST(Loader, HttpListenerNeedsARoute) {
    EXPECT_TRUE(HasOnlyError(load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
)"} + std::string{kPostgresCluster}),
                             2, 5, "listeners[0].routes", "http listeners need at least one route"));
    EXPECT_TRUE(HasOnlyError(load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
    routes: []
)"} + std::string{kPostgresCluster}),
                             5, 13, "listeners[0].routes", "http listeners need at least one route"));
}

TEST(Loader, HttpListenerRefusesCluster) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    cluster: postgres
    routes:
      - cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(r, 4, 5, "listeners[0].cluster", "cluster applies to tcp listeners only"));
}

TEST(Loader, InvalidProtocolDoesNotCascade) {
    const auto r = load(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: udp
    cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(r, 4, 15, "listeners[0].protocol", "'udp' is not one of http, tcp"));
}

TEST(Loader, UnknownClusterInTcpListenerAndRoute) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgress
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: /a }
        cluster: postgres
      - match: { path_prefix: /b }
        cluster: nope
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(
        HasError(r, 5, 14, "listeners[0].cluster", "unknown cluster 'postgress' (did you mean 'postgres'?)"));
    EXPECT_TRUE(HasError(r, 12, 18, "listeners[1].routes[1].cluster", "unknown cluster 'nope'"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, RouteNeedsACluster) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: / }
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasOnlyError(r, 5, 9, "listeners[0].routes[0].cluster", "missing required key 'cluster'"));
}

TEST(Loader, RouteMatchIsValidated) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: v1/ }
        cluster: postgres
      - match: { host: "api.*.com" }
        cluster: postgres
      - match: { host: "*" }
        cluster: postgres
      - match: { host: "*example.com" }
        cluster: postgres
      - match: { host: "*.example.com", path_prefix: /v2/ }
        cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 5, 31, "listeners[0].routes[0].match.path_prefix",
                         "path_prefix 'v1/' must start with '/'"));
    EXPECT_TRUE(HasError(r, 7, 24, "listeners[0].routes[1].match.host", "host 'api.*.com' must be a name"));
    EXPECT_TRUE(HasError(r, 9, 24, "listeners[0].routes[2].match.host", "host '*' must be a name"));
    EXPECT_TRUE(
        HasError(r, 11, 24, "listeners[0].routes[3].match.host", "host '*example.com' must be a name"));
    EXPECT_EQ(r.errors.size(), 4u) << listing(r);
}

// Requests are matched on their Host without port and trailing dot, so route hosts are too.
TEST(Loader, RouteHostsAreWrittenAsRequestsAreMatched) {
    const auto r = load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { host: "svc.example.com:8080" }
        cluster: postgres
      - match: { host: "::1" }
        cluster: postgres
      - match: { host: "[::1" }
        cluster: postgres
      - match: { host: "[zz::1]" }
        cluster: postgres
)"} + std::string{kPostgresCluster});
    EXPECT_TRUE(HasError(r, 5, 24, "listeners[0].routes[0].match.host",
                         "host 'svc.example.com:8080': requests are matched on their host without the port; "
                         "write 'svc.example.com'"));
    EXPECT_TRUE(HasError(r, 7, 24, "listeners[0].routes[1].match.host", "an IPv6 address needs brackets"));
    EXPECT_TRUE(HasError(r, 9, 24, "listeners[0].routes[2].match.host", "host '[::1' must be a name"));
    EXPECT_TRUE(HasError(r, 11, 24, "listeners[0].routes[3].match.host", "host '[zz::1]' is not an IPv6 address"));
    EXPECT_EQ(r.errors.size(), 4u) << listing(r);
    const auto fine = load_all(std::string{R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { host: "dot.example.com." }
        cluster: postgres
      - match: { host: "*.example.com." }
        cluster: postgres
      - match: { host: "[::1]" }
        cluster: postgres
      - match: { host: "10.0.0.1" }
        cluster: postgres
      - match: { host: "[0:0::1]" }
        cluster: postgres
)"} + std::string{kPostgresCluster});
    ASSERT_TRUE(Loads(fine));
    const auto& routes = fine.config->listeners[0].routes;
    EXPECT_EQ(routes[0].match.host, "dot.example.com");
    EXPECT_EQ(routes[1].match.host, "*.example.com");
    EXPECT_EQ(routes[2].match.host, "[::1]");
    EXPECT_EQ(routes[3].match.host, "10.0.0.1");
}

TEST(Loader, ClusterNeedsDiscovery) {
    EXPECT_TRUE(HasOnlyError(load("clusters:\n  - name: web\n"), 2, 5, "clusters[0].discovery",
                             "missing required key 'discovery'"));
    EXPECT_TRUE(HasOnlyError(load("clusters:\n  - name: web\n    discovery: {}\n"), 3, 16,
                             "clusters[0].discovery", "discovery needs one of static, dns or file"));
}

TEST(Loader, DiscoveryTakesExactlyOneKind) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
      file: /etc/drover/web.yaml
)");
    EXPECT_TRUE(HasOnlyError(r, 5, 7, "clusters[0].discovery.file",
                             "discovery takes exactly one of static, dns or file; 'static' is already set"));
}

TEST(Loader, StaticListMustNotBeEmpty) {
    const auto r = load("clusters:\n  - name: web\n    discovery: { static: [] }\n");
    EXPECT_TRUE(HasOnlyError(r, 3, 26, "clusters[0].discovery.static", "static needs at least one address"));
}

TEST(Loader, DnsNameAndPortRules) {
    EXPECT_TRUE(
        HasOnlyError(load_all("clusters:\n  - name: web\n    discovery:\n      dns: { type: a, port: 80 }\n"),
                     4, 12, "clusters[0].discovery.dns.name", "missing required key 'name'"));
    EXPECT_TRUE(HasOnlyError(
        load_all("clusters:\n  - name: web\n    discovery:\n      dns: { name: web.internal, type: aaaa }\n"),
        4, 12, "clusters[0].discovery.dns.port", "dns type aaaa needs a port"));
    EXPECT_TRUE(HasOnlyError(
        load_all("clusters:\n  - name: web\n    discovery:\n      dns: { name: web.internal }\n"), 4, 12,
        "clusters[0].discovery.dns.port", "dns type a+aaaa needs a port"));
    const auto srv_with_port = load_all("clusters:\n  - name: web\n    discovery:\n      dns: { name: "
                                        "_x._tcp.web, type: srv, port: 80 }\n");
    EXPECT_TRUE(Loads(srv_with_port));
    EXPECT_TRUE(HasWarning(srv_with_port, 4, 44, "clusters[0].discovery.dns.port", "port is ignored with type srv"));
    EXPECT_EQ(srv_with_port.warnings.front().str(),
              "test.yaml:4:44: warning: clusters[0].discovery.dns.port: port is ignored with type srv: SRV "
              "records carry their own ports");
    EXPECT_TRUE(HasOnlyError(
        load_all("clusters:\n  - name: web\n    discovery:\n      dns: { name: web.internal, port: 0 }\n"), 4,
        40, "clusters[0].discovery.dns.port", "must be between 1 and 65535"));
}

TEST(Loader, DnsRefreshBounds) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery:
      dns:
        name: web.internal
        port: 80
        refresh: { min: 1m, max: 10s }
  - name: api
    discovery:
      dns:
        name: api.internal
        port: 80
        refresh: { min: 0s }
)");
    EXPECT_TRUE(HasError(r, 7, 25, "clusters[0].discovery.dns.refresh.min",
                         "refresh min (1m) must not exceed max (10s)"));
    EXPECT_TRUE(HasError(r, 13, 25, "clusters[1].discovery.dns.refresh.min", "must be greater than 0"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, DnsAndFileDiscoveryLoadWithoutAllowUnsupported) {
    const auto r = load(R"(
listeners:
  - { name: pg, address: 127.0.0.1:15432, protocol: tcp, cluster: pg }
clusters:
  - name: pg
    discovery: { file: /etc/drover/endpoints/pg.yaml }
  - name: web
    discovery:
      dns: { name: web.internal, type: a, port: 80, servers: [127.0.0.1:5353], max_stale: 5m }
  - name: srv
    discovery:
      dns: { name: _pg._tcp.internal, type: srv }
)");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(std::get<FileDiscovery>(r.config->clusters[0].discovery).path, "/etc/drover/endpoints/pg.yaml");
    const auto& dns = std::get<DnsDiscovery>(r.config->clusters[1].discovery);
    EXPECT_EQ(dns.max_stale, std::optional<Duration>{5min});
    EXPECT_FALSE(std::get<DnsDiscovery>(r.config->clusters[2].discovery).max_stale);   // default: none
}

TEST(Loader, DnsMaxStaleMustBeAPositiveDuration) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery:
      dns: { name: web.internal, port: 80, max_stale: 0s }
  - name: api
    discovery:
      dns: { name: api.internal, port: 80, max_stale: 30 }
)");
    EXPECT_TRUE(HasError(r, 4, 55, "clusters[0].discovery.dns.max_stale", "must be greater than 0"));
    EXPECT_TRUE(HasError(r, 7, 55, "clusters[1].discovery.dns.max_stale", "duration needs a unit"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, RelativeEndpointsFileIsRelativeToTheConfigFile) {
    const auto r = load_string("clusters:\n  - name: pg\n    discovery: { file: endpoints/../pg.yaml }\n",
                               "/etc/drover/drover.yaml");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(std::get<FileDiscovery>(r.config->clusters[0].discovery).path, "/etc/drover/pg.yaml");
    // Text with no folder of its own (tests, --check of a string) keeps the path as written.
    const auto bare = load_all("clusters:\n  - name: pg\n    discovery: { file: pg.yaml }\n");
    ASSERT_TRUE(Loads(bare));
    EXPECT_EQ(std::get<FileDiscovery>(bare.config->clusters[0].discovery).path, "pg.yaml");
}

TEST(Loader, RelativeAccessLogIsRelativeToTheConfigFile) {
    const auto r = load_string("access_log: { path: logs/access.log }\n", "/etc/drover/drover.yaml");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->access_log->path, "/etc/drover/logs/access.log");
    EXPECT_EQ(r.config->access_log->mark.line, 1);
    const auto err = load_string("access_log: { path: stderr }\n", "/etc/drover/drover.yaml");
    ASSERT_TRUE(Loads(err));
    EXPECT_EQ(err.config->access_log->path, "stderr");
}

// An empty or truncated file is a valid document with no listeners; running it would close every
// port, so drover, --check and reload refuse it (check_runnable), pointing at the file or the key.
TEST(Loader, ARunnableConfigNeedsAListener) {
    for (const char* text : {"", "# nothing yet\n", "admin: { address: 127.0.0.1:9911 }\n"}) {
        const auto r = load_string(text, "drover.yaml");
        ASSERT_TRUE(Loads(r)) << text;
        const auto errors = check_runnable(*r.config);
        ASSERT_EQ(errors.size(), 1u) << text;
        EXPECT_EQ(errors[0].str(),
                  "drover.yaml:1:1: listeners: no listeners: add at least one under 'listeners:' (is the file "
                  "truncated?)");
    }
    const auto empty_list = load("workers: 1\nlisteners: []\n");
    ASSERT_TRUE(Loads(empty_list));
    const auto errors = check_runnable(*empty_list.config);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].mark.line, 2);
    EXPECT_EQ(errors[0].mark.column, 12);
    const auto one = load(std::string{"listeners:\n  - { name: pg, address: 127.0.0.1:0, protocol: tcp, cluster: postgres }\n"} +
                          std::string{kPostgresCluster});
    ASSERT_TRUE(Loads(one));
    EXPECT_TRUE(check_runnable(*one.config).empty());
}

TEST(Loader, DurationsLongerThanAYearAreRefused) {
    const auto r = load("shutdown: { drain_timeout: 3000000h }\n");
    EXPECT_TRUE(HasOnlyError(r, 1, 28, "shutdown.drain_timeout",
                             "duration '3000000h' is too large (at most 8760h, a year)"));
}

// Garbage in a file reaches messages (through yaml-cpp and through quoted values); what is printed
// stays text: control bytes and bytes that are not UTF-8 are escaped, UTF-8 is kept.
TEST(Loader, MessagesEscapeWhatIsNotText) {
    const auto r = load("workers: \"t\xc3\xa9st\\u0007\xfa\"\n");
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].str(),
              "test.yaml:1:10: workers: workers must be auto or a number from 1 to 256, got 't\xc3\xa9st\\x07\\xfa'");
}

TEST(Loader, ANulBytePointsAtItself) {
    const auto r = load(std::string_view{"workers: 1\nlog: { le\0vel: info }\n", 33});
    EXPECT_TRUE(HasOnlyError(r, 2, 10, "", "a NUL byte: this is no text file"));
    const auto e = load_endpoints_string(std::string_view{"endpoints:\n\0", 12}, "ep.yaml");
    ASSERT_EQ(e.errors.size(), 1u);
    EXPECT_EQ(e.errors[0].str(), "ep.yaml:2:1: a NUL byte: this is no text file");
}

TEST(Loader, DeepNestingIsNamed) {
    const auto r = load(std::string(5000, '[') + std::string(5000, ']') + "\n");
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_NE(r.errors[0].message.find("levels deep or more"), std::string::npos) << listing(r);
}

// Unquoted, `[::1]:8080` starts a YAML flow sequence; the parser's message alone does not say why.
TEST(Loader, AnUnquotedIpv6AddressGetsAHint) {
    const auto r = load("listeners:\n  - name: web\n    address: [::1]:8080\n");
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].str(),
              "test.yaml:3:19: end of map not found (an IPv6 address must be quoted in YAML: \"[::1]:8080\")");
    const auto e = load_endpoints_string("endpoints:\n  - [fd00::1]:80\n  - x\n", "ep.yaml");
    ASSERT_EQ(e.errors.size(), 1u);
    EXPECT_NE(e.errors[0].str().find("(an IPv6 address must be quoted in YAML: \"[fd00::1]:80\")"), std::string::npos)
        << e.errors[0].str();
    // In a flow list it is no syntax error (a map from the list [::1] to 80): the hint still comes.
    const auto flow = load_all(with_cluster("clusters:\n  - name: web\n    discovery:\n      static: [[::1]:80]\n"));
    ASSERT_EQ(flow.errors.size(), 1u) << listing(flow);
    EXPECT_NE(flow.errors[0].message.find("an IPv6 address must be quoted in YAML: \"[::1]:80\""), std::string::npos)
        << listing(flow);
    // Quoted, or another syntax error: no hint.
    const auto quoted = load("listeners:\n  - name: web\n    address: \"[::1]:8080\"\n    x: [\n");
    ASSERT_FALSE(quoted.errors.empty());
    EXPECT_EQ(quoted.errors[0].str().find("IPv6"), std::string::npos) << quoted.errors[0].str();
}

// /dev/zero, or a log written where the config should be: the read stops at 16 MiB.
TEST(Loader, AHugeFileIsRefusedNotRead) {
    const auto path = std::filesystem::temp_directory_path() / "drover-loader-huge.yaml";
    {
        std::ofstream out{path, std::ios::binary};
        const std::string line(1023, '#');
        for (int i = 0; i < 17 * 1024; ++i) { out << line << '\n'; }
    }
    const auto r = load_file(path.string());
    std::filesystem::remove(path);
    ASSERT_EQ(r.errors.size(), 1u) << listing(r);
    EXPECT_EQ(r.errors[0].str(), path.string() + ": cannot read file: larger than 16 MiB");
    const auto zero = load_file("/dev/zero");
    ASSERT_EQ(zero.errors.size(), 1u) << listing(zero);
    EXPECT_EQ(zero.errors[0].str(), "/dev/zero: cannot read file: larger than 16 MiB");
}

TEST(Loader, HashNeedsMaglev) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    hash: { header: x-user-id }
  - name: api
    discovery: { static: [10.0.0.1:80] }
    load_balancing: least_request
    hash: { cookie: session }
  - name: sticky
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { cookie: session }
)");
    ASSERT_TRUE(Loads(r));
    EXPECT_TRUE(HasWarning(r, 4, 5, "clusters[0].hash", "hash is ignored: only load_balancing: maglev hashes"));
    EXPECT_TRUE(HasWarning(r, 8, 5, "clusters[1].hash", "hash is ignored"));
    EXPECT_EQ(r.warnings.size(), 2u);
    EXPECT_FALSE(r.config->clusters[0].hash);
    EXPECT_FALSE(r.config->clusters[1].hash);
    ASSERT_TRUE(r.config->clusters[2].hash);
    EXPECT_EQ(r.config->clusters[2].hash->kind, HashPolicy::Kind::cookie);
}

TEST(Loader, HeaderOrCookieHashNeedsAnHttpListener) {
    // A tcp connection carries no header or cookie: only its source address can be the key.
    const auto r = load_all(R"(
listeners:
  - { name: pg, address: 127.0.0.1:15432, protocol: tcp, cluster: by_header }
  - { name: pg2, address: 127.0.0.1:15433, protocol: tcp, cluster: by_cookie }
  - { name: pg3, address: 127.0.0.1:15434, protocol: tcp, cluster: by_source }
  - { name: pg4, address: 127.0.0.1:15435, protocol: tcp, cluster: by_default }
  - name: web
    address: 127.0.0.1:8080
    routes: [{ cluster: by_header }, { cluster: by_cookie }, { cluster: on_http }]
clusters:
  - name: by_header
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { header: x-user-id }
  - name: by_cookie
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { cookie: session }
  - name: by_source
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { source_ip: true }
  - name: by_default
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
  - name: on_http
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { header: x-user-id }
)");
    EXPECT_TRUE(HasError(r, 13, 5, "clusters[0].hash",
                         "hash on header/cookie needs an http listener; use source_ip "
                         "(tcp listener 'pg' uses cluster 'by_header')"));
    EXPECT_TRUE(HasError(r, 17, 5, "clusters[1].hash",
                         "hash on header/cookie needs an http listener; use source_ip "
                         "(tcp listener 'pg2' uses cluster 'by_cookie')"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, EveryLoadBalancingPolicyLoads) {
    const auto r = load(R"(
clusters:
  - { name: a, discovery: { static: [10.0.0.1:80] }, load_balancing: round_robin }
  - { name: b, discovery: { static: [10.0.0.1:80] }, load_balancing: least_request }
  - { name: c, discovery: { static: [10.0.0.1:80] }, load_balancing: random }
  - { name: d, discovery: { static: [10.0.0.1:80] }, load_balancing: maglev, hash: { source_ip: true } }
  - { name: e, discovery: { static: [10.0.0.1:80] } }
)");
    ASSERT_TRUE(Loads(r));
    const auto& clusters = r.config->clusters;
    EXPECT_EQ(clusters[0].load_balancing, LbPolicy::round_robin);
    EXPECT_EQ(clusters[1].load_balancing, LbPolicy::least_request);
    EXPECT_EQ(clusters[2].load_balancing, LbPolicy::random);
    EXPECT_EQ(clusters[3].load_balancing, LbPolicy::maglev);
    ASSERT_TRUE(clusters[3].hash);
    EXPECT_EQ(clusters[3].hash->kind, HashPolicy::Kind::source_ip);
    EXPECT_EQ(clusters[4].load_balancing, LbPolicy::least_request);   // the default
}

TEST(Loader, HealthCheckBounds) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    health_check:
      interval: 1s
      timeout: 2s
      jitter: 60%
      healthy_threshold: 0
      unhealthy_threshold: 0
  - name: api
    discovery: { static: [10.0.0.1:80] }
    health_check: { interval: 0s, unhealthy_interval: 0ms }
  - name: db
    discovery: { static: [10.0.0.1:80] }
    health_check: { timeout: 1500ms }
)");
    EXPECT_TRUE(
        HasError(r, 6, 16, "clusters[0].health_check.timeout", "timeout (2s) must not exceed interval (1s)"));
    EXPECT_TRUE(HasError(r, 7, 15, "clusters[0].health_check.jitter", "jitter must be at most 50%"));
    EXPECT_TRUE(HasError(r, 8, 26, "clusters[0].health_check.healthy_threshold", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 9, 28, "clusters[0].health_check.unhealthy_threshold", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 12, 31, "clusters[1].health_check.interval", "must be greater than 0"));
    EXPECT_TRUE(HasError(r, 12, 55, "clusters[1].health_check.unhealthy_interval", "must be greater than 0"));
    // Only the timeout is written, so the default interval (1s) is what it exceeds.
    EXPECT_TRUE(HasError(r, 15, 30, "clusters[2].health_check.timeout",
                         "timeout (1500ms) must not exceed interval (1s)"));
    EXPECT_EQ(r.errors.size(), 7u) << listing(r);
}

TEST(Loader, OutlierDetectionBounds) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    outlier_detection:
      consecutive_failures: 0
      base_ejection_time: 10m
      max_ejection_time: 5m
)");
    EXPECT_TRUE(
        HasError(r, 5, 29, "clusters[0].outlier_detection.consecutive_failures", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 6, 27, "clusters[0].outlier_detection.base_ejection_time",
                         "base_ejection_time (10m) must not exceed max_ejection_time (5m)"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, LimitsThatCannotBeZero) {
    const auto r = load_all(R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: web
    limits: { max_connections: 0 }
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    limits: { max_connections: 0, max_requests: 0, max_pending: 0, queue_timeout: 0s }
)");
    EXPECT_TRUE(HasError(r, 6, 32, "listeners[0].limits.max_connections", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 10, 32, "clusters[0].limits.max_connections", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 10, 49, "clusters[0].limits.max_requests", "must be at least 1"));
    EXPECT_EQ(r.errors.size(), 3u) << listing(r);   // max_pending 0 (no queue) and queue_timeout 0s are fine
}

TEST(Loader, TimeoutsMustBePositive) {
    const auto r = load(R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: web
    timeouts: { idle: 0s }
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    timeouts: { connect: 0ms }
    retries: { attempts: -1 }
)");
    EXPECT_TRUE(HasError(r, 6, 23, "listeners[0].timeouts.idle", "must be greater than 0"));
    EXPECT_TRUE(HasError(r, 10, 26, "clusters[0].timeouts.connect", "must be greater than 0"));
    EXPECT_TRUE(HasError(r, 11, 26, "clusters[0].retries.attempts", "must not be negative"));
    EXPECT_EQ(r.errors.size(), 3u) << listing(r);
}

TEST(Loader, AdaptiveConcurrencyBounds) {
    const auto r = load_all(R"(
clusters:
  - name: web
    discovery: { static: [10.0.0.1:80] }
    adaptive_concurrency: { min_limit: 0 }
  - name: api
    discovery: { static: [10.0.0.1:80] }
    adaptive_concurrency: { min_limit: 100, max_limit: 10 }
)");
    EXPECT_TRUE(HasError(r, 4, 40, "clusters[0].adaptive_concurrency.min_limit", "must be at least 1"));
    EXPECT_TRUE(HasError(r, 7, 40, "clusters[1].adaptive_concurrency.min_limit",
                         "min_limit (100) must not exceed max_limit (10)"));
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

TEST(Loader, UnusedClusterIsFine) {
    const auto r = load(std::string{R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: postgres
)"} + std::string{kPostgresCluster} +
                        "  - name: spare\n    discovery: { static: [10.0.0.9:80] }\n");
    ASSERT_TRUE(Loads(r));
    EXPECT_EQ(r.config->clusters.size(), 2u);
}

TEST(Loader, SeveralIndependentProblemsAreAllReported) {
    const std::string path = data_file("several_problems.yaml");
    const auto r = load_file(path);
    EXPECT_FALSE(r.config);
    EXPECT_TRUE(HasError(r, 2, 10, "workers", "workers must be auto or a number from 1 to 256, got 'lots'"));
    EXPECT_TRUE(HasError(r, 5, 14, "listeners[0].address", "'db.internal' must be an IP address"));
    EXPECT_TRUE(
        HasError(r, 7, 14, "listeners[0].cluster", "unknown cluster 'postgress' (did you mean 'postgres'?)"));
    EXPECT_TRUE(HasError(r, 8, 11, "listeners[1].name",
                         "duplicate listener name 'pg' (first defined at " + path + ":4)"));
    EXPECT_TRUE(HasError(r, 12, 23, "listeners[1].timeouts.idle", "duration needs a unit, e.g. 500ms"));
    EXPECT_TRUE(HasError(r, 15, 5, "clusters[0].helth_check",
                         "unknown key 'helth_check' (did you mean 'health_check'?)"));
    EXPECT_TRUE(HasError(r, 18, 26, "clusters[0].retries.attempts", "must not be negative"));
    EXPECT_EQ(r.errors.size(), 7u) << listing(r);
    // Reported in file order, each naming the file.
    for (std::size_t i = 0; i < r.errors.size(); ++i) {
        EXPECT_EQ(r.errors[i].mark.file, path);
        if (i > 0) { EXPECT_LE(r.errors[i - 1].mark.line, r.errors[i].mark.line); }
    }
}

// ---------------------------------------------------------------------------------------------------
// Cluster templates (services without per-service config)
// ---------------------------------------------------------------------------------------------------

namespace template_tests {
constexpr const char* kTemplateCluster = R"(
clusters:
  - name: svc
    discovery:
      dns: { name: "_http._tcp.{host}", type: srv }
    dynamic: { max_clusters: 50, idle_timeout: 2m }
  - name: plain
    discovery:
      static: [10.0.0.1:80]
)";
}  // namespace template_tests

TEST(Loader, ClusterTemplateRouteLoads) {
    const auto r = load(std::string(R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { host: "*.internal" }
        cluster_template: svc
)") + template_tests::kTemplateCluster);
    ASSERT_TRUE(r.config) << listing(r);
    EXPECT_EQ(r.config->listeners[0].routes[0].cluster_template, "svc");
    const auto* svc = r.config->find_cluster("svc");
    ASSERT_NE(svc, nullptr);
    EXPECT_TRUE(svc->is_template());
    EXPECT_EQ(svc->max_clusters, 50u);
    EXPECT_EQ(svc->idle_timeout, std::chrono::minutes(2));
    EXPECT_FALSE(r.config->find_cluster("plain")->is_template());
}

TEST(Loader, TemplateAndConcreteClustersAreNotInterchangeable) {
    const auto r = load(std::string(R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { host: a.internal }
        cluster: svc
      - match: { host: b.internal }
        cluster_template: plain
      - match: { host: c.internal }
        cluster: plain
        cluster_template: svc
)") + template_tests::kTemplateCluster);
    EXPECT_FALSE(r.config);
    EXPECT_TRUE(HasError(r, 6, 18, "listeners[0].routes[0].cluster", "cluster 'svc' is a template"));
    EXPECT_TRUE(HasError(r, 8, 27, "listeners[0].routes[1].cluster_template", "cluster 'plain' is not a template"));
    EXPECT_TRUE(HasError(r, 10, 9, "listeners[0].routes[2].cluster", "not both"));
    EXPECT_EQ(r.errors.size(), 3u) << listing(r);
}

TEST(Loader, TcpListenerNeedsAConcreteCluster) {
    const auto r = load(std::string(R"(
listeners:
  - name: pg
    address: 127.0.0.1:5432
    protocol: tcp
    cluster: svc
)") + template_tests::kTemplateCluster);
    EXPECT_TRUE(HasOnlyError(r, 5, 14, "listeners[0].cluster", "cluster 'svc' is a template"));
}

// A cluster whose name is missing is one error, not also a "not a template" on routes that name none.
TEST(Loader, ANamelessClusterIsOneError) {
    const auto r = load(R"(
listeners:
  - name: web
    address: 127.0.0.1:8080
    routes:
      - match: { path_prefix: / }
        cluster: web
clusters:
  - nme: web
    discovery: { static: [10.0.0.1:80] }
    load_balancing: maglev
    hash: { header: x-user }
)");
    EXPECT_TRUE(HasError(r, 8, 5, "clusters[0].nme", "unknown key 'nme'"));
    EXPECT_TRUE(HasError(r, 6, 18, "listeners[0].routes[0].cluster", "unknown cluster 'web'"));
    EXPECT_EQ(r.errors.size(), 3u) << listing(r);   // and the missing name
    for (const auto& e : r.errors) { EXPECT_EQ(e.message.find("template"), std::string::npos) << e.str(); }
}

TEST(Loader, DynamicBoundsOnlyOnTemplates) {
    const auto r = load(R"(
clusters:
  - name: plain
    discovery:
      static: [10.0.0.1:80]
    dynamic: { max_clusters: 5 }
)");
    EXPECT_TRUE(HasError(r, 5, 5, "clusters[0].dynamic", "template clusters only"));
}


TEST(Loader, HttpCheckHostAndPathAreWhatARequestMayCarry) {
    // Found by the IPv6 audit: `host: "::1"` went out unbracketed, and CR LF in either reached the wire.
    const auto r = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      http: { path: "/a b", host: "::1" }
  - name: web2
    discovery:
      static: [10.0.0.2:80]
    health_check:
      http: { path: "/x#y", host: "[zz::1]" }
  - name: web3
    discovery:
      static: [10.0.0.3:80]
    health_check:
      http: { host: "a b\r\nX-Injected: 1" }
  - name: web4
    discovery:
      static: [10.0.0.4:80]
    health_check:
      http: { host: "a:99999" }
)"));
    EXPECT_TRUE(HasError(r, 11, 21, "clusters[0].health_check.http.path", "path must be a request path")) << listing(r);
    EXPECT_TRUE(HasError(r, 11, 35, "clusters[0].health_check.http.host", "an IPv6 address needs brackets in a Host")) << listing(r);
    EXPECT_TRUE(HasError(r, 16, 21, "clusters[1].health_check.http.path", "path must be a request path")) << listing(r);
    EXPECT_TRUE(HasError(r, 16, 35, "clusters[1].health_check.http.host", "host '[zz::1]' must be a host name or an IP literal")) << listing(r);
    EXPECT_TRUE(HasError(r, 21, 21, "clusters[2].health_check.http.host", "must be a host name or an IP literal")) << listing(r);
    EXPECT_TRUE(HasError(r, 26, 21, "clusters[3].health_check.http.host", "optional port of at most 65535")) << listing(r);
    EXPECT_EQ(r.errors.size(), 6u) << listing(r);
    const auto ok = load_all(with_cluster(R"(
clusters:
  - name: web
    discovery:
      static: [10.0.0.1:80]
    health_check:
      http: { path: "/health?full=1", host: "[0::1]:8080" }
  - name: web2
    discovery:
      static: [10.0.0.2:80]
    health_check:
      http: { host: "svc.internal:80" }
)"));
    EXPECT_TRUE(ok.errors.empty()) << listing(ok);
}

TEST(Loader, Ipv4MappedAddresses) {
    // A listener cannot bind one (IPv6 sockets are IPv6-only); as a backend it is its IPv4 address.
    const auto r = load_all(R"(
listeners:
  - name: web
    address: "[::ffff:127.0.0.1]:8080"
    cluster: web
    protocol: tcp
clusters:
  - name: web
    discovery:
      static: ["[::ffff:10.0.0.1]:80", 10.0.0.1:80]
)");
    EXPECT_TRUE(HasError(r, 3, 14, "listeners[0].address",
                         "[::ffff:127.0.0.1]:8080 is an IPv4-mapped IPv6 address, which cannot be listened on: "
                         "write 127.0.0.1:8080"))
        << listing(r);
    EXPECT_TRUE(HasError(r, 9, 40, "clusters[0].discovery.static[1]", "10.0.0.1:80 is listed twice (first at line 9)"))
        << listing(r);
    EXPECT_EQ(r.errors.size(), 2u) << listing(r);
}

}  // namespace
}  // namespace drover::config
