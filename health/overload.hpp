#pragma once
// Overload: "overloaded is not dead". Owns, per host, a temporary cut in its share of traffic after it
// said it was busy (429, or 503 with Retry-After). Ejecting a busy replica would push its load onto the
// others and turn one hot host into a cluster-wide death spiral; lowering its share for the period it
// asked for lets it drain and come back smoothly.
//
// Pure; lives on the control loop. Workers post (host, Retry-After) when they see such a response; the
// control loop calls on_overload() and, while any host is recovering, rebuilds the snapshot with
// weight_factor() folded into the host weights (see health/selection.hpp: HostInput::weight_factor).
//
// Shape: right after an overload signal the factor is `floor`, then it climbs linearly back to 1 over
// the Retry-After period (clamped to [min_period, max_period]). A new signal while recovering restarts
// from the floor and keeps whichever of the old and new periods ends later.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "health/outlier_detector.hpp"

namespace drover::health {

class Overload {
public:
    using Clock = std::chrono::steady_clock;
    using Duration = std::chrono::milliseconds;

    struct Settings {
        double floor = 0.10;          // share kept right after the signal; > 0 so the host still gets a trickle
        Duration min_period{1000};    // Retry-After 0 or absent still backs off this long
        Duration max_period{60000};   // a host asking for an hour is not taken at its word
    };

    struct Counters {
        std::uint64_t overloads_total = 0;
    };

    Overload() = default;
    explicit Overload(Settings settings);

    void on_overload(std::string_view host, Duration retry_after, Clock::time_point now);
    // In (0, 1]: 1 for a host that is not recovering.
    double weight_factor(std::string_view host, Clock::time_point now) const;
    bool recovering(std::string_view host, Clock::time_point now) const;
    // Drops hosts that have fully recovered; returns how many are still recovering (0: no need to
    // rebuild the snapshot again for overload).
    std::size_t prune(Clock::time_point now);
    void remove_host(std::string_view host);
    const Counters& counters() const { return counters_; }

private:
    struct Entry {
        Clock::time_point since;
        Clock::time_point until;
    };
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    Settings settings_;
    std::unordered_map<HostId, Entry, StringHash, std::equal_to<>> hosts_;
    Counters counters_;
};

}  // namespace drover::health
