#pragma once
// Where Asio's coroutine frames (asio::awaitable), posted functions, cancellation slots and parallel
// groups of this program are allocated: a per-thread pool of size classes. CMake includes this header
// first in every C++ file of the project (-include, see the top-level CMakeLists.txt), because it
// specialises the function Asio allocates these through, and every use of it must see the same one.
//
// Why: Asio's own cache is a few slots per purpose shared by all sizes, searched first-fit, and a
// miss evicts a slot. That works for one connection's nested calls, freed in the reverse order of
// their allocation. With many connections interleaved on a worker, blocks of different sizes are
// freed in bursts and the slots hold the wrong sizes: 6 mallocs and frees per keep-alive request at
// 50 connections (tests/support/alloc_count.c under wrk), against none on one connection. Here each
// size class keeps its own list, so any freed block serves the next one of its class, whatever the
// order. Kept blocks are bounded per thread (kKeptBytes); beyond that they go back to the heap.
// (Operations and handlers, Asio's default purpose, cannot be given to the pool: Asio's own header
// uses that allocator before this one could replace it. BOOST_ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE
// sizes their cache.)
//
// Under AddressSanitizer a kept block is poisoned until it is reused, so a use after free is still
// caught (and freed frames do not pile up in ASan's quarantine, as they would without the pool).

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <boost/asio/detail/memory.hpp>
#include <boost/asio/detail/thread_info_base.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace drover {

namespace block_pool_detail {
// Set when the calling thread's pool is destroyed (the thread is ending). Trivially destructible, so
// it can be read until the thread is gone: a block freed after that goes straight to the heap.
inline thread_local bool thread_pool_gone = false;
}  // namespace block_pool_detail

class BlockPool {
public:
    // Class i holds blocks of (i + 1) * 16 B: as fine as malloc's, because some blocks live long (a
    // parked connection's wait, for as long as it is idle) and rounding them up would cost memory.
    static constexpr std::size_t kGranule = 16;
    static constexpr std::size_t kClasses = 256;                 // pooled up to 4 KiB
    static constexpr std::size_t kMaxPooled = kGranule * kClasses;
    static constexpr std::size_t kKeptBytes = std::size_t{1} << 20;   // kept free, per thread, at most

    BlockPool() = default;
    BlockPool(const BlockPool&) = delete;
    BlockPool& operator=(const BlockPool&) = delete;
    ~BlockPool() {
        for (std::size_t index = 0; index < kClasses; ++index) {
            while (Block* block = free_[index]) {
                unpoison(block, block_size(index));
                free_[index] = block->next;
                boost::asio::aligned_delete(block);
            }
        }
    }

    // The calling thread's pool (not after the thread's thread_local objects are destroyed).
    static BlockPool& local() {
        struct Owned {
            BlockPool pool;
            Owned() = default;
            Owned(const Owned&) = delete;
            Owned& operator=(const Owned&) = delete;
            ~Owned() { block_pool_detail::thread_pool_gone = true; }
        };
        static thread_local Owned owned;
        return owned.pool;
    }

    // A block from the calling thread's pool; from the heap once that pool is gone (a frame destroyed
    // while its thread ends). Both kinds are freed the same way (aligned_delete).
    static void* take(std::size_t size, std::size_t align) {
        if (block_pool_detail::thread_pool_gone) { return boost::asio::aligned_new(align, size); }
        return local().allocate(size, align);
    }
    static void give(void* pointer, std::size_t size) {
        if (block_pool_detail::thread_pool_gone) {
            boost::asio::aligned_delete(pointer);
            return;
        }
        local().deallocate(pointer, size);
    }

    // Asio's frames ask for its default alignment; a block of the pool has at least that.
    void* allocate(std::size_t size, std::size_t align) {
        if (!pooled(size)) {
            ++heap_allocations_;
            return boost::asio::aligned_new(align, size);
        }
        const std::size_t index = class_of(size);
        if (Block* block = free_[index];
            block != nullptr && reinterpret_cast<std::uintptr_t>(block) % align == 0) {
            unpoison(block, block_size(index));
            free_[index] = block->next;
            kept_bytes_ -= block_size(index);
            return block;
        }
        ++heap_allocations_;
        // The whole class size, so that the block can serve any frame of its class once freed.
        return boost::asio::aligned_new(align, block_size(index));
    }

    // `size` is the one the block was allocated with (Asio passes it back).
    void deallocate(void* pointer, std::size_t size) {
        if (pooled(size)) {
            const std::size_t index = class_of(size);
            if (kept_bytes_ + block_size(index) <= kKeptBytes) {
                free_[index] = new (pointer) Block{free_[index]};
                kept_bytes_ += block_size(index);
                poison(pointer, block_size(index));
                return;
            }
        }
        boost::asio::aligned_delete(pointer);
    }

    // Blocks this pool took from the heap rather than from its free lists (tests and benchmarks).
    std::uint64_t heap_allocations() const { return heap_allocations_; }
    std::size_t kept_bytes() const { return kept_bytes_; }

private:
    struct Block {
        Block* next;
    };

    static bool pooled(std::size_t size) { return size != 0 && size <= kMaxPooled; }
    static void poison([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
        __asan_poison_memory_region(block, size);
#endif
    }
    static void unpoison([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
        __asan_unpoison_memory_region(block, size);
#endif
    }
    static std::size_t class_of(std::size_t size) { return (size - 1) / kGranule; }
    static std::size_t block_size(std::size_t index) { return (index + 1) * kGranule; }

    std::array<Block*, kClasses> free_{};
    std::size_t kept_bytes_ = 0;
    std::uint64_t heap_allocations_ = 0;
};

// A standard allocator over the calling thread's BlockPool. Bound to a completion handler
// (asio::bind_allocator), it is where Asio allocates that handler's operation, so a hot path's waits
// need not go through Asio's default cache (see above).
template <typename T>
class PoolAllocator {
public:
    using value_type = T;

    PoolAllocator() noexcept = default;
    template <typename U>
    PoolAllocator(const PoolAllocator<U>&) noexcept {}   // NOLINT: converting, as allocators do

    T* allocate(std::size_t n) {
        return static_cast<T*>(BlockPool::take(n * sizeof(T), alignof(T)));
    }
    void deallocate(T* pointer, std::size_t n) noexcept { BlockPool::give(pointer, n * sizeof(T)); }

    template <typename U>
    bool operator==(const PoolAllocator<U>&) const noexcept {
        return true;
    }
};

}  // namespace drover

// Asio allocates and frees the blocks of these purposes through these two (thread_info_base.hpp).
namespace boost::asio::detail {

#define DROVER_POOLED_PURPOSE(Purpose)                                                                   \
    template <>                                                                                          \
    inline void* thread_info_base::allocate<thread_info_base::Purpose>(                                  \
        thread_info_base::Purpose, thread_info_base*, std::size_t size, std::size_t align) {             \
        return drover::BlockPool::take(size, align);                                                     \
    }                                                                                                    \
    template <>                                                                                          \
    inline void thread_info_base::deallocate<thread_info_base::Purpose>(                                 \
        thread_info_base::Purpose, thread_info_base*, void* pointer, std::size_t size) {                 \
        drover::BlockPool::give(pointer, size);                                                          \
    }

DROVER_POOLED_PURPOSE(awaitable_frame_tag)
DROVER_POOLED_PURPOSE(executor_function_tag)
DROVER_POOLED_PURPOSE(cancellation_signal_tag)
DROVER_POOLED_PURPOSE(parallel_group_tag)

#undef DROVER_POOLED_PURPOSE

}  // namespace boost::asio::detail
