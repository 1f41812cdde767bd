#pragma once
// When a DNS-discovered cluster re-resolves, and what failed refreshes mean for the set it serves.
// Pure: no I/O, no timers, no clock of its own. The resolver feeds it each outcome with the time and
// a random number (jitter is injected so tests can fix it) and carries out the decision.
//
// Policy:
//  - after a success, refresh at the answer's TTL clamped to [min, max], spread by +-10% (but kept
//    inside [min, max]) so a fleet of sidecars does not query in lockstep;
//  - after the n-th failure in a row, retry after min * 2^(n-1), capped at max, spread the same way;
//  - a failure never empties the set: the last good set keeps serving and is "stale" from the first
//    failed refresh on. With max_stale set, a stale set is dropped at the first failed refresh at least
//    max_stale after it went stale (retries are scheduled so that one falls on that deadline);
//  - every `recreate_channel_after` failures in a row, the resolver starts over with a fresh channel
//    (a wedged channel must not pin a cluster at zero hosts or a stale set forever).

#include <chrono>
#include <cstdint>
#include <optional>

namespace drover::discovery {

using RefreshClock = std::chrono::steady_clock;
using RefreshDuration = std::chrono::milliseconds;

// Spread applied to every delay, as a fraction of it.
inline constexpr double kRefreshJitter = 0.10;

// The delay after a successful answer whose shortest record TTL is `ttl`. `random` is in [0, 1).
RefreshDuration next_refresh(RefreshDuration ttl, RefreshDuration min, RefreshDuration max, double random);

// The delay after the `failures`-th consecutive failure (1 for the first). `random` is in [0, 1).
RefreshDuration retry_backoff(std::uint32_t failures, RefreshDuration min, RefreshDuration max,
                              double random);

class RefreshSchedule {
public:
    struct Settings {
        RefreshDuration min{1000};
        RefreshDuration max{30000};
        std::optional<RefreshDuration> max_stale;   // absent: a stale set serves until DNS answers again
        std::uint32_t recreate_channel_after = 3;   // 0: never
    };

    struct Decision {
        RefreshDuration delay{0};        // until the next resolution starts
        bool drop_stale = false;         // stop serving the stale set (it outlived max_stale)
        bool recreate_channel = false;   // open a fresh resolver channel before the next resolution
    };

    explicit RefreshSchedule(Settings settings);
    // New bounds for the decisions from now on (a reload); the state so far is kept.
    void set_settings(Settings settings) { settings_ = settings; }

    // A successful answer with records; `ttl` is the shortest TTL among them (absent: unknown).
    Decision on_success(std::optional<RefreshDuration> ttl, RefreshClock::time_point now, double random);
    // Timeout, SERVFAIL, NXDOMAIN, refused, an empty answer, ...: anything that produced no set.
    Decision on_failure(RefreshClock::time_point now, double random);

    bool resolved() const { return last_success_.has_value(); }   // a success ever
    bool serving() const { return serving_; }                     // a set is in use (not dropped)
    bool stale() const { return serving_ && stale_since_.has_value(); }
    std::uint32_t consecutive_failures() const { return consecutive_failures_; }
    std::optional<RefreshClock::time_point> last_success() const { return last_success_; }
    std::optional<RefreshClock::time_point> stale_since() const { return stale_since_; }

private:
    Settings settings_;
    bool serving_ = false;
    std::uint32_t consecutive_failures_ = 0;
    std::optional<RefreshClock::time_point> last_success_;
    std::optional<RefreshClock::time_point> stale_since_;
};

}  // namespace drover::discovery
