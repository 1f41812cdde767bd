#include "discovery/refresh_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace drover::discovery {

namespace {

// A uniform pick in [d - 10%, d + 10%] intersected with [min, max]. At the edges the spread becomes
// one-sided instead of vanishing, so even clusters pinned at refresh.min keep out of lockstep.
RefreshDuration spread(RefreshDuration d, RefreshDuration min, RefreshDuration max, double random) {
    const double center = static_cast<double>(d.count());
    const double lo = std::max(static_cast<double>(min.count()), center * (1.0 - kRefreshJitter));
    const double hi = std::min(static_cast<double>(max.count()), center * (1.0 + kRefreshJitter));
    const double r = std::clamp(random, 0.0, 1.0);
    const auto picked = static_cast<RefreshDuration::rep>(std::llround(lo + (hi - lo) * r));
    return std::clamp(RefreshDuration{picked}, min, max);
}

}  // namespace

RefreshDuration next_refresh(RefreshDuration ttl, RefreshDuration min, RefreshDuration max, double random) {
    max = std::max(min, max);
    return spread(std::clamp(ttl, min, max), min, max, random);
}

RefreshDuration retry_backoff(std::uint32_t failures, RefreshDuration min, RefreshDuration max,
                              double random) {
    max = std::max(min, max);
    RefreshDuration d = min;
    for (std::uint32_t i = 1; i < failures && d < max; ++i) { d *= 2; }
    return spread(std::min(d, max), min, max, random);
}

RefreshSchedule::RefreshSchedule(Settings settings) : settings_(settings) {}

RefreshSchedule::Decision RefreshSchedule::on_success(std::optional<RefreshDuration> ttl,
                                                      RefreshClock::time_point now, double random) {
    serving_ = true;
    consecutive_failures_ = 0;
    last_success_ = now;
    stale_since_.reset();
    // No TTL to go by (should not happen with records): the longest wait the operator allows.
    return Decision{next_refresh(ttl.value_or(settings_.max), settings_.min, settings_.max, random)};
}

RefreshSchedule::Decision RefreshSchedule::on_failure(RefreshClock::time_point now, double random) {
    Decision decision;
    ++consecutive_failures_;
    if (serving_ && !stale_since_) { stale_since_ = now; }
    decision.delay = retry_backoff(consecutive_failures_, settings_.min, settings_.max, random);
    if (serving_ && settings_.max_stale) {
        const auto deadline = *stale_since_ + *settings_.max_stale;
        if (now >= deadline) {
            decision.drop_stale = true;
            serving_ = false;
            stale_since_.reset();
        } else {
            // Retry no later than the deadline, so the set is dropped on time if DNS is still failing.
            const auto left = std::chrono::ceil<RefreshDuration>(deadline - now);
            decision.delay = std::min(decision.delay, left);
        }
    }
    decision.recreate_channel = settings_.recreate_channel_after != 0 &&
                                consecutive_failures_ % settings_.recreate_channel_after == 0;
    return decision;
}

}  // namespace drover::discovery
