#pragma once
// A cluster's upstream connections against its limits.max_connections, shared by every worker: tcp
// relays and HTTP connections alike, in use or parked idle in a worker's pool. An HTTP connection is
// counted by a token it carries (Stream::count_in), so it gives its place back on whatever path closes
// it: the exchange, the pool's eviction or sweep, a retry, a session torn down.
//
// HTTP requests that find no room wait in one queue per cluster, across workers, oldest first. A place
// given back while some wait is granted to the oldest (it stays counted in `open`, so nobody else can
// take it) and its worker is woken: a request waiting on one worker is not starved by a busy client
// of another, whose next request would otherwise find the place before the waiter looked again.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace drover::proxy {

// One request waiting for a place. `granted` is the budget's to set, under its mutex; `wake` runs on
// the granting thread and must hand the news to the waiter's own thread (a worker's post).
struct PlaceWaiter {
    std::function<void()> wake;
    const void* owner = nullptr;   // which worker it waits on (its io_context)
    bool granted = false;
};

struct ConnectionBudget {
    std::atomic<std::int64_t> open{0};      // connections to the cluster's hosts open now (or granted)
    std::atomic<std::int64_t> idle{0};      // of which HTTP connections parked in a worker's pool
    std::atomic<std::int64_t> waiting{0};   // requests in `queue`: read without the lock on fast paths
    // limits.max_connections as last asked for: a reload that lowers it stops grants until `open`
    // is back under it.
    std::atomic<std::int64_t> limit{0};

    std::mutex mutex;
    std::deque<std::shared_ptr<PlaceWaiter>> queue;   // oldest first
};

// Reserves a place for a new connection; false (nothing taken) when `max` are open.
inline bool reserve_connection(ConnectionBudget& budget, std::uint64_t max) {
    if (budget.limit.load(std::memory_order_relaxed) != static_cast<std::int64_t>(max)) {
        budget.limit.store(static_cast<std::int64_t>(max), std::memory_order_relaxed);
    }
    if (budget.open.fetch_add(1, std::memory_order_relaxed) < static_cast<std::int64_t>(max)) { return true; }
    budget.open.fetch_sub(1, std::memory_order_relaxed);
    return false;
}

// Whether requests wait for a place (an idle connection is then closed rather than parked).
inline bool has_place_waiters(const ConnectionBudget& budget) { return budget.waiting.load() > 0; }

// Whether the oldest waiting request waits on `owner`'s worker: then a connection that worker is done
// with may be parked for it (it may want that very host) rather than closed for its place.
inline bool oldest_waiter_on(ConnectionBudget& budget, const void* owner) {
    const std::lock_guard lock(budget.mutex);
    return !budget.queue.empty() && budget.queue.front()->owner == owner;
}

// Gives a place back: to the oldest waiting request if any (and the cluster is within its limit),
// else to all.
inline void give_back_connection(ConnectionBudget& budget) {
    if (has_place_waiters(budget) && budget.open.load(std::memory_order_relaxed) <= budget.limit.load(std::memory_order_relaxed)) {
        std::shared_ptr<PlaceWaiter> next;
        {
            const std::lock_guard lock(budget.mutex);
            if (!budget.queue.empty()) {
                next = std::move(budget.queue.front());
                budget.queue.pop_front();
                budget.waiting.fetch_sub(1);
                next->granted = true;
            }
        }
        if (next) {
            if (next->wake) { next->wake(); }
            return;
        }
    }
    budget.open.fetch_sub(1, std::memory_order_relaxed);
}

// A request's place in the queue, from construction to destruction (however its wait ends). Besides
// its grant, the waiter keeps looking for room by other means (a connection to its host back in the
// pool, a place freed before it queued); a grant it did not use goes on to the next waiter.
class PlaceQueueEntry {
public:
    PlaceQueueEntry(ConnectionBudget& budget, const void* owner, std::function<void()> wake)
        : budget_(budget), waiter_(std::make_shared<PlaceWaiter>()) {
        waiter_->wake = std::move(wake);
        waiter_->owner = owner;
        const std::lock_guard lock(budget_.mutex);
        budget_.queue.push_back(waiter_);
        budget_.waiting.fetch_add(1);
    }
    PlaceQueueEntry(const PlaceQueueEntry&) = delete;
    PlaceQueueEntry& operator=(const PlaceQueueEntry&) = delete;
    ~PlaceQueueEntry() {
        bool unused_grant = false;
        {
            const std::lock_guard lock(budget_.mutex);
            if (waiter_->granted) {
                unused_grant = true;
            } else {
                for (auto it = budget_.queue.begin(); it != budget_.queue.end(); ++it) {
                    if (*it == waiter_) {
                        budget_.queue.erase(it);
                        budget_.waiting.fetch_sub(1);
                        break;
                    }
                }
            }
        }
        if (unused_grant) { give_back_connection(budget_); }
    }

    // Takes the place granted to this request, if one was: the caller counts a connection in it.
    bool take_grant() {
        const std::lock_guard lock(budget_.mutex);
        if (!waiter_->granted) { return false; }
        waiter_->granted = false;
        return true;
    }

private:
    ConnectionBudget& budget_;
    std::shared_ptr<PlaceWaiter> waiter_;
};

// One place (reserved, or granted), given back when the token is destroyed or reassigned.
class ConnectionToken {
public:
    ConnectionToken() = default;
    explicit ConnectionToken(std::shared_ptr<ConnectionBudget> budget) : budget_(std::move(budget)) {}
    ConnectionToken(ConnectionToken&& other) noexcept = default;   // leaves `other` empty
    ConnectionToken& operator=(ConnectionToken&& other) noexcept {
        if (this != &other) {
            release();
            budget_ = std::move(other.budget_);
        }
        return *this;
    }
    ConnectionToken(const ConnectionToken&) = delete;
    ConnectionToken& operator=(const ConnectionToken&) = delete;
    ~ConnectionToken() { release(); }

    ConnectionBudget* budget() const { return budget_.get(); }

private:
    void release() {
        if (budget_) {
            give_back_connection(*budget_);
            budget_.reset();
        }
    }

    std::shared_ptr<ConnectionBudget> budget_;
};

// Marks a connection as parked idle in `budget` (null: not counted) while it lives; moves with it.
class IdleMark {
public:
    explicit IdleMark(ConnectionBudget* budget) : budget_(budget) {
        if (budget_) { budget_->idle.fetch_add(1, std::memory_order_relaxed); }
    }
    IdleMark(IdleMark&& other) noexcept : budget_(std::exchange(other.budget_, nullptr)) {}
    IdleMark& operator=(IdleMark&& other) noexcept {
        if (this != &other) {
            release();
            budget_ = std::exchange(other.budget_, nullptr);
        }
        return *this;
    }
    IdleMark(const IdleMark&) = delete;
    IdleMark& operator=(const IdleMark&) = delete;
    ~IdleMark() { release(); }

private:
    void release() {
        if (budget_) { budget_->idle.fetch_sub(1, std::memory_order_relaxed); }
    }

    ConnectionBudget* budget_;
};

}  // namespace drover::proxy
