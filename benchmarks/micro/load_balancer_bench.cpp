// choose() on the data path: called once per connection (TCP) or request (HTTP), per attempt.
// Uniform = every host weight 1; weighted = weights 1, 2, 3 in turn. The maglev table build runs on
// the control loop once per discovery change, never per request.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>

#include "proxy/load_balancer/hash.hpp"
#include "proxy/load_balancer/least_request.hpp"
#include "proxy/load_balancer/maglev.hpp"
#include "proxy/load_balancer/random.hpp"
#include "proxy/load_balancer/round_robin.hpp"

namespace drover::proxy {
namespace {

ClusterSnapshot make_snapshot(std::size_t hosts, bool mixed_weights) {
    ClusterSnapshot s;
    s.version = 1;
    for (std::size_t i = 0; i < hosts; ++i) {
        auto address = boost::asio::ip::make_address_v4(static_cast<std::uint32_t>(0x0a000000 + i));
        auto host = std::make_shared<const discovery::Host>(boost::asio::ip::tcp::endpoint(address, 80));
        // Some load, so least_request compares real numbers.
        host->stats().requests_active.store(static_cast<std::int64_t>(i % 7));
        s.hosts.push_back({host, static_cast<std::uint32_t>(mixed_weights ? 1 + i % 3 : 1)});
    }
    return s;
}

template <class Policy>
void choose_loop(benchmark::State& state, bool mixed_weights) {
    const auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), mixed_weights);
    Policy policy;
    for (auto _ : state) { benchmark::DoNotOptimize(policy.choose(snapshot, {})); }
}

void BM_RoundRobinChoose(benchmark::State& state) { choose_loop<RoundRobin>(state, false); }
BENCHMARK(BM_RoundRobinChoose)->Arg(10)->Arg(100)->Arg(10000);

void BM_RoundRobinChooseWeighted(benchmark::State& state) { choose_loop<RoundRobin>(state, true); }
BENCHMARK(BM_RoundRobinChooseWeighted)->Arg(10)->Arg(100)->Arg(10000);

void BM_LeastRequestChoose(benchmark::State& state) { choose_loop<LeastRequest>(state, false); }
BENCHMARK(BM_LeastRequestChoose)->Arg(10)->Arg(100)->Arg(10000);

void BM_LeastRequestChooseWeighted(benchmark::State& state) { choose_loop<LeastRequest>(state, true); }
BENCHMARK(BM_LeastRequestChooseWeighted)->Arg(10)->Arg(100)->Arg(10000);

void BM_RandomChoose(benchmark::State& state) { choose_loop<WeightedRandom>(state, false); }
BENCHMARK(BM_RandomChoose)->Arg(10)->Arg(100)->Arg(10000);

void BM_RandomChooseWeighted(benchmark::State& state) { choose_loop<WeightedRandom>(state, true); }
BENCHMARK(BM_RandomChooseWeighted)->Arg(10)->Arg(100)->Arg(10000);

// A different key each pick (as from many clients), so table reads are not all one cache line.
void maglev_choose(benchmark::State& state, bool mixed_weights) {
    auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), mixed_weights);
    snapshot.maglev = std::make_shared<const MaglevTable>(snapshot.hosts);
    Maglev policy;
    std::uint64_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(policy.choose(snapshot, ChooseContext{{}, mix64(++i)}));
    }
}

void BM_MaglevChoose(benchmark::State& state) { maglev_choose(state, false); }
BENCHMARK(BM_MaglevChoose)->Arg(10)->Arg(100)->Arg(10000);

void BM_MaglevChooseWeighted(benchmark::State& state) { maglev_choose(state, true); }
BENCHMARK(BM_MaglevChooseWeighted)->Arg(10)->Arg(100)->Arg(10000);

// A retry: the key's host was tried, walk on to the next slot.
void BM_MaglevChooseRetry(benchmark::State& state) {
    auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), false);
    snapshot.maglev = std::make_shared<const MaglevTable>(snapshot.hosts);
    Maglev policy;
    std::uint64_t i = 0;
    for (auto _ : state) {
        const std::uint64_t key = mix64(++i);
        const discovery::Host* tried[] = {policy.choose(snapshot, ChooseContext{{}, key})->host.get()};
        benchmark::DoNotOptimize(policy.choose(snapshot, ChooseContext{tried, key}));
    }
}
BENCHMARK(BM_MaglevChooseRetry)->Arg(10)->Arg(100)->Arg(10000);

void BM_MaglevTableBuild(benchmark::State& state) {
    const auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), false);
    for (auto _ : state) { benchmark::DoNotOptimize(MaglevTable(snapshot.hosts)); }
}
BENCHMARK(BM_MaglevTableBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_MaglevTableBuildWeighted(benchmark::State& state) {
    const auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), true);
    for (auto _ : state) { benchmark::DoNotOptimize(MaglevTable(snapshot.hosts)); }
}
BENCHMARK(BM_MaglevTableBuildWeighted)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace drover::proxy
