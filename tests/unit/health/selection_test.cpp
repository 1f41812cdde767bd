// health/selection: who may be picked and with what weight: unknown and draining hosts, ejection,
// both panic policies, slow start, overload.

#include "health/selection.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace drover::health {
namespace {

using namespace std::chrono_literals;

const Clock::time_point t0{std::chrono::hours(1000)};

HostInput healthy(std::uint32_t weight = 1) { return {Health::healthy, false, false, std::nullopt, weight, 1.0}; }
HostInput unhealthy() { return {Health::unhealthy, false, false, std::nullopt, 1, 1.0}; }
HostInput unknown() { return {Health::unknown, false, false, std::nullopt, 1, 1.0}; }
HostInput ejected() { return {Health::healthy, true, false, std::nullopt, 1, 1.0}; }
HostInput draining() { return {Health::healthy, false, true, std::nullopt, 1, 1.0}; }

std::vector<double> weights(const Selection& s) {
    std::vector<double> w;
    for (const auto& h : s.hosts) { w.push_back(h.weight); }
    return w;
}

TEST(Selection, AllHealthyAreEligibleWithTheirWeights) {
    const std::vector<HostInput> hosts{healthy(1), healthy(2), healthy(3)};
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_EQ(weights(s), (std::vector<double>{1, 2, 3}));
    EXPECT_EQ(s.eligible, 3u);
    EXPECT_EQ(s.counted, 3u);
    EXPECT_EQ(s.available, 3u);
    EXPECT_DOUBLE_EQ(s.healthy_fraction, 1.0);
    EXPECT_DOUBLE_EQ(s.total_weight, 6.0);
    EXPECT_FALSE(s.panic);
}

TEST(Selection, UnhealthyAndEjectedHostsAreExcludedButCounted) {
    const std::vector<HostInput> hosts{healthy(), healthy(), unhealthy(), ejected()};
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_EQ(weights(s), (std::vector<double>{1, 1, 0, 0}));
    EXPECT_FALSE(s.hosts[2].eligible);
    EXPECT_FALSE(s.hosts[3].eligible);
    EXPECT_EQ(s.counted, 4u);
    EXPECT_EQ(s.available, 2u);
    EXPECT_DOUBLE_EQ(s.healthy_fraction, 0.5);
    EXPECT_FALSE(s.panic);   // exactly at the threshold is not below it
}

TEST(Selection, UnknownHostsGetNoTrafficAndDoNotCountTowardPanic) {
    // One known host and eight new ones still waiting for their first pass: no panic.
    std::vector<HostInput> hosts{healthy()};
    for (int i = 0; i < 8; ++i) { hosts.push_back(unknown()); }
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_EQ(s.counted, 1u);
    EXPECT_EQ(s.eligible, 1u);
    EXPECT_FALSE(s.panic);
    for (std::size_t i = 1; i < hosts.size(); ++i) { EXPECT_FALSE(s.hosts[i].eligible); }
}

TEST(Selection, DrainingHostsGetNoTrafficAndDoNotCount) {
    const std::vector<HostInput> hosts{healthy(), draining(), draining(), draining()};
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_EQ(weights(s), (std::vector<double>{1, 0, 0, 0}));
    EXPECT_EQ(s.counted, 1u);
    EXPECT_FALSE(s.panic);
}

TEST(Selection, AllUnknownIsNotPanicAndHasNoEligibleHost) {
    const std::vector<HostInput> hosts{unknown(), unknown()};
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_FALSE(s.panic);
    EXPECT_EQ(s.eligible, 0u);
    EXPECT_DOUBLE_EQ(s.healthy_fraction, 1.0);
}

TEST(Selection, EmptyClusterIsNotPanic) {
    const auto s = select_hosts(std::vector<HostInput>{}, {}, t0);
    EXPECT_FALSE(s.panic);
    EXPECT_EQ(s.eligible, 0u);
    EXPECT_TRUE(s.hosts.empty());
}

TEST(Selection, PanicUseAllSendsToEveryCountedHost) {
    // 1 of 4 available: 25% < 50%.
    const std::vector<HostInput> hosts{healthy(), unhealthy(), ejected(), unhealthy(), unknown(), draining()};
    SelectionSettings settings;
    settings.panic_policy = PanicPolicy::use_all;
    const auto s = select_hosts(hosts, settings, t0);
    EXPECT_TRUE(s.panic);
    EXPECT_DOUBLE_EQ(s.healthy_fraction, 0.25);
    // Every counted host, but still never an unknown or draining one.
    EXPECT_EQ(weights(s), (std::vector<double>{1, 1, 1, 1, 0, 0}));
    EXPECT_EQ(s.eligible, 4u);
}

TEST(Selection, PanicFailClosedSendsNowhere) {
    const std::vector<HostInput> hosts{healthy(), unhealthy(), unhealthy(), unhealthy()};
    SelectionSettings settings;
    settings.panic_policy = PanicPolicy::fail_closed;
    const auto s = select_hosts(hosts, settings, t0);
    EXPECT_TRUE(s.panic);
    EXPECT_EQ(s.eligible, 0u);
    EXPECT_DOUBLE_EQ(s.total_weight, 0.0);
    EXPECT_EQ(weights(s), (std::vector<double>{0, 0, 0, 0}));
}

TEST(Selection, AllDownIsPanicUnderBothPolicies) {
    const std::vector<HostInput> hosts{unhealthy(), ejected()};
    SelectionSettings settings;
    EXPECT_TRUE(select_hosts(hosts, settings, t0).panic);
    EXPECT_EQ(select_hosts(hosts, settings, t0).eligible, 2u);
    settings.panic_policy = PanicPolicy::fail_closed;
    EXPECT_TRUE(select_hosts(hosts, settings, t0).panic);
    EXPECT_EQ(select_hosts(hosts, settings, t0).eligible, 0u);
}

TEST(Selection, PanicThresholdZeroDisablesPanic) {
    const std::vector<HostInput> hosts{unhealthy(), unhealthy()};
    SelectionSettings settings;
    settings.panic_threshold = 0.0;
    const auto s = select_hosts(hosts, settings, t0);
    EXPECT_FALSE(s.panic);
    EXPECT_EQ(s.eligible, 0u);
}

TEST(Selection, PanicThresholdIsAStrictBound) {
    SelectionSettings settings;
    settings.panic_threshold = 0.75;
    EXPECT_FALSE(select_hosts(std::vector<HostInput>{healthy(), healthy(), healthy(), unhealthy()}, settings, t0).panic);
    EXPECT_TRUE(select_hosts(std::vector<HostInput>{healthy(), healthy(), unhealthy(), unhealthy()}, settings, t0).panic);
}

TEST(Selection, SlowStartRampsLinearlyFromTheMinimum) {
    SelectionSettings settings;   // 10 s from 10%
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0), 0.1);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 2500ms), 0.325);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 5s), 0.55);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 10s), 1.0);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 1h), 1.0);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 - 1s), 0.1);   // clock skew: the minimum
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, std::nullopt, t0), 1.0);
}

