#include "proxy/deadline_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace drover::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Records the order entries expire in; runs an action on expiry if given.
struct Probe final : DeadlineQueue::Entry {
    Probe(std::vector<std::string>& into, std::string label) : log(into), name(std::move(label)) {}
    void expired() override {
        log.push_back(name);
        if (then) { then(); }
    }
    std::vector<std::string>& log;
    std::string name;
    std::function<void()> then;
};

// Runs the loop until `done` or a bound (the test fails rather than hangs).
void run_until(boost::asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds bound = 5s) {
    const auto end = Clock::now() + bound;
    while (!done() && Clock::now() < end) { io.run_one_for(10ms); }
}

TEST(DeadlineQueue, ExpiresInDeadlineOrderAcrossLanes) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe slow(log, "slow"), fast(log, "fast"), middle(log, "middle"), fast2(log, "fast2");
    const auto start = Clock::now();   // before scheduling: no deadline may pass early
    queue.schedule(slow, 120ms);
    queue.schedule(fast, 20ms);
    queue.schedule(middle, 60ms);
    queue.schedule(fast2, 20ms);   // same lane as fast, a little later
    EXPECT_TRUE(slow.scheduled());
    run_until(io, [&] { return log.size() == 4; });
    EXPECT_EQ(log, (std::vector<std::string>{"fast", "fast2", "middle", "slow"}));
    EXPECT_GE(Clock::now() - start, 120ms);
    EXPECT_FALSE(slow.scheduled());
}

TEST(DeadlineQueue, CancelledAndDestroyedEntriesNeverExpire) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe kept(log, "kept"), cancelled(log, "cancelled");
    queue.schedule(cancelled, 10ms);
    queue.schedule(kept, 40ms);
    {
        Probe gone(log, "gone");
        queue.schedule(gone, 10ms);
    }   // destroyed while scheduled: unlinked
    cancelled.cancel();
    EXPECT_FALSE(cancelled.scheduled());
    run_until(io, [&] { return !log.empty(); });
    EXPECT_EQ(log, std::vector<std::string>{"kept"});
}

TEST(DeadlineQueue, RescheduleMovesTheDeadline) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe a(log, "a"), b(log, "b");
    queue.schedule(a, 10ms);
    queue.schedule(b, 50ms);
    queue.schedule(a, 100ms);   // later than b now
    run_until(io, [&] { return log.size() == 2; });
    EXPECT_EQ(log, (std::vector<std::string>{"b", "a"}));
}

// Rescheduling a lane's last entry moves its deadline without moving it (the busy relay's path); any
// other entry goes to the tail. Order and deadlines stay right either way.
TEST(DeadlineQueue, RescheduleInTheSameLaneKeepsDeadlineOrder) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe a(log, "a"), b(log, "b");
    const auto start = Clock::now();
    queue.schedule(a, 40ms);
    queue.schedule(b, 40ms);
    std::this_thread::sleep_for(15ms);
    queue.schedule(b, 40ms);   // the tail: stays
    queue.schedule(a, 40ms);   // not the tail: goes behind b
    std::this_thread::sleep_for(10ms);
    queue.schedule(a, 40ms);   // the tail now: stays, later again
    run_until(io, [&] { return !log.empty(); });
    EXPECT_EQ(log, std::vector<std::string>{"b"});
    EXPECT_GE(Clock::now() - start, 55ms);   // b's second deadline, not its first
    run_until(io, [&] { return log.size() == 2; });
    EXPECT_EQ(log, (std::vector<std::string>{"b", "a"}));
    EXPECT_GE(Clock::now() - start, 65ms);
}

// A caller's `now` a little in the past (read before some work) counts from then, and an entry
// scheduled from an earlier `now` goes ahead of the lane's later ones.
TEST(DeadlineQueue, ScheduleFromTheCallersNow) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe late(log, "late"), early(log, "early");
    const auto start = Clock::now();
    queue.schedule(late, 40ms);
    queue.schedule(early, 40ms, start - 20ms);   // same lane, earlier deadline: not the tail
    run_until(io, [&] { return log.size() == 2; });
    EXPECT_EQ(log, (std::vector<std::string>{"early", "late"}));
    EXPECT_GE(Clock::now() - start, 40ms);
}

// An entry rescheduled with another timeout changes lanes (its remembered lane does not match).
TEST(DeadlineQueue, RescheduleWithAnotherTimeoutChangesLanes) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe moved(log, "moved"), stays(log, "stays");
    queue.schedule(moved, 20ms);
    queue.schedule(stays, 50ms);
    queue.schedule(moved, 100ms);
    queue.schedule(moved, 100ms);   // its lane's tail now
    run_until(io, [&] { return log.size() == 2; });
    EXPECT_EQ(log, (std::vector<std::string>{"stays", "moved"}));
}

TEST(DeadlineQueue, AnEarlierDeadlineRearmsTheTimer) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe late(log, "late"), early(log, "early");
    queue.schedule(late, 10s);
    queue.schedule(early, 20ms);   // a new, shorter lane
    const auto start = Clock::now();
    run_until(io, [&] { return !log.empty(); });
    EXPECT_EQ(log, std::vector<std::string>{"early"});
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_TRUE(late.scheduled());
}

TEST(DeadlineQueue, ExpiryMayScheduleAgainIncludingInANewLane) {
    boost::asio::io_context io;
    DeadlineQueue queue(io);
    std::vector<std::string> log;
    Probe ticker(log, "tick"), other(log, "other");
    int ticks = 0;
    ticker.then = [&] {
        if (++ticks < 3) { queue.schedule(ticker, 10ms); }
        if (ticks == 1) { queue.schedule(other, 15ms); }   // a lane that did not exist yet
    };
    queue.schedule(ticker, 10ms);
    run_until(io, [&] { return log.size() == 4; });
    EXPECT_EQ(ticks, 3);
    EXPECT_EQ(std::count(log.begin(), log.end(), "other"), 1);
    EXPECT_EQ(std::count(log.begin(), log.end(), "tick"), 3);
}

TEST(DeadlineQueue, EntriesMayOutliveTheQueue) {
    boost::asio::io_context io;
    std::vector<std::string> log;
    Probe survivor(log, "survivor");
    {
        DeadlineQueue queue(io);
        queue.schedule(survivor, 1s);
    }
    EXPECT_FALSE(survivor.scheduled());   // the queue let go of it; destroying it later is safe
}

}  // namespace
}  // namespace drover::proxy
