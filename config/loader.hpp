#pragma once
// Loads YAML into drover::config::Config. Only loader.cpp includes yaml-cpp.
// Validation never stops at the first problem: every error found is returned, each with file:line:col
// and the key path, so a user fixes a file in one pass. A file with any error yields no Config.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace drover::config {

struct ConfigError {
    Mark mark;
    std::string path;      // key path, e.g. "clusters[1].health_check.interval"
    std::string message;
    bool warning = false;  // a setting that is valid but has no effect; the config still loads

    // "file:line:col: key.path: message", or "file:line:col: warning: key.path: message"
    std::string str() const;
};

struct LoadResult {
    std::optional<Config> config;   // set iff errors is empty
    std::vector<ConfigError> errors;
    std::vector<ConfigError> warnings;   // reported by --check and logged at start and reload

    bool ok() const { return errors.empty(); }
};

// Reads and validates a file. Never throws: I/O and syntax problems are errors too.
// `regular_only`: anything but a regular file is an error, not read (a reload: a FIFO would block the
// control loop until someone writes to it, and a pipe read at start is gone). At start a pipe is fine:
// `--config <(envsubst < drover.yaml.in)`.
LoadResult load_file(const std::string& path, bool regular_only = false);

// Same, for text already in memory; `source_name` stands for the file name in marks.
LoadResult load_string(std::string_view yaml, const std::string& source_name);

// What a config needs before the proxy runs it, beyond what the loader checks key by key: at least
// one listener. An empty or truncated file reads as a valid config with none, and running it (or
// reloading to it) would close every port. drover, drover --check and every reload call this; the
// loader does not, so that a section can be loaded and tested on its own.
std::vector<ConfigError> check_runnable(const Config& config);

// An endpoints file (discovery.file): `endpoints: [ address | { address, weight } ]`, at least one.
struct EndpointsFileResult {
    std::optional<std::vector<StaticEndpoint>> endpoints;   // set iff errors is empty
    std::vector<ConfigError> errors;                        // each with file:line:col, like config errors
    bool unreadable = false;                                // the file could not be read at all

    bool ok() const { return errors.empty(); }
};

// Reads and validates an endpoints file. Never throws; an unreadable, empty or malformed file is an
// error (the caller keeps the hosts it had).
EndpointsFileResult load_endpoints_file(const std::string& path);

// Same, for text already in memory; `source_name` stands for the file name in marks.
EndpointsFileResult load_endpoints_string(std::string_view yaml, const std::string& source_name);

// Value parsers shared with the endpoints-file reader and tests; nullopt on malformed input.
std::optional<Duration> parse_duration(std::string_view text);      // "250ms", "1s", "5m", "1h", "1.5s"
std::optional<std::uint64_t> parse_size(std::string_view text);     // "64KiB", "1MiB", "100", "1GB"
std::optional<double> parse_percent(std::string_view text);         // "50%" -> 0.5
std::optional<Address> parse_address(std::string_view text);        // "1.2.3.4:80", "[::1]:80"

}  // namespace drover::config
