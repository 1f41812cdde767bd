#pragma once
// One line per HTTP request, to stderr or a file (opened O_APPEND, written with one write(2) per line,
// so lines from different workers never interleave). Off unless `access_log` is configured.
//   <UTC time> <client ip:port> <method> <target> <status> <body bytes> <duration ms> <upstream|-> <error|->

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace drover::proxy {

class AccessLog {
public:
    struct Entry {
        std::string_view client;
        std::string_view method;
        std::string_view target;
        unsigned status;
        std::uint64_t body_bytes;
        std::chrono::milliseconds duration;
        std::string_view upstream;
        std::string_view error;
    };

    // "stderr" or a file path; throws std::system_error when the file cannot be opened.
    explicit AccessLog(const std::string& path);

    // Why `path` could not be opened for appending, or "" if it can; creates nothing (drover --check).
    static std::string problem(const std::string& path);
    ~AccessLog();
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    void write(const Entry& entry) const;

    // Opens the file again at its path (SIGUSR1, after a log rotation moved it away); writers go on
    // without a pause: the new file takes the old descriptor's number (dup2). "" when done (or nothing
    // to do: stderr), else why the old file stays.
    std::string reopen();

private:
    std::string path_;
    int fd_;
    bool owned_;
};

}  // namespace drover::proxy
