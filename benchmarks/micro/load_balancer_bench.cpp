// choose() on the data path: called once per connection (TCP) or request (HTTP), per attempt.
#include <benchmark/benchmark.h>

#include "proxy/load_balancer/round_robin.hpp"

namespace drover::proxy {
namespace {

ClusterSnapshot make_snapshot(std::size_t hosts, bool mixed_weights) {
    ClusterSnapshot s;
    s.version = 1;
    for (std::size_t i = 0; i < hosts; ++i) {
        auto address = boost::asio::ip::make_address_v4(static_cast<std::uint32_t>(0x0a000000 + i));
        auto host = std::make_shared<const discovery::Host>(boost::asio::ip::tcp::endpoint(address, 80));
        s.hosts.push_back({host, static_cast<std::uint32_t>(mixed_weights ? 1 + i % 3 : 1)});
    }
    return s;
}

void BM_RoundRobinChoose(benchmark::State& state) {
    const auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), false);
    RoundRobin rr;
    for (auto _ : state) { benchmark::DoNotOptimize(rr.choose(snapshot, {})); }
}
BENCHMARK(BM_RoundRobinChoose)->Arg(10)->Arg(100)->Arg(10000);

void BM_RoundRobinChooseWeighted(benchmark::State& state) {
    const auto snapshot = make_snapshot(static_cast<std::size_t>(state.range(0)), true);
    RoundRobin rr;
    for (auto _ : state) { benchmark::DoNotOptimize(rr.choose(snapshot, {})); }
}
BENCHMARK(BM_RoundRobinChooseWeighted)->Arg(10)->Arg(100)->Arg(10000);

}  // namespace
}  // namespace drover::proxy
