#include "discovery/file_resolver.hpp"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <system_error>
#include <thread>
#include <utility>

#include "config/loader.hpp"
#include "config/log.hpp"

namespace drover::discovery {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// How often the file is stat()ed besides inotify: a safety net for a folder that does not exist yet
// (no watch possible), inotify limits, and swaps that happen out of the watched folder.
constexpr auto kRecheck = std::chrono::seconds(2);

// Close-after-write and rename-into-place are the moments a new version is complete. IN_MODIFY never
// triggers a read (reading during a write could see a shorter, still valid list and drop hosts): it
// marks the file as being written, so that the periodic check does not read it then either.
// IN_ATTRIB: a file that could not be read may have been made readable (chmod, chown).
constexpr std::uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                     IN_DELETE_SELF | IN_MOVE_SELF | IN_MODIFY | IN_ATTRIB;

// A writer that keeps the file open and has written nothing for this long is taken to be done (one
// that never closes it would otherwise never be read).
constexpr auto kQuietWriter = std::chrono::seconds(30);

// Enough to tell "the file changed" without reading it. ctime moves with any change of the inode,
// permissions included.
struct FileIdentity {
    bool exists = false;
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;

    bool operator==(const FileIdentity&) const = default;
};

FileIdentity identify(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) { return {}; }
    return FileIdentity{true,
                        st.st_dev,
                        st.st_ino,
                        st.st_size,
                        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                        static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
}

}  // namespace

class FileResolver::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(asio::io_context& io, std::string cluster, config::FileDiscovery config)
        : io_(io),
          cluster_(std::move(cluster)),
          path_(std::move(config.path)),
          inotify_(io),
          recheck_timer_(io) {
        const std::filesystem::path p{path_};
        folder_ = p.has_parent_path() ? p.parent_path().string() : std::string{"."};
        name_ = p.filename().string();
    }

    // A read under way (load()) is waited for: it posts to io_, which must outlive it.
    ~Impl() {
        if (parser_.joinable()) { parser_.join(); }
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    void start(UpdateCallback on_update) {
        on_update_ = std::move(on_update);
        open_inotify();
        add_watch();
        // The first set is delivered before start() returns, so workers have it before they accept.
        load();
        asio::co_spawn(io_, run(shared_from_this()), [cluster = cluster_](std::exception_ptr e) {
            if (!e) { return; }
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error("cluster {}: endpoints file watch stopped by an unexpected exception: {}", cluster,
                           ex.what());
            } catch (...) {
                log::error("cluster {}: endpoints file watch stopped by an unexpected exception", cluster);
            }
        });
    }

    void stop() {
        stopped_ = true;
        recheck_timer_.cancel();
        boost::system::error_code ignored;
        inotify_.close(ignored);   // also cancels the pending wait
        watch_ = -1;
    }

    ResolverStatus status() const {
        ResolverStatus s;
        s.kind = "file";
        s.resolved = delivered_.has_value();
        s.stale = delivered_.has_value() && consecutive_failures_ > 0;
        s.consecutive_failures = consecutive_failures_;
        s.successes = successes_;
        s.failures = failures_;
        s.last_success = last_success_;
        s.last_error = last_error_;
        return s;
    }

