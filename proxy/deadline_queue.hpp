#pragma once
// Deadlines of one worker without a timer each: entries wait in lanes, one per timeout length, each
// sorted by deadline, and one steady_timer fires for the earliest. Scheduling an entry is a list
// insert at its lane's tail (deadlines of one length arrive in order); cancelling is an unlink. The
// timer is re-armed lazily: a deadline later than its expiry leaves it alone, and when it fires it
// expires what is due and waits for the next earliest. Worker thread only.
//
// Used for parked keep-alive client connections (idle and request header timeouts), where a timer
// each was a third of an idle connection's memory.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include <chrono>
#include <cstddef>
#include <vector>

namespace drover::proxy {

class DeadlineQueue {
public:
    using Clock = std::chrono::steady_clock;

    // Something with a deadline. Destroying it cancels it (auto-unlink), also after the queue is gone.
    class Entry : public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
    public:
        Entry() = default;
        virtual ~Entry() = default;
        Entry(const Entry&) = delete;
        Entry& operator=(const Entry&) = delete;

        bool scheduled() const { return is_linked(); }
        Clock::time_point deadline() const { return deadline_; }
        void cancel() { unlink(); }

        // The deadline passed: called once, from the worker's loop, already unscheduled.
        virtual void expired() = 0;

    private:
        friend class DeadlineQueue;
        Clock::time_point deadline_{};
        std::size_t lane_ = static_cast<std::size_t>(-1);   // where it was last scheduled: a hint
    };

    explicit DeadlineQueue(boost::asio::io_context& context);
    DeadlineQueue(const DeadlineQueue&) = delete;
    DeadlineQueue& operator=(const DeadlineQueue&) = delete;

    // (Re)schedules `entry` to expire `timeout` from now.
    void schedule(Entry& entry, std::chrono::milliseconds timeout) { schedule(entry, timeout, Clock::now()); }
    // The same, from a `now` the caller has just read (a clock read is ~40 ns here).
    void schedule(Entry& entry, std::chrono::milliseconds timeout, Clock::time_point now);

private:
    using List = boost::intrusive::list<Entry, boost::intrusive::constant_time_size<false>>;
    struct Lane {
        std::chrono::milliseconds timeout;
        List entries;
    };

    void arm(Clock::time_point at);
    void fire();

    boost::asio::steady_timer timer_;
    Clock::time_point timer_at_ = Clock::time_point::max();   // the pending wait ends; max: none
    std::vector<Lane> lanes_;   // a handful: one per distinct timeout length in the config
};

}  // namespace drover::proxy
