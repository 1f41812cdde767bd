// The health cores on the control loop: HealthState::record once per probe result, OutlierDetector::record
// once per upstream outcome the workers post, select_hosts once per snapshot rebuild. None is on the
// request path, but outcomes arrive at request rate in an outage, and select_hosts runs every rebuild
// while hosts are in slow start, so all three must stay far below a microsecond per host.
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "health/concurrency_limiter.hpp"
#include "health/health_state.hpp"
#include "health/outlier_detector.hpp"
#include "health/selection.hpp"

namespace drover::health {
namespace {

using namespace std::chrono_literals;

const Clock::time_point t0{std::chrono::hours(1000)};

// Alternating pass/fail with thresholds 1/1: a transition (and a history entry with its reason string)
// on every call, the worst case.
void BM_HealthStateRecordFlapping(benchmark::State& state) {
    HealthState s(1, 1);
    bool passed = true;
    auto now = t0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(s.record(passed, now));
        passed = !passed;
        now += 1ms;
    }
}
BENCHMARK(BM_HealthStateRecordFlapping);

// Steady passes: the common case, no transition.
void BM_HealthStateRecordSteady(benchmark::State& state) {
    HealthState s(2, 2);
    s.record(true, t0);
    for (auto _ : state) { benchmark::DoNotOptimize(s.record(true, t0)); }
}
BENCHMARK(BM_HealthStateRecordSteady);

std::vector<std::string> host_names(std::size_t n) {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < n; ++i) { names.push_back("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ":80"); }
    return names;
}

// Round robin over all hosts; every fifth visit to a host is a 5xx, the others succeed, so streaks
// grow and reset but nobody is ejected: the lookup and streak update are what is measured.
void BM_OutlierDetectorRecord(benchmark::State& state) {
    const auto names = host_names(static_cast<std::size_t>(state.range(0)));
    OutlierDetector d(OutlierDetector::Settings{}, [] { return 0.5; });
    for (const auto& n : names) { d.add_host(n); }
    std::size_t i = 0;
    for (auto _ : state) {
        const Outcome o = ((i / names.size()) % 5 == 4) ? Outcome::status_5xx : Outcome::success;
        benchmark::DoNotOptimize(d.record(names[i % names.size()], o, t0));
        ++i;
    }
    if (d.counters().ejections_total != 0) { state.SkipWithError("a host was ejected: not the measured path"); }
}
BENCHMARK(BM_OutlierDetectorRecord)->Arg(10)->Arg(100)->Arg(10000);

// A realistic mix: most healthy, some unhealthy, ejected, unknown, draining, a tenth in slow start.
std::vector<HostInput> mixed_hosts(std::size_t n) {
    std::vector<HostInput> hosts(n);
    for (std::size_t i = 0; i < n; ++i) {
        HostInput& h = hosts[i];
        h.health = (i % 17 == 3) ? Health::unhealthy : (i % 23 == 5) ? Health::unknown : Health::healthy;
        h.ejected = i % 19 == 7;
        h.draining = i % 29 == 11;
        if (i % 10 == 0) { h.slow_start_since = t0 - 3s; }
        h.weight = static_cast<std::uint32_t>(1 + i % 3);
    }
    return hosts;
}

void BM_SelectHosts(benchmark::State& state) {
    const auto hosts = mixed_hosts(static_cast<std::size_t>(state.range(0)));
    const SelectionSettings settings;
    Selection out;
    for (auto _ : state) {
        select_hosts(hosts, settings, t0, out);
        benchmark::DoNotOptimize(out.total_weight);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SelectHosts)->Arg(10)->Arg(100)->Arg(10000);

// ConcurrencyLimiter is on the worker's request path (one try_acquire and one release per upstream
// request), unlike the rest of this file: it must cost a few ns. Sixteen requests stay in flight so
// windows are loaded; time moves 1 us per request, so a 100 ms window (and its percentile over up to
// 256 samples) closes every 100k iterations and is amortised in.
void BM_ConcurrencyLimiterAcquireRelease(benchmark::State& state) {
    ConcurrencyLimiter limiter(ConcurrencyLimiter::Settings::from(config::AdaptiveConcurrency{}));
    for (int i = 0; i < 16; ++i) { limiter.try_acquire(); }
    auto now = t0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter.try_acquire());
        limiter.release(now, 2ms, true);
        now += 1us;
    }
    if (limiter.in_flight() != 16) { state.SkipWithError("in-flight drifted: not the measured path"); }
}
BENCHMARK(BM_ConcurrencyLimiterAcquireRelease);

}  // namespace
}  // namespace drover::health
