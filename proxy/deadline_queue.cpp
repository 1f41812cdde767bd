#include "proxy/deadline_queue.hpp"

#include <algorithm>

namespace drover::proxy {

DeadlineQueue::DeadlineQueue(boost::asio::io_context& context) : timer_(context) {}

void DeadlineQueue::schedule(Entry& entry, std::chrono::milliseconds timeout, Clock::time_point now) {
    const auto deadline = now + timeout;
    auto lane = entry.lane_ < lanes_.size() && lanes_[entry.lane_].timeout == timeout
                    ? lanes_.begin() + static_cast<std::ptrdiff_t>(entry.lane_)
                    : std::find_if(lanes_.begin(), lanes_.end(), [&](const Lane& l) { return l.timeout == timeout; });
    // Rescheduling the lane's last entry (a busy relay, say) leaves it in place: the clock only moves
    // forward, so it stays last (benchmarks/profile/http_keepalive_callgrind.py --case tcp-keepalive).
    if (lane != lanes_.end() && entry.is_linked() && &lane->entries.back() == &entry) {
        entry.deadline_ = deadline;
        return;   // later than before: the timer needs nothing
    }
    entry.unlink();
    entry.deadline_ = deadline;
    if (lane == lanes_.end()) {
        lanes_.push_back(Lane{timeout, {}});
        lane = std::prev(lanes_.end());
    }
    entry.lane_ = static_cast<std::size_t>(lane - lanes_.begin());
    // Usually the tail: the clock only moves forward. Walk back past any later one (a clock tie
    // broken the other way costs nothing; the order only decides who expires first).
    auto at = lane->entries.end();
    while (at != lane->entries.begin() && std::prev(at)->deadline_ > entry.deadline_) { --at; }
    lane->entries.insert(at, entry);
    if (entry.deadline_ < timer_at_) { arm(entry.deadline_); }
}

void DeadlineQueue::arm(Clock::time_point at) {
    timer_at_ = at;
    timer_.expires_at(at);   // a pending wait ends with operation_aborted and changes nothing
    timer_.async_wait([this, at](const boost::system::error_code& ec) {
        if (ec || at != timer_at_) { return; }   // re-armed meanwhile: that wait handles it
        timer_at_ = Clock::time_point::max();
        fire();
    });
}

void DeadlineQueue::fire() {
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    // By index: an entry's expired() may schedule one in a new lane.
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
        while (!lanes_[i].entries.empty() && lanes_[i].entries.front().deadline_ <= now) {
            Entry& due = lanes_[i].entries.front();
            lanes_[i].entries.pop_front();
            due.expired();
        }
        if (!lanes_[i].entries.empty()) { next = std::min(next, lanes_[i].entries.front().deadline_); }
    }
    if (next != Clock::time_point::max() && next < timer_at_) { arm(next); }
}

}  // namespace drover::proxy
