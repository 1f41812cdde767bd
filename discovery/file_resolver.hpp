#pragma once
// Discovery from a watched endpoints file (discovery.file), the way orchestrators and config tools
// publish hosts: `endpoints: [ address | { address, weight } ]` (format: docs/configuration.md).
//
// Runs on the control loop. The file's folder is watched with inotify through an asio descriptor, so a
// write-then-rename replacement (the atomic way) or an in-place rewrite is picked up at once; a slow
// stat() check backs inotify up (a folder that does not exist yet, symlink swaps, missed events).
// Parsing is config::load_endpoints_file (yaml-cpp stays in the config layer).
//
// Failure is not emptiness: a malformed, half-written or empty file keeps the last good set and logs
// the error with file:line; a deleted file keeps the last set and warns; when it comes back it is
// loaded again. Sets are delivered only when they change.

#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>

#include "config/config.hpp"
#include "discovery/resolver.hpp"

namespace drover::discovery {

class FileResolver final : public Resolver {
public:
    FileResolver(boost::asio::io_context& control, std::string cluster, config::FileDiscovery config);
    ~FileResolver() override;
    FileResolver(const FileResolver&) = delete;
    FileResolver& operator=(const FileResolver&) = delete;

    void start(UpdateCallback on_update) override;
    void stop() override;
    ResolverStatus status() const override;

private:
    class Impl;
    // Shared with the watch coroutine, which may outlive this object by one loop turn after stop().
    std::shared_ptr<Impl> impl_;
};

}  // namespace drover::discovery
