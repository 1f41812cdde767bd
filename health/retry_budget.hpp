#pragma once
// RetryBudget: how many retries a cluster may send, so retries never multiply load in an outage. Owns
// a sliding window (default 10 s in 1 s buckets) of requests and retries. A retry is allowed while the
// retries in the window stay below max(budget x requests in the window, min_retries_per_second x window):
// the fraction bounds the extra load at scale, the floor lets a quiet cluster (a few requests a second)
// still retry the odd failure.
//
// Not thread-safe, by design: each worker holds its own budget per cluster and calls it on the data path
// (on_request() once per client request, not per attempt, so retries do not feed their own budget;
// try_acquire_retry() before each retry). The control loop only reads the counters for /metrics. With N
// workers the effective floor is N x min_retries_per_second; size it with that in mind.

#include <array>
#include <chrono>
#include <cstdint>

namespace drover::health {

class RetryBudget {
public:
    using Clock = std::chrono::steady_clock;
    using Duration = std::chrono::milliseconds;
    static constexpr std::size_t kBuckets = 10;

    struct Settings {
        double budget = 0.20;                 // config::Retries::budget
        Duration window{10000};               // split in kBuckets buckets
        double min_retries_per_second = 3.0;
    };

    struct Counters {
        std::uint64_t requests_total = 0;
        std::uint64_t retries_total = 0;
        std::uint64_t exhausted_total = 0;   // retries refused by the budget
    };

    RetryBudget() : RetryBudget(Settings{}) {}
    explicit RetryBudget(Settings settings);

    void on_request(Clock::time_point now);
    // True: the caller may retry, and the retry is counted. False: counted as exhausted.
    bool try_acquire_retry(Clock::time_point now);

    // What the window holds now (for tests and the admin view).
    std::uint64_t requests_in_window(Clock::time_point now);
    std::uint64_t retries_in_window(Clock::time_point now);
    std::uint64_t allowed_retries(Clock::time_point now);
    const Counters& counters() const { return counters_; }

private:
    struct Bucket {
        std::int64_t epoch = -1;   // which bucket_width_ slot since the clock's epoch it counts
        std::uint64_t requests = 0;
        std::uint64_t retries = 0;
    };

    Bucket& current(Clock::time_point now);
    std::int64_t epoch_of(Clock::time_point now) const;

    Settings settings_;
    Duration bucket_width_;
    std::array<Bucket, kBuckets> buckets_{};
    Counters counters_;
};

}  // namespace drover::health
