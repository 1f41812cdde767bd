#pragma once
// Kernel pipes for splice(2): bytes move socket -> pipe -> socket inside the kernel, with no copy
// through user space. Used by TCP relays (a pipe per bulk direction, for the connection's life) and by
// HTTP bodies (a pipe per large response, taken from and given back to the worker's PipePool).

#include <cstddef>
#include <vector>

namespace drover::proxy {

// Both ends non-blocking and close-on-exec; closed when dropped. Default-constructed: no pipe.
class Pipe {
public:
    // The smallest pipe worth splicing through: the kernel's default size.
    static constexpr std::size_t kMinCapacity = 64 * 1024;
    // What Drover grows its pipes to, and moves per splice step. Against 64 KiB steps it took a third
    // off the CPU of HTTP 1 MiB bodies (benchmarks/e2e http-1m: 48.7 -> 43.4 CPU-s per 100k requests);
    // 1 MiB saved about 6% more but spends an unprivileged user's pipe budget four times as fast
    // (docs/performance.md).
    static constexpr std::size_t kCapacity = 256 * 1024;

    Pipe() = default;
    // A new pipe of `capacity` bytes (best effort: the kernel's default stays if refused), or no pipe
    // when pipe2 fails, when the pipe would eat into the descriptors kept for admitted work
    // (descriptor_ceiling in proxy/pressure.hpp), or when the kernel makes it smaller than
    // kMinCapacity. That happens to an unprivileged user past its budget of pipe pages
    // (fs.pipe-user-pages-soft, 64 MiB by default: 256 pipes of 256 KiB), as under the shipped
    // systemd unit: a pipe of two pages moves 8 KiB a splice, more work than the copy it replaces.
    static Pipe open(std::size_t capacity);

    Pipe(Pipe&& other) noexcept : read_(other.read_), write_(other.write_) { other.read_ = other.write_ = -1; }
    Pipe& operator=(Pipe&& other) noexcept;
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() { close(); }

    explicit operator bool() const { return write_ >= 0; }
    int read_end() const { return read_; }
    int write_end() const { return write_; }

private:
    void close();

    int read_ = -1;
    int write_ = -1;
};

// A worker's empty pipes, kept for its next large HTTP body: without it every such response made and
// closed one (pipe2, fcntl and two closes). Not thread-safe: each worker has its own.
class PipePool {
public:
    static constexpr std::size_t kKept = 8;

    // A kept pipe, or a new one of `capacity` bytes (which may be no pipe: see Pipe::open).
    Pipe take(std::size_t capacity);
    // Keeps `pipe` for the next take, up to kKept; the caller has drained it (a pipe with bytes left
    // in it must be dropped instead).
    void put(Pipe pipe);

    std::size_t kept() const { return kept_.size(); }

private:
    std::vector<Pipe> kept_;
};

}  // namespace drover::proxy
