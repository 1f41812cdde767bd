#include "proxy/block_pool.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace drover {
namespace {

namespace asio = boost::asio;
constexpr std::size_t kAlign = BOOST_ASIO_DEFAULT_ALIGN;

TEST(BlockPoolTest, AFreedBlockServesTheNextFrameOfItsSizeClass) {
    constexpr std::size_t kClassTop = BlockPool::kGranule * 9;   // the class of 8 granules + 1 .. 9 granules
    constexpr std::size_t kSize = kClassTop - BlockPool::kGranule + 2;
    BlockPool pool;
    void* first = pool.allocate(kSize, kAlign);
    std::memset(first, 0xab, kSize);
    pool.deallocate(first, kSize);
    EXPECT_EQ(pool.kept_bytes(), kClassTop);
    // Any size of the class gets the block back, and it is writable over the whole class.
    void* second = pool.allocate(kClassTop, kAlign);
    EXPECT_EQ(second, first);
    std::memset(second, 0xcd, kClassTop);
    EXPECT_EQ(pool.kept_bytes(), 0u);
    // Another class does not.
    void* other = pool.allocate(kClassTop + 1, kAlign);
    EXPECT_NE(other, first);
    EXPECT_EQ(pool.heap_allocations(), 2u);
    pool.deallocate(second, kClassTop);
    pool.deallocate(other, kClassTop + 1);
}

TEST(BlockPoolTest, BlocksAreAlignedAsAsked) {
    BlockPool pool;
    std::vector<void*> blocks;
    for (std::size_t size : {1u, 63u, 64u, 65u, 1000u, 4096u, 5000u}) {
        void* block = pool.allocate(size, kAlign);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % kAlign, 0u) << size;
        std::memset(block, 0, size);
        pool.deallocate(block, size);
    }
    // A stricter alignment than the default is honoured, from the pool or not.
    for (int i = 0; i < 4; ++i) {
        void* block = pool.allocate(100, 64);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % 64, 0u);
        blocks.push_back(block);
    }
    for (void* block : blocks) { pool.deallocate(block, 100); }
}

TEST(BlockPoolTest, FramesAboveTheLargestClassAreNeverKept) {
    BlockPool pool;
    for (int i = 0; i < 3; ++i) {
        void* block = pool.allocate(BlockPool::kMaxPooled + 1, kAlign);
        pool.deallocate(block, BlockPool::kMaxPooled + 1);
        EXPECT_EQ(pool.kept_bytes(), 0u);
    }
    EXPECT_EQ(pool.heap_allocations(), 3u);
}

TEST(BlockPoolTest, KeptBytesAreBounded) {
    BlockPool pool;
    constexpr std::size_t kSize = BlockPool::kMaxPooled;
    const std::size_t count = BlockPool::kKeptBytes / kSize + 8;
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < count; ++i) { blocks.push_back(pool.allocate(kSize, kAlign)); }
    for (void* block : blocks) { pool.deallocate(block, kSize); }
    EXPECT_LE(pool.kept_bytes(), BlockPool::kKeptBytes);
    EXPECT_EQ(pool.kept_bytes(), BlockPool::kKeptBytes);
}

// A block freed while its thread ends, after the thread's pool is destroyed (a frame destroyed by
// another thread_local, say), goes to the heap instead of into the destroyed pool.
TEST(BlockPoolTest, ABlockFreedAfterTheThreadsPoolIsGoneGoesToTheHeap) {
    static std::atomic<int> freed_after_pool{-1};
    std::thread([] {
        struct Holder {
            void* block = nullptr;
            Holder() = default;
            Holder(const Holder&) = delete;
            Holder& operator=(const Holder&) = delete;
            ~Holder() {
                freed_after_pool = block_pool_detail::thread_pool_gone ? 1 : 0;
                BlockPool::give(block, 100);
            }
        };
        static thread_local Holder holder;   // made before the pool, so destroyed after it
        holder.block = BlockPool::take(100, kAlign);
        EXPECT_FALSE(block_pool_detail::thread_pool_gone);
    }).join();
    EXPECT_EQ(freed_after_pool.load(), 1);
}

#if defined(__SANITIZE_ADDRESS__)
// A kept block is poisoned until it is reused: a use after free is caught as with the heap's blocks.
TEST(BlockPoolDeathTest, AKeptBlockIsPoisonedUnderAddressSanitizer) {
    BlockPool pool;
    auto* block = static_cast<char*>(pool.allocate(100, kAlign));
    pool.deallocate(block, 100);
    EXPECT_DEATH(static_cast<volatile char*>(block)[50] = 1, "use-after-poison");
    void* again = pool.allocate(100, kAlign);   // reused: writable again
    EXPECT_EQ(again, block);
    std::memset(again, 0, 100);
    pool.deallocate(again, 100);
}
#endif

// Frames of a chosen size: a coroutine with N bytes of locals that live across a suspension.
template <std::size_t N>
asio::awaitable<std::size_t> sized_step() {
    std::array<unsigned char, N> locals{};
    locals[0] = 1;
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    locals[N - 1] = locals[0];
    co_return locals[N - 1];
}

// Many sessions interleaved on one thread, each nesting frames of several sizes, as a worker's
// keep-alive connections do: after the first round every frame comes from the pool.
TEST(BlockPoolTest, InterleavedCoroutinesStopAllocatingAfterTheFirstRound) {
    asio::io_context io;
    constexpr int kSessions = 50;
    constexpr int kRounds = 20;
    std::size_t steps = 0;
    std::array<std::uint64_t, kRounds> heap_after{};
    int round_done = 0;   // sessions through the current round
    int round = 0;
    auto session = [&]() -> asio::awaitable<void> {
        for (int r = 0; r < kRounds; ++r) {
            steps += co_await sized_step<100>();
            steps += co_await sized_step<900>();
            steps += co_await sized_step<300>();
            steps += co_await sized_step<2000>();
            if (++round_done == kSessions) {
                heap_after[static_cast<std::size_t>(round++)] = BlockPool::local().heap_allocations();
                round_done = 0;
            }
        }
    };
    const std::uint64_t before = BlockPool::local().heap_allocations();
    for (int i = 0; i < kSessions; ++i) { asio::co_spawn(io, session(), asio::detached); }
    io.run();
    ASSERT_EQ(steps, std::size_t{kSessions} * kRounds * 4);
    ASSERT_EQ(round, kRounds);
    // Asio's frames do come through the pool...
    EXPECT_GT(heap_after[0], before);
    // ...and none after the first round takes a new block.
    EXPECT_EQ(heap_after[kRounds - 1], heap_after[0]);
}

}  // namespace
}  // namespace drover