TEST(Selection, SlowStartAggressionClimbsFasterEarly) {
    SelectionSettings settings;
    settings.slow_start_aggression = 2.0;
    // t = 0.25: sqrt(0.25) = 0.5 of the way from 10% to 100%.
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 2500ms), 0.55);
    settings.slow_start_aggression = 0.0;   // invalid: treated as linear
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0 + 2500ms), 0.325);
}

TEST(Selection, SlowStartZeroIsOff) {
    SelectionSettings settings;
    settings.slow_start = std::chrono::milliseconds(0);
    EXPECT_DOUBLE_EQ(slow_start_fraction(settings, t0, t0), 1.0);
}

TEST(Selection, EffectiveWeightCombinesWeightSlowStartAndOverload) {
    std::vector<HostInput> hosts{healthy(3), healthy(2)};
    hosts[0].slow_start_since = t0;
    hosts[0].weight_factor = 0.5;
    const auto s = select_hosts(hosts, {}, t0 + 5s);
    EXPECT_DOUBLE_EQ(s.hosts[0].slow_start_fraction, 0.55);
    EXPECT_DOUBLE_EQ(s.hosts[0].weight, 3 * 0.55 * 0.5);
    EXPECT_DOUBLE_EQ(s.hosts[1].weight, 2.0);
    EXPECT_DOUBLE_EQ(s.hosts[1].slow_start_fraction, 1.0);
    EXPECT_DOUBLE_EQ(s.total_weight, 3 * 0.55 * 0.5 + 2.0);
}

TEST(Selection, ZeroWeightIsNotEligible) {
    const std::vector<HostInput> hosts{healthy(0), healthy(1)};
    const auto s = select_hosts(hosts, {}, t0);
    EXPECT_FALSE(s.hosts[0].eligible);
    EXPECT_EQ(s.eligible, 1u);
    EXPECT_EQ(s.available, 2u);   // zero weight is a routing choice, not ill health
}

