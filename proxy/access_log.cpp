#include "proxy/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <ctime>
#include <filesystem>
#include <system_error>

namespace drover::proxy {

AccessLog::AccessLog(const std::string& path) : path_(path), fd_(STDERR_FILENO), owned_(false) {
    if (path == "stderr") { return; }
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd_ < 0) { throw std::system_error(errno, std::generic_category(), "access log " + path); }
    owned_ = true;
}

std::string AccessLog::problem(const std::string& path) {
    if (path == "stderr") { return {}; }
    std::error_code ec;
    const std::filesystem::path file{path};
    if (std::filesystem::exists(file, ec)) {
        if (std::filesystem::is_directory(file, ec)) { return "it is a directory"; }
        return ::access(path.c_str(), W_OK) == 0 ? std::string{} : std::generic_category().message(errno);
    }
    const auto folder = file.parent_path().empty() ? std::filesystem::path{"."} : file.parent_path();
    if (::access(folder.c_str(), W_OK | X_OK) != 0) {
        return fmt::format("its folder {}: {}", folder.string(), std::generic_category().message(errno));
    }
    return {};
}

std::string AccessLog::reopen() {
    if (!owned_) { return {}; }
    const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) { return std::generic_category().message(errno); }
    // Atomic for the workers writing meanwhile: each write goes to the old file or the new one, whole.
    const bool moved = ::dup3(fd, fd_, O_CLOEXEC) >= 0;
    const int error = errno;
    ::close(fd);
    return moved ? std::string{} : std::generic_category().message(error);
}

AccessLog::~AccessLog() {
    if (owned_) { ::close(fd_); }
}

namespace {

// A field as the line may carry it: bytes that could split or forge fields (space, tab, CR, LF),
// other controls, the backslash, and bytes outside ASCII (not valid UTF-8 alone) become \xHH. Only rejected
// requests carry any: an accepted request's method and target have none.
struct Escaped {
    std::string_view text;
};

}  // namespace

}  // namespace drover::proxy

template <>
struct fmt::formatter<drover::proxy::Escaped> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const drover::proxy::Escaped& field, Context& ctx) const {
        auto out = ctx.out();
        for (const char ch : field.text) {
            const auto c = static_cast<unsigned char>(ch);
            if (c <= 0x20 || c >= 0x7f || c == '\\') {
                out = fmt::format_to(out, "\\x{:02x}", c);
            } else {
                *out++ = ch;
            }
        }
        return out;
    }
};

namespace drover::proxy {

void AccessLog::write(const Entry& e) const {
    const auto now = std::chrono::system_clock::now();
    const auto secs = std::chrono::system_clock::to_time_t(now);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    fmt::memory_buffer line;
    fmt::format_to(std::back_inserter(line), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {} {} {} {} {} {} {}\n",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis, e.client,
                   Escaped{e.method}, Escaped{e.target}, e.status, e.body_bytes, e.duration.count(), e.upstream, e.error);
    // Best effort: an access log that cannot keep up must not stall the data path.
    [[maybe_unused]] const ssize_t n = ::write(fd_, line.data(), line.size());
}

}  // namespace drover::proxy
