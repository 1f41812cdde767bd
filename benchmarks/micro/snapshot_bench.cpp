// Snapshot rebuilds on the control loop: what a Cluster does when discovery or a host's state changes,
// at 10 to 10,000 hosts. Cluster::rebuild (private) reads every host's health, ejection and overload
// state, runs select_hosts per SRV priority group (BM_SelectHosts in health_bench.cpp times that part
// alone), builds the ClusterSnapshot and publishes it; for maglev clusters it also builds the
// MaglevTable (BM_MaglevTableBuild times that alone). Rebuild is reached here through the public paths
// that trigger it:
//   - a discovery update (the resolver's callback, Cluster::on_endpoints): the new set is diffed into
//     the long-lived hosts, then rebuilt. One host reweighted, or one host replaced by another, or (for
//     maglev) the same set again;
//   - Cluster::set_draining, toggled on the first host: a state change and a rebuild, nearly nothing
//     else (the host is found by a scan that stops at the first).
// Health checks are off (no probe sockets; every host counts healthy, as after its first checks
// passed), slow start is 0 (nothing ramping) and logging is at warn: at info every discovery update
// writes a line to stderr, which is not what is measured here.
#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>
#include <utility>

#include "config/log.hpp"
#include "proxy/cluster.hpp"
#include "tests/support/scripted_resolver.hpp"

namespace drover::proxy {
namespace {

namespace asio = boost::asio;

using drover::testing::ScriptedResolver;

discovery::Endpoint endpoint(std::size_t i, std::uint32_t weight) {
    return discovery::Endpoint{{asio::ip::make_address_v4(static_cast<std::uint32_t>(0x0a000000 + i)), 80}, weight, 0};
}

// n hosts 10.0.0.0:80 ..., weights 1, 2, 3 in turn.
discovery::EndpointSet endpoints(std::size_t n) {
    discovery::EndpointSet set;
    for (std::size_t i = 0; i < n; ++i) { set.push_back(endpoint(i, static_cast<std::uint32_t>(1 + i % 3))); }
    return set;
}

// A started cluster over a scripted resolver that has delivered its first set of n hosts.
struct Bench {
    asio::io_context control;   // never run: nothing here needs the loop (no probes, no timers due)
    ScriptedResolver* resolver = nullptr;
    std::unique_ptr<Cluster> cluster;
    std::shared_ptr<const ClusterSnapshot> published;   // what the workers hold, until the next one

    Bench(std::size_t n, config::LbPolicy policy) {
        log::set_level(log::Level::warn);
        config::Cluster config;
        config.name = "web";
        config.load_balancing = policy;
        config.health_check.enabled = false;
        config.slow_start = std::chrono::milliseconds::zero();
        auto scripted = std::make_unique<ScriptedResolver>();
        resolver = scripted.get();
        cluster = std::make_unique<Cluster>(
            config, std::move(scripted), [this](std::shared_ptr<const ClusterSnapshot> s) { published = std::move(s); },
            control);
        cluster->start();
        resolver->push(endpoints(n));
    }
    ~Bench() { cluster->stop(); }

    // Every host listed is in the snapshot: the state all these benchmarks measure.
    bool all_eligible(std::size_t n) const { return published && published->hosts.size() == n; }
};

bool check(benchmark::State& state, const Bench& bench, std::size_t n) {
    if (bench.all_eligible(n)) { return true; }
    state.SkipWithError("not every host eligible: not the measured path");
    return false;
}

// Pushes `a` and `b` in turn, each push a discovery update and the rebuild it triggers.
void push_in_turn(benchmark::State& state, Bench& bench, const discovery::EndpointSet& a,
                  const discovery::EndpointSet& b) {
    std::size_t i = 0;
    for (auto _ : state) {
        bench.resolver->push(i++ % 2 == 0 ? a : b);
        benchmark::DoNotOptimize(bench.published.get());
    }
    check(state, bench, static_cast<std::size_t>(state.range(0)));
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

// A discovery update where one host's weight changed (a DNS SRV or file edit). The two sets are made
// before timing; the copy pushed each time (the resolver hands over a fresh set) is timed, as a
// resolver's set is built anyway.
void BM_SnapshotDiscoveryReweight(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Bench bench(n, config::LbPolicy::least_request);
    auto changed = endpoints(n);
    changed[n / 2].weight += 10;
    push_in_turn(state, bench, changed, endpoints(n));
}
BENCHMARK(BM_SnapshotDiscoveryReweight)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

// A discovery update where one host left and a new one came (a replica replaced): a Host and its
// record made, one retired, the outlier detector told of both.
void BM_SnapshotDiscoveryReplace(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Bench bench(n, config::LbPolicy::least_request);
    auto replaced = endpoints(n);
    replaced[n / 2] = endpoint(n, replaced[n / 2].weight);
    push_in_turn(state, bench, replaced, endpoints(n));
}
BENCHMARK(BM_SnapshotDiscoveryReplace)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

// A discovery update with the same answer (a DNS refresh, the endpoints file rewritten unchanged) for a
// maglev cluster: the snapshot is rebuilt, the table kept (it was rebuilt each time before).
void BM_SnapshotDiscoveryUnchangedMaglev(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Bench bench(n, config::LbPolicy::maglev);
    const auto same = endpoints(n);
    push_in_turn(state, bench, same, same);
}
BENCHMARK(BM_SnapshotDiscoveryUnchangedMaglev)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

// A host's state changes (here: drained, then back), with no discovery work: the rebuild alone.
void drain_toggle(benchmark::State& state, config::LbPolicy policy) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Bench bench(n, policy);
    const std::string first = bench.published->hosts.front().host->name();
    bool draining = false;
    for (auto _ : state) {
        draining = !draining;
        if (!bench.cluster->set_draining(first, draining)) {
            state.SkipWithError("no such host");
            break;
        }
        benchmark::DoNotOptimize(bench.published.get());
    }
    if (draining) { bench.cluster->set_draining(first, false); }
    check(state, bench, n);
    state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_SnapshotDrainToggle(benchmark::State& state) { drain_toggle(state, config::LbPolicy::least_request); }
BENCHMARK(BM_SnapshotDrainToggle)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

// The same for a maglev cluster: the rebuild includes the MaglevTable (65537 slots up to 655 hosts,
// 100 per host above).
void BM_SnapshotDrainToggleMaglev(benchmark::State& state) { drain_toggle(state, config::LbPolicy::maglev); }
BENCHMARK(BM_SnapshotDrainToggleMaglev)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace drover::proxy