TEST(Selection, ReusingTheOutputClearsPreviousResults) {
    Selection out;
    select_hosts(std::vector<HostInput>{healthy(), healthy(), healthy()}, {}, t0, out);
    EXPECT_EQ(out.eligible, 3u);
    select_hosts(std::vector<HostInput>{unhealthy()}, SelectionSettings{0.5, PanicPolicy::fail_closed}, t0, out);
    EXPECT_EQ(out.hosts.size(), 1u);
    EXPECT_EQ(out.eligible, 0u);
    EXPECT_TRUE(out.panic);
    EXPECT_DOUBLE_EQ(out.total_weight, 0.0);
}

// Priority groups (SRV): the share of requests each group's hosts get, from their weights.
std::vector<double> group_shares(const Selection& s, const std::vector<std::uint32_t>& priority) {
    std::vector<double> shares;
    for (const auto& g : s.priorities) {
        double w = 0.0;
        for (std::size_t i = 0; i < s.hosts.size(); ++i) { w += priority[i] == g.priority ? s.hosts[i].weight : 0.0; }
        shares.push_back(w / s.total_weight);
    }
    return shares;
}

TEST(PrioritySelection, AHealthyBestGroupTakesEverything) {
    const std::vector<HostInput> hosts{healthy(2), healthy(1), healthy(), healthy()};
    const std::vector<std::uint32_t> priority{10, 10, 20, 20};
    Selection s;
    select_priority_hosts(hosts, priority, {}, t0, s);
    EXPECT_EQ(weights(s), (std::vector<double>{2, 1, 0, 0}));   // a group serving alone keeps its weights
    ASSERT_EQ(s.priorities.size(), 2u);
    EXPECT_EQ(s.priorities[0].priority, 10u);
    EXPECT_DOUBLE_EQ(s.priorities[0].load, 1.0);
    EXPECT_DOUBLE_EQ(s.priorities[1].load, 0.0);
    EXPECT_EQ(s.eligible, 2u);
}

TEST(PrioritySelection, AGroupShortOfHostsSpillsInProportionToItsHealth) {
    // Best group: 1 of 3 available, health 1.4 x 1/3 = 46.7%; the cluster (2 of 4 up) is not in panic.
    // The rest goes to the backup group, weights within a group kept in proportion.
    const std::vector<HostInput> hosts{healthy(), ejected(), unhealthy(), healthy(2), healthy(1)};
    const std::vector<std::uint32_t> priority{0, 0, 0, 1, 1};
    Selection s;
    select_priority_hosts(hosts, priority, {}, t0, s);
    EXPECT_FALSE(s.panic);
    ASSERT_EQ(s.priorities.size(), 2u);
    EXPECT_NEAR(s.priorities[0].load, 1.4 / 3, 1e-12);
    EXPECT_NEAR(s.priorities[1].load, 1 - 1.4 / 3, 1e-12);
    EXPECT_EQ(s.priorities[0].counted, 3u);
    EXPECT_EQ(s.priorities[0].available, 1u);
    const auto shares = group_shares(s, priority);
    EXPECT_NEAR(shares[0], 1.4 / 3, 1e-12);
    EXPECT_NEAR(s.hosts[3].weight, 2 * s.hosts[4].weight, 1e-12);
    EXPECT_FALSE(s.hosts[1].eligible);
    EXPECT_FALSE(s.hosts[2].eligible);
    EXPECT_EQ(s.eligible, 3u);
}

TEST(PrioritySelection, OverprovisioningLetsAGroupMissAFewHosts) {
    // 5 of 7 up at 1.4: still the whole load; 4 of 7: 80%.
    std::vector<HostInput> hosts(7, healthy());
    hosts.push_back(healthy());
    std::vector<std::uint32_t> priority(7, 0);
    priority.push_back(1);
    hosts[0] = unhealthy();
    hosts[1] = unhealthy();
    Selection s;
    select_priority_hosts(hosts, priority, SelectionSettings{0.0}, t0, s);
    EXPECT_DOUBLE_EQ(s.priorities[0].load, 1.0);
    EXPECT_FALSE(s.hosts[7].eligible);
    hosts[2] = unhealthy();
    select_priority_hosts(hosts, priority, SelectionSettings{0.0}, t0, s);
    EXPECT_NEAR(s.priorities[0].load, 0.8, 1e-12);
    EXPECT_NEAR(group_shares(s, priority)[1], 0.2, 1e-12);
    // At 100%, every missing host moves its share; at 10000%, strict failover.
    SelectionSettings exact{0.0};
    exact.overprovisioning = 1.0;
    select_priority_hosts(hosts, priority, exact, t0, s);
    EXPECT_NEAR(s.priorities[0].load, 4.0 / 7, 1e-12);
    SelectionSettings strict{0.0};
    strict.overprovisioning = 100.0;
    select_priority_hosts(hosts, priority, strict, t0, s);
    EXPECT_DOUBLE_EQ(s.priorities[0].load, 1.0);
}

