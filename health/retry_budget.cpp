#include "health/retry_budget.hpp"

#include <algorithm>
#include <cmath>

namespace drover::health {

RetryBudget::RetryBudget(Settings settings)
    : settings_(settings),
      bucket_width_(std::max(Duration(1), settings.window / static_cast<std::int64_t>(kBuckets))) {
    settings_.budget = std::max(0.0, settings_.budget);
    settings_.min_retries_per_second = std::max(0.0, settings_.min_retries_per_second);
}

std::int64_t RetryBudget::epoch_of(Clock::time_point now) const {
    return std::chrono::duration_cast<Duration>(now.time_since_epoch()) / bucket_width_;
}

RetryBudget::Bucket& RetryBudget::current(Clock::time_point now) {
    const std::int64_t epoch = epoch_of(now);
    const auto k = static_cast<std::int64_t>(kBuckets);
    Bucket& b = buckets_[static_cast<std::size_t>(((epoch % k) + k) % k)];
    if (b.epoch != epoch) { b = Bucket{epoch, 0, 0}; }
    return b;
}

void RetryBudget::on_request(Clock::time_point now) {
    ++current(now).requests;
    ++counters_.requests_total;
}

std::uint64_t RetryBudget::requests_in_window(Clock::time_point now) {
    const std::int64_t epoch = epoch_of(now);
    std::uint64_t n = 0;
    for (const Bucket& b : buckets_) {
        if (b.epoch > epoch - static_cast<std::int64_t>(kBuckets) && b.epoch <= epoch) { n += b.requests; }
    }
    return n;
}

std::uint64_t RetryBudget::retries_in_window(Clock::time_point now) {
    const std::int64_t epoch = epoch_of(now);
    std::uint64_t n = 0;
    for (const Bucket& b : buckets_) {
        if (b.epoch > epoch - static_cast<std::int64_t>(kBuckets) && b.epoch <= epoch) { n += b.retries; }
    }
    return n;
}

std::uint64_t RetryBudget::allowed_retries(Clock::time_point now) {
    const double window_s = std::chrono::duration<double>(bucket_width_ * static_cast<std::int64_t>(kBuckets)).count();
    const double by_fraction = settings_.budget * static_cast<double>(requests_in_window(now));
    const double floor = settings_.min_retries_per_second * window_s;
    // Round down: a budget of 20% over 4 requests allows no retry beyond the floor, never 0.8 of one.
    return static_cast<std::uint64_t>(std::floor(std::max(by_fraction, floor) + 1e-9));
}

bool RetryBudget::try_acquire_retry(Clock::time_point now) {
    if (retries_in_window(now) >= allowed_retries(now)) {
        ++counters_.exhausted_total;
        return false;
    }
    ++current(now).retries;
    ++counters_.retries_total;
    return true;
}

}  // namespace drover::health
