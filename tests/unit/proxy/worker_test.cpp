#include "proxy/worker.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace drover::proxy {
namespace {

using namespace std::chrono_literals;

// Worker::post is how other threads reach a worker whose io_context takes no locks: every task runs
// on the worker's thread, each poster's tasks in the order posted, none lost while the worker is busy
// draining the inbox.
TEST(WorkerPost, TasksFromOtherThreadsRunOnTheWorkerThreadInOrder) {
    Worker worker(0);
    worker.start();
    constexpr int kPerPoster = 5000;
    std::mutex mutex;
    std::condition_variable all_ran;
    std::vector<std::vector<int>> seen(2);   // touched on the worker's thread only, read after
    std::vector<std::thread::id> ran_on;
    int ran = 0;
    auto poster = [&](int which) {
        for (int i = 0; i < kPerPoster; ++i) {
            worker.post([&, which, i] {
                seen[which].push_back(i);
                std::lock_guard lock(mutex);
                if (ran_on.empty() || ran_on.back() != std::this_thread::get_id()) { ran_on.push_back(std::this_thread::get_id()); }
                if (++ran == 2 * kPerPoster) { all_ran.notify_one(); }
            });
        }
    };
    std::thread a(poster, 0), b(poster, 1);
    a.join();
    b.join();
    {
        std::unique_lock lock(mutex);
        ASSERT_TRUE(all_ran.wait_for(lock, 10s, [&] { return ran == 2 * kPerPoster; })) << ran << " tasks ran";
        ASSERT_EQ(ran_on.size(), 1u);
        EXPECT_NE(ran_on.front(), std::this_thread::get_id());
    }
    for (const auto& one : seen) {
        ASSERT_EQ(one.size(), static_cast<std::size_t>(kPerPoster));
        for (int i = 0; i < kPerPoster; ++i) { ASSERT_EQ(one[i], i); }
    }
    worker.stop();
    worker.join();
}

// stop() from another thread ends the loop (the worker has no other work keeping it alive).
TEST(WorkerPost, StopFromAnotherThreadEndsTheLoop) {
    Worker worker(0);
    worker.start();
    std::thread stopper([&] { worker.stop(); });
    stopper.join();
    worker.join();   // returns: the test would time out otherwise
    SUCCEED();
}

}  // namespace
}  // namespace drover::proxy