TEST(PrioritySelection, LoadFallsThroughSeveralGroupsAndIsScaledUpWhenAllAreShort) {
    // Healths 0.7, 0.7, 0.7: 70% to the first, 30% to the second, none to the third.
    const std::vector<HostInput> hosts{healthy(), unhealthy(), healthy(), unhealthy(), healthy(), unhealthy()};
    const std::vector<std::uint32_t> priority{1, 1, 2, 2, 3, 3};
    Selection s;
    select_priority_hosts(hosts, priority, SelectionSettings{0.0}, t0, s);
    ASSERT_EQ(s.priorities.size(), 3u);
    EXPECT_NEAR(s.priorities[0].load, 0.7, 1e-12);
    EXPECT_NEAR(s.priorities[1].load, 0.3, 1e-12);
    EXPECT_DOUBLE_EQ(s.priorities[2].load, 0.0);
    EXPECT_FALSE(s.hosts[4].eligible);
    // Healths 0.35 and 0.35 (1 of 4 up in each, panic off): half each.
    const std::vector<HostInput> short_hosts{healthy(), unhealthy(), unhealthy(), unhealthy(),
                                             healthy(), unhealthy(), unhealthy(), unhealthy()};
    const std::vector<std::uint32_t> two{1, 1, 1, 1, 2, 2, 2, 2};
    select_priority_hosts(short_hosts, two, SelectionSettings{0.0}, t0, s);
    EXPECT_NEAR(s.priorities[0].load, 0.5, 1e-12);
    EXPECT_NEAR(s.priorities[1].load, 0.5, 1e-12);
}

TEST(PrioritySelection, AGroupWithNothingAvailableOrOnlyUnknownHostsGetsNothing) {
    const std::vector<HostInput> hosts{unknown(), unknown(), ejected(), healthy(), healthy()};
    const std::vector<std::uint32_t> priority{0, 0, 1, 2, 2};
    Selection s;
    select_priority_hosts(hosts, priority, {}, t0, s);
    EXPECT_EQ(weights(s), (std::vector<double>{0, 0, 0, 1, 1}));
    EXPECT_DOUBLE_EQ(s.priorities[2].load, 1.0);
}

TEST(PrioritySelection, InPanicOneGroupServesUnderThePanicPolicy) {
    // 1 of 4 up (25% < 50%): panic. use_all: the best group with an available host, dead ones too.
    const std::vector<HostInput> hosts{unhealthy(), unhealthy(), healthy(), unhealthy()};
    const std::vector<std::uint32_t> priority{0, 0, 1, 1};
    Selection s;
    select_priority_hosts(hosts, priority, {}, t0, s);
    EXPECT_TRUE(s.panic);
    EXPECT_EQ(weights(s), (std::vector<double>{0, 0, 1, 1}));
    // None available anywhere: the best group with a counted host.
    const std::vector<HostInput> down{unknown(), unhealthy(), unhealthy()};
    select_priority_hosts(down, std::vector<std::uint32_t>{0, 1, 1}, {}, t0, s);
    EXPECT_EQ(weights(s), (std::vector<double>{0, 1, 1}));
    // fail_closed: nothing.
    select_priority_hosts(hosts, priority, SelectionSettings{0.5, PanicPolicy::fail_closed}, t0, s);
    EXPECT_EQ(s.eligible, 0u);
}

TEST(PrioritySelection, OneGroupIsPlainSelection) {
    const std::vector<HostInput> hosts{healthy(3), unhealthy(), healthy()};
    Selection s;
    select_priority_hosts(hosts, std::vector<std::uint32_t>{5, 5, 5}, {}, t0, s);
    EXPECT_EQ(weights(s), (std::vector<double>{3, 0, 1}));
    ASSERT_EQ(s.priorities.size(), 1u);
    EXPECT_DOUBLE_EQ(s.priorities[0].load, 1.0);
}

}  // namespace
}  // namespace drover::health
