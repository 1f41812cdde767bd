#include "proxy/pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "proxy/pressure.hpp"

namespace drover::proxy {

Pipe Pipe::open(std::size_t capacity) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) { return {}; }
    Pipe pipe;
    pipe.read_ = fds[0];
    pipe.write_ = fds[1];
    if (pipe.write_ >= descriptor_ceiling()) { return {}; }   // closes both
    int size = ::fcntl(pipe.write_, F_SETPIPE_SZ, static_cast<int>(capacity));
    if (size < 0) { size = ::fcntl(pipe.write_, F_GETPIPE_SZ); }
    if (size < static_cast<int>(kMinCapacity)) { return {}; }
    return pipe;
}

Pipe& Pipe::operator=(Pipe&& other) noexcept {
    if (this != &other) {
        close();
        read_ = other.read_;
        write_ = other.write_;
        other.read_ = other.write_ = -1;
    }
    return *this;
}

void Pipe::close() {
    if (read_ >= 0) { ::close(read_); }
    if (write_ >= 0) { ::close(write_); }
    read_ = write_ = -1;
}

Pipe PipePool::take(std::size_t capacity) {
    if (kept_.empty()) { return Pipe::open(capacity); }
    Pipe pipe = std::move(kept_.back());
    kept_.pop_back();
    return pipe;
}

void PipePool::put(Pipe pipe) {
    if (pipe && kept_.size() < kKept) { kept_.push_back(std::move(pipe)); }
}

}  // namespace drover::proxy
