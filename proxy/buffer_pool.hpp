#pragma once
// Relay buffers lent per read and returned at once, so an idle connection holds no pooled buffer: a
// TCP relay direction reads into a small buffer of its own first (relay.hpp) and borrows one only when
// that one fills.
// One pool per worker; not thread-safe by design.

#include <array>
#include <cstddef>
#include <memory>
#include <vector>

namespace drover::proxy {

class BufferPool {
public:
    static constexpr std::size_t kBufferSize = 16 * 1024;   // matches the kernel's default socket chunk
    using Buffer = std::array<char, kBufferSize>;

    struct Return {
        BufferPool* pool;
        void operator()(Buffer* buffer) const { pool->release(buffer); }
    };
    using Lease = std::unique_ptr<Buffer, Return>;

    explicit BufferPool(std::size_t max_idle = 256) : max_idle_(max_idle) {}
    ~BufferPool() {
        for (Buffer* b : idle_) { delete b; }
    }
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    Lease acquire() {
        if (idle_.empty()) { return Lease(new Buffer, Return{this}); }
        Buffer* b = idle_.back();
        idle_.pop_back();
        return Lease(b, Return{this});
    }

private:
    void release(Buffer* buffer) {
        if (idle_.size() < max_idle_) {
            idle_.push_back(buffer);
        } else {
            delete buffer;
        }
    }

    std::size_t max_idle_;
    std::vector<Buffer*> idle_;
};

}  // namespace drover::proxy
