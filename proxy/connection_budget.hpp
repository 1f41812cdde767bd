#pragma once
// A cluster's upstream connections against its limits.max_connections, shared by every worker: tcp
// relays and HTTP connections alike, in use or parked idle in a worker's pool. An HTTP connection is
// counted by a token it carries (Stream::count_in), so it gives its place back on whatever path closes
// it: the exchange, the pool's eviction or sweep, a retry, a session torn down.
//
// HTTP requests that find no room wait in the cluster's GrantQueue (below), across workers, oldest
// first; the same queue type serves limits.max_requests (proxy/admission.hpp).

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace drover::proxy {

// One request waiting in a GrantQueue. `granted` is the queue's to set, under its mutex; `wake` runs on
// the granting thread and must hand the news to the waiter's own thread (a worker's post).
struct GrantWaiter {
    std::function<void()> wake;
    const void* owner = nullptr;   // which worker it waits on (its io_context)
    bool granted = false;
    std::shared_ptr<const void> unit;   // what was granted, when the queue's units differ (a host's slot)
};

// Requests waiting for a unit of a limit shared by every worker (a place under max_connections, a
// slot under max_requests), oldest first. A unit given back while some wait is granted to the oldest
// (it stays counted, so nobody else can take it) and its worker is woken: a request waiting on one
// worker is not starved by a busy client of another, whose next request would otherwise find the
// unit before the waiter looked again. Without waiters the fast path reads one atomic, no lock.
class GrantQueue {
public:
    bool has_waiters() const { return waiting_.load() > 0; }

    // Whether the oldest waiter waits on `owner`'s worker.
    bool oldest_on(const void* owner) {
        const std::lock_guard lock(mutex_);
        return !queue_.empty() && queue_.front()->owner == owner;
    }

    // Grants a unit being given back to the oldest waiter and wakes it; false if none waits (the
    // caller frees the unit). `unit` says which, when it matters (which host's slot).
    bool grant_oldest(std::shared_ptr<const void> unit = nullptr) {
        if (!has_waiters()) { return false; }
        std::shared_ptr<GrantWaiter> next;
        {
            const std::lock_guard lock(mutex_);
            if (queue_.empty()) { return false; }
            next = std::move(queue_.front());
            queue_.pop_front();
            waiting_.fetch_sub(1);
            next->granted = true;
            next->unit = std::move(unit);
        }
        if (next->wake) { next->wake(); }
        return true;
    }

    void join(std::shared_ptr<GrantWaiter> waiter) {
        const std::lock_guard lock(mutex_);
        queue_.push_back(std::move(waiter));
        waiting_.fetch_add(1);
    }

    // The waiter leaves; true if it holds a grant it did not take (the caller gives that unit back).
    bool leave(const std::shared_ptr<GrantWaiter>& waiter) {
        const std::lock_guard lock(mutex_);
        if (waiter->granted) { return true; }
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
            if (*it == waiter) {
                queue_.erase(it);
                waiting_.fetch_sub(1);
                break;
            }
        }
        return false;
    }

    // Takes the waiter's grant, if any; `unit` (if asked for) receives what was granted.
    bool take_grant(GrantWaiter& waiter, std::shared_ptr<const void>* unit = nullptr) {
        const std::lock_guard lock(mutex_);
        if (!waiter.granted) { return false; }
        waiter.granted = false;
        if (unit != nullptr) { *unit = std::move(waiter.unit); }
        waiter.unit.reset();
        return true;
    }

private:
    std::atomic<std::int64_t> waiting_{0};   // in queue_: read without the lock on fast paths
    std::mutex mutex_;
    std::deque<std::shared_ptr<GrantWaiter>> queue_;
};

// A request's place in a GrantQueue, from construction to destruction (however its wait ends).
// Besides a grant, the waiter keeps looking for a unit by other means; a grant it did not use is given
// back with `give_back` (to the next waiter, or freed), which is told the unit granted.
class GrantQueueEntry {
public:
    using GiveBack = std::function<void(std::shared_ptr<const void> unit)>;

    GrantQueueEntry(GrantQueue& queue, const void* owner, std::function<void()> wake, GiveBack give_back)
        : queue_(queue), waiter_(std::make_shared<GrantWaiter>()), give_back_(std::move(give_back)) {
        waiter_->wake = std::move(wake);
        waiter_->owner = owner;
        queue_.join(waiter_);
    }
    GrantQueueEntry(GrantQueue& queue, const void* owner, std::function<void()> wake, std::function<void()> give_back)
        : GrantQueueEntry(queue, owner, std::move(wake), GiveBack([give = std::move(give_back)](auto) { give(); })) {}
    GrantQueueEntry(const GrantQueueEntry&) = delete;
    GrantQueueEntry& operator=(const GrantQueueEntry&) = delete;
    ~GrantQueueEntry() {
        if (queue_.leave(waiter_)) { give_back_(std::move(waiter_->unit)); }
    }

    // Takes the unit granted to this request, if one was: the caller now holds it (`unit`: which).
    bool take_grant(std::shared_ptr<const void>* unit = nullptr) { return queue_.take_grant(*waiter_, unit); }

private:
    GrantQueue& queue_;
    std::shared_ptr<GrantWaiter> waiter_;
    GiveBack give_back_;
};

struct ConnectionBudget {
    std::atomic<std::int64_t> open{0};   // connections to the cluster's hosts open now (or granted)
    std::atomic<std::int64_t> idle{0};   // of which HTTP connections parked in a worker's pool
    // limits.max_connections as last asked for: a reload that lowers it stops grants until `open`
    // is back under it.
    std::atomic<std::int64_t> limit{0};
    GrantQueue waiters;   // HTTP requests waiting for room for a new connection
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
inline bool has_place_waiters(const ConnectionBudget& budget) { return budget.waiters.has_waiters(); }

// Whether the oldest waiting request waits on `owner`'s worker: then a connection that worker is done
// with may be parked for it (it may want that very host) rather than closed for its place.
inline bool oldest_waiter_on(ConnectionBudget& budget, const void* owner) { return budget.waiters.oldest_on(owner); }

// Gives a place back: to the oldest waiting request if any (and the cluster is within its limit),
// else to all.
inline void give_back_connection(ConnectionBudget& budget) {
    if (budget.open.load(std::memory_order_relaxed) <= budget.limit.load(std::memory_order_relaxed) &&
        budget.waiters.grant_oldest()) {
        return;
    }
    budget.open.fetch_sub(1, std::memory_order_relaxed);
}

// A request waiting for a place under max_connections.
class PlaceQueueEntry : public GrantQueueEntry {
public:
    PlaceQueueEntry(ConnectionBudget& budget, const void* owner, std::function<void()> wake)
        : GrantQueueEntry(budget.waiters, owner, std::move(wake), [&budget] { give_back_connection(budget); }) {}
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
