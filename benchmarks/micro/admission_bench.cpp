// Admission on the HTTP data path, per request: what an admitted request pays (a cluster slot, a
// host-cap check, an adaptive-limit slot, all given back) and what a shed request costs Drover (the
// refusal and its Retry-After). Both must be negligible next to proxying a request (~54k instructions,
// docs/performance.md).
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>

#include "health/concurrency_limiter.hpp"
#include "proxy/admission.hpp"

namespace drover::proxy {
namespace {

void BM_AdmitAndRelease(benchmark::State& state) {
    ClusterStats stats;
    const discovery::Host host(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address_v4(0x0a000001), 80));
    health::ConcurrencyLimiter limiter(health::ConcurrencyLimiter::Settings::from(config::AdaptiveConcurrency{}));
    auto now = std::chrono::steady_clock::now();
    for (auto _ : state) {
        const bool admitted = take_cluster_slot(stats, 1024) && host_has_room(host, 64) && limiter.try_acquire();
        benchmark::DoNotOptimize(admitted);
        now += std::chrono::microseconds(100);
        limiter.release(now, std::chrono::milliseconds(1), true);
        release_cluster_slot(stats);
    }
}
BENCHMARK(BM_AdmitAndRelease);

void BM_ShedDecision(benchmark::State& state) {
    ClusterStats stats;
    stats.requests_active.store(1024);   // the cluster is full
    stats.pending_active.store(16);
    for (auto _ : state) {
        const bool admitted = take_cluster_slot(stats, 1024);
        benchmark::DoNotOptimize(admitted);
        benchmark::DoNotOptimize(shed_retry_after(stats.pending_active.load(std::memory_order_relaxed), 1024, 0.05));
    }
}
BENCHMARK(BM_ShedDecision);

}  // namespace
}  // namespace drover::proxy
