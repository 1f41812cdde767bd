#pragma once
// OutlierDetector: passive health for one cluster, judged from real traffic. Owns, per host, the
// local-origin and backend-origin failure streaks, whether the host is ejected and until when, and how
// many times it has been ejected (which sets how long the next ejection lasts). Pure and single-threaded:
// it lives on the control loop. Workers only post outcomes to it (at once when a streak may be
// ejection-worthy, so a dead replica leaves rotation within one round trip of the evidence); the control
// loop calls record(), tick() from its sweep timer (at next_deadline()), uneject() when an active check
// passes, and re-publishes the cluster snapshot whenever the ejected set changes.
//
// Brakes (STYLE rule 13), each with a counter:
//  - consecutive_failures in either streak ejects at once; a success resets both streaks;
//  - never more than max_ejection_percent of the cluster's hosts ejected at once: the cap is
//    floor(percent x hosts), so with few hosts it rounds *down* (1 host: never; 2 or 3 hosts at 50%: one)
//    - an ejection refused by the cap is reported and counted once per streak (not at every further
//    failure: a dead host behind the cap fails every request sent to it), and the streak is kept so
//    the host is ejected by its next failure once a slot frees;
//  - ejection time = base_ejection_time x n (n = times ejected, including this one), capped at
//    max_ejection_time, spread by +-10% (kept at or below the cap) so hosts ejected together do not
//    return together;
//  - decay: once a host is back, every decay_interval (default 6 x base_ejection_time) it spends
//    without being ejected again takes one off n. A host that flaps keeps its growing ejection time; a
//    host that recovered and stayed good for long returns to short ejections.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "health/outcome.hpp"

namespace drover::health {

// A host as the cluster names it in logs and metrics: "127.0.0.1:9001" (discovery::to_string).
using HostId = std::string;
// A uniform random number in [0, 1). Injected so tests can fix it.
using UnitRandom = std::function<double()>;

class OutlierDetector {
public:
    using Clock = std::chrono::steady_clock;
    using Duration = std::chrono::milliseconds;

    struct Settings {
        std::uint32_t consecutive_failures = 3;
        Duration base_ejection_time{5000};
        Duration max_ejection_time{300000};
        double max_ejection_percent = 0.50;   // fraction of the cluster's hosts
        Duration decay_interval{30000};       // see the header comment
        double jitter = 0.10;                 // fraction of the ejection time

        static Settings from(const config::OutlierDetection& config);
    };

    struct Decision {
        enum class Action : std::uint8_t { none, ejected, refused_by_cap };
        Action action = Action::none;
        Origin streak = Origin::none;        // which streak crossed the threshold
        std::uint32_t failures = 0;          // its length
        std::uint32_t ejection_count = 0;    // n after this decision
        Clock::time_point ejected_until{};   // when action == ejected
    };

    // What the admin view shows for one host. ejection_count is as of the last record()/tick() (decay is
    // applied there, not in this const read).
    struct HostStatus {
        bool ejected = false;
        Clock::time_point ejected_until{};
        std::uint32_t ejection_count = 0;
        std::uint32_t local_origin_failures = 0;
        std::uint32_t backend_origin_failures = 0;
        Origin last_ejection_streak = Origin::none;
    };

    struct Counters {
        std::uint64_t ejections_total = 0;
        std::uint64_t ejections_local_origin_total = 0;
        std::uint64_t ejections_backend_origin_total = 0;
        std::uint64_t ejections_refused_by_cap_total = 0;
        std::uint64_t unejections_early_total = 0;   // brought back by a passing active check
    };

    OutlierDetector(Settings settings, UnitRandom random);

    // The cluster's host list changes with discovery. Hosts unknown to the detector are also added by
    // record(), but the cap counts only hosts it knows, so the cluster should add them all up front.
    void add_host(std::string_view host);
    void remove_host(std::string_view host);

    Decision record(std::string_view host, Outcome outcome, Clock::time_point now);

    // Ends ejections that are due and applies decay. Returns the hosts that came back.
    std::vector<HostId> tick(Clock::time_point now);

    // A passing active check brings an ejected host back early. Returns whether it was ejected.
    bool uneject(std::string_view host, Clock::time_point now);

    // When tick() next has something to do: the earliest ejected_until; max() when none is ejected.
    Clock::time_point next_deadline() const;

    bool is_ejected(std::string_view host) const;
    HostStatus status(std::string_view host) const;
    std::size_t host_count() const { return hosts_.size(); }
    std::size_t ejected_count() const { return ejected_; }
    // How many hosts may be ejected at once with the current host count.
    std::size_t max_ejected() const;
    const Counters& counters() const { return counters_; }
    const Settings& settings() const { return settings_; }
    // A reload changed the settings: current ejections keep their end times; the new values apply to
    // the next decision.
    void set_settings(Settings settings);

private:
    struct HostEntry {
        std::uint32_t local_failures = 0;
        std::uint32_t backend_failures = 0;
        std::uint32_t ejection_count = 0;
        bool ejected = false;
        bool refused = false;   // the current streak was refused by the cap, and reported
        Origin last_streak = Origin::none;
        Clock::time_point ejected_until{};
        Clock::time_point decay_from{};   // when the host came back, or the last decay step
    };

    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    HostEntry& entry(std::string_view host);
    void decay(HostEntry& host, Clock::time_point now) const;
    Duration ejection_time(std::uint32_t n);
    void end_ejection(HostEntry& host, Clock::time_point now);

    Settings settings_;
    UnitRandom random_;
    std::unordered_map<HostId, HostEntry, StringHash, std::equal_to<>> hosts_;
    std::size_t ejected_ = 0;
    Counters counters_;
};

}  // namespace drover::health
