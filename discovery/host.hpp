#pragma once
// One upstream replica as the cluster knows it: its address, plus counters that live as long as the
// replica stays in discovery (they survive snapshot rebuilds). Created and dropped on the control
// loop; workers hold shared_ptrs through snapshots and update the atomics (relaxed: they are
// statistics and limits, never used to order other memory).

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "discovery/endpoint.hpp"

namespace drover::discovery {

struct HostStats {
    std::atomic<std::int64_t> connections_active{0};
    // What least_request balances on: in-flight requests (HTTP), open upstream connections (TCP).
    std::atomic<std::int64_t> requests_active{0};
    std::atomic<std::uint64_t> connections_total{0};
    std::atomic<std::uint64_t> connect_failures{0};
    std::atomic<bool> removed{false};   // discovery no longer lists it: finish, never pool again
    std::atomic<bool> draining{false};  // drained by the admin: the same, until undrained
    // Set while the control loop counts a failure streak for the host: workers then report successes
    // too, so the streak resets (see proxy::HealthReporter). Written by both sides, relaxed.
    std::atomic<bool> failing{false};
    std::atomic<std::uint64_t> pool_reuses{0};                     // HTTP requests sent on a kept-alive connection
    std::array<std::atomic<std::uint64_t>, 5> responses_by_class{};   // HTTP responses, 1xx..5xx
};

class Host {
public:
    explicit Host(boost::asio::ip::tcp::endpoint address)
        : address_(address), name_(to_string(address)) {}

    const boost::asio::ip::tcp::endpoint& address() const { return address_; }
    const std::string& name() const { return name_; }   // "127.0.0.1:9001"
    HostStats& stats() const { return stats_; }

private:
    boost::asio::ip::tcp::endpoint address_;
    std::string name_;
    mutable HostStats stats_;
};

}  // namespace drover::discovery
