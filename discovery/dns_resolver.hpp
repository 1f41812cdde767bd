#pragma once
// Discovery by DNS name (discovery.dns): A, AAAA, both, or SRV with its targets resolved to addresses.
//
// Runs on the control loop's io_context and nowhere else: c-ares is driven by that loop (its sockets
// are watched through asio descriptors, its timeouts run on an asio timer), so there are no threads
// and no blocking calls. c-ares stays behind the pimpl; no c-ares type appears in this header.
//
// When to re-resolve and what a failure means is RefreshSchedule's decision (refresh_schedule.hpp):
// at the record TTL clamped to refresh.min/max with jitter; on timeout, SERVFAIL, NXDOMAIN, refused or
// an empty answer the last good set stays (stale) and the resolver retries with backoff; hosts leave
// only when a successful answer no longer lists them. Sets are delivered only when they change.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "discovery/resolver.hpp"

namespace drover::discovery {

class DnsResolver final : public Resolver {
public:
    // Uniform in [0, 1): the jitter source. Tests pass a fixed one; empty = a seeded generator.
    using Random = std::function<double()>;

    DnsResolver(boost::asio::io_context& control, std::string cluster, config::DnsDiscovery config,
                Random random = {});
    ~DnsResolver() override;
    DnsResolver(const DnsResolver&) = delete;
    DnsResolver& operator=(const DnsResolver&) = delete;

    void start(UpdateCallback on_update) override;
    void stop() override;
    ResolverStatus status() const override;
    bool update(const config::Discovery& next) override;

private:
    class Impl;
    // Shared with the resolution coroutine, which may outlive this object by one loop turn after stop().
    std::shared_ptr<Impl> impl_;
};

}  // namespace drover::discovery