private:
    // `self` keeps this object alive for as long as the loop runs, even past the FileResolver.
    asio::awaitable<void> run(std::shared_ptr<Impl> self) {
        while (!stopped_) {
            recheck_timer_.expires_after(kRecheck);
            if (inotify_.is_open() && watch_ >= 0) {
                auto woke =
                    co_await (inotify_.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple) ||
                              recheck_timer_.async_wait(use_tuple));
                if (stopped_) { break; }
                if (woke.index() == 0) {
                    if (const auto [ec] = std::get<0>(woke); ec) {
                        log::warn("cluster {}: inotify failed ({}); checking {} every {} s instead", cluster_,
                                  ec.message(), path_, kRecheck.count());
                        boost::system::error_code ignored;
                        inotify_.close(ignored);
                        watch_ = -1;
                        continue;
                    }
                    on_events();
                    continue;
                }
            } else {
                co_await recheck_timer_.async_wait(use_tuple);
                if (stopped_) { break; }
                add_watch();
            }
            recheck();
        }
        (void)self;
    }

    // A read not asked for by an event (the periodic check, a change seen during a parse): events
    // already queued come first. A writer's truncation may be queued but not yet read, and the read
    // would then find the file empty, or short (soak audit: "empty endpoints file" under load).
    void recheck() {
        if (inotify_.is_open() && watch_ >= 0) { on_events(); }
        if (!parsing_ && !being_written() && identify(path_) != identity_) { load(); }
    }

    void open_inotify() {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) {
            log::warn("cluster {}: cannot use inotify ({}); checking {} every {} s instead", cluster_,
                      std::generic_category().message(errno), path_, kRecheck.count());
            return;
        }
        inotify_.assign(fd);
    }

    void add_watch() {
        if (!inotify_.is_open() || watch_ >= 0) { return; }
        watch_ = ::inotify_add_watch(inotify_.native_handle(), folder_.c_str(), kWatchMask);
        if (watch_ < 0) {
            if (!watch_warned_) {
                log::warn("cluster {}: cannot watch folder {} ({}); checking every {} s until it exists",
                          cluster_, folder_, std::generic_category().message(errno), kRecheck.count());
                watch_warned_ = true;
            }
            return;
        }
        watch_warned_ = false;
    }

    // Reads every queued event, then acts once: a burst of events is one reload.
    void on_events() {
        alignas(inotify_event) std::array<char, 16 * 1024> buffer{};
        bool complete = false;   // a new version of our file was closed or renamed into place
        bool gone = false;       // our file was deleted or renamed away
        bool other = false;      // something else changed in the folder (e.g. a symlink swap)
        for (;;) {
            const ssize_t n = ::read(inotify_.native_handle(), buffer.data(), buffer.size());
            if (n <= 0) { break; }   // EAGAIN: drained
            std::size_t offset = 0;
            while (offset + sizeof(inotify_event) <= static_cast<std::size_t>(n)) {
                inotify_event event{};
                std::memcpy(&event, buffer.data() + offset, sizeof(event));
                const char* name_start = buffer.data() + offset + sizeof(inotify_event);
                const std::string name{name_start, ::strnlen(name_start, event.len)};
                offset += sizeof(inotify_event) + event.len;
                if ((event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
                    // The folder itself went away; the kernel dropped the watch. Poll until it is back.
                    watch_ = -1;
                    other = true;
                } else if ((event.mask & IN_Q_OVERFLOW) != 0) {
                    complete = true;
                } else if (name == name_) {
                    if ((event.mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) != 0) {
                        complete = true;
                        writing_ = false;
                    } else if ((event.mask & (IN_DELETE | IN_MOVED_FROM)) != 0) {
                        gone = true;
                        writing_ = false;
                    } else if ((event.mask & IN_MODIFY) != 0) {
                        writing_ = true;   // its close follows
                        last_write_ = std::chrono::steady_clock::now();
                    } else if ((event.mask & IN_ATTRIB) != 0) {
                        other = true;
                    }
                    // IN_CREATE of the file itself: the writer has not finished; its close follows.
                } else {
                    other = true;
                }
            }
        }
        // A close followed in the same burst by the next write's truncation: that write's close comes.
        if (gone || (complete && !writing_)) {
            load();
        } else if (other && !being_written() && identify(path_) != identity_) {
            load();
        }
    }

    // A writer has the file open (it wrote, and has not closed it) and wrote within kQuietWriter.
    bool being_written() const {
        return writing_ && std::chrono::steady_clock::now() - last_write_ < kQuietWriter;
    }

    // What a read of the file gave: the loader's verdict, and the set (sorted) when it is valid.
    struct Parsed {
        config::EndpointsFileResult result;
        EndpointSet endpoints;
    };

    static Parsed parse(const std::string& path) {
        Parsed parsed{config::load_endpoints_file(path), {}};
        if (parsed.result.ok()) {
            for (const auto& e : *parsed.result.endpoints) {
                // The loader has checked that the host is an IP literal.
                parsed.endpoints.push_back(
                    Endpoint{{asio::ip::make_address(e.address.host), e.address.port}, e.weight, 0});
            }
            sort_endpoints(parsed.endpoints);
        }
        return parsed;
    }

    // The first read (at start) is done here, so that workers have the set before they accept. Later
    // ones are parsed on a thread of their own and applied on the control loop: a file of 50,000
    // endpoints takes about half a second to parse, and the control loop runs health checks, DNS,
    // admin and reloads meanwhile. One read at a time; a change seen during one is read after it.
    void load() {
        if (parsing_) {
            load_again_ = true;
            return;
        }
        identity_ = identify(path_);
        if (!identity_.exists) {
            fail(fmt::format("{}: file not found", path_), "was deleted or does not exist");
            return;
        }
        if (!delivered_ && successes_ == 0 && failures_ == 0) {
            apply(parse(path_));
            return;
        }
        parsing_ = true;
        if (parser_.joinable()) { parser_.join(); }   // done: its result was applied
        parser_ = std::thread([weak = weak_from_this(), path = path_, &io = io_] {
            auto parsed = parse(path);
            // The Impl waits for this thread before it goes (~Impl), so io is still there.
            asio::post(io, [weak, parsed = std::move(parsed)]() mutable {
                const auto self = weak.lock();
                if (!self) { return; }
                self->parsing_ = false;
                if (self->stopped_) { return; }
                self->apply(std::move(parsed));
                if (std::exchange(self->load_again_, false)) { self->recheck(); }
            });
        });
    }

    void apply(Parsed parsed) {
        auto& result = parsed.result;
        if (!result.ok()) {
            for (const auto& e : result.errors) {
                log::warn("cluster {}: endpoints file: {}", cluster_, e.str());
            }
            std::string error = result.errors.front().str();
            if (result.errors.size() > 1) {
                error += fmt::format(" (and {} more)", result.errors.size() - 1);
            }
            fail(std::move(error), result.unreadable ? "cannot be read" : "is not valid");
            return;
        }
        EndpointSet endpoints = std::move(parsed.endpoints);
        ++successes_;
        if (consecutive_failures_ > 0 && delivered_) {
            log::info("cluster {}: endpoints file {} is valid again", cluster_, path_);
        }
        consecutive_failures_ = 0;
        last_success_ = std::chrono::steady_clock::now();
        if (delivered_ && *delivered_ == endpoints) {
            log::debug("cluster {}: endpoints file {} reloaded, unchanged", cluster_, path_);
            return;
        }
        log::info("cluster {}: endpoints file {}: {} endpoints", cluster_, path_, endpoints.size());
        delivered_ = endpoints;
        on_update_(std::move(endpoints));
    }

    void fail(std::string error, std::string_view what) {
        ++failures_;
        ++consecutive_failures_;
        last_error_ = std::move(error);
        if (delivered_) {
            log::warn("cluster {}: endpoints file {} {}; keeping the last {} endpoints", cluster_, path_,
                      what, delivered_->size());
        } else {
            log::warn("cluster {}: endpoints file {} {}; the cluster has no hosts until it is valid",
                      cluster_, path_, what);
        }
    }

    asio::io_context& io_;
    std::string cluster_;
    std::string path_;
    std::string folder_;
    std::string name_;
    asio::posix::stream_descriptor inotify_;   // owns the inotify instance
    int watch_ = -1;
    bool watch_warned_ = false;
    bool writing_ = false;                            // see being_written()
    std::chrono::steady_clock::time_point last_write_;
    asio::steady_timer recheck_timer_;
    UpdateCallback on_update_;
    FileIdentity identity_;                  // of the version last read (or found missing)
    std::optional<EndpointSet> delivered_;   // the set last handed to the cluster (sorted)
    bool stopped_ = false;
    std::uint32_t consecutive_failures_ = 0;
    std::uint64_t successes_ = 0;
    std::uint64_t failures_ = 0;
    std::optional<std::chrono::steady_clock::time_point> last_success_;
    std::string last_error_;
    std::thread parser_;        // the last read after the first (load())
    bool parsing_ = false;      // a read is under way on parser_
    bool load_again_ = false;   // the file changed meanwhile: read it again after
};

FileResolver::FileResolver(asio::io_context& control, std::string cluster, config::FileDiscovery config)
    : impl_(std::make_shared<Impl>(control, std::move(cluster), std::move(config))) {}

FileResolver::~FileResolver() { impl_->stop(); }

void FileResolver::start(UpdateCallback on_update) { impl_->start(std::move(on_update)); }

void FileResolver::stop() { impl_->stop(); }

ResolverStatus FileResolver::status() const { return impl_->status(); }

}  // namespace drover::discovery
