#pragma once
// A cluster's upstream connections against its limits.max_connections, shared by every worker: tcp
// relays and HTTP connections alike, in use or parked idle in a worker's pool. An HTTP connection is
// counted by a token it carries (Stream::count_in), so it gives its place back on whatever path closes
// it: the exchange, the pool's eviction or sweep, a retry, a session torn down.

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

namespace drover::proxy {

struct ConnectionBudget {
    std::atomic<std::int64_t> open{0};   // connections to the cluster's hosts open now
    std::atomic<std::int64_t> idle{0};   // of which HTTP connections parked in a worker's pool
};

// Reserves a place for a new connection; false (nothing taken) when `max` are open.
inline bool reserve_connection(ConnectionBudget& budget, std::uint64_t max) {
    if (budget.open.fetch_add(1, std::memory_order_relaxed) < static_cast<std::int64_t>(max)) { return true; }
    budget.open.fetch_sub(1, std::memory_order_relaxed);
    return false;
}

// One place reserved with reserve_connection, given back when the token is destroyed or reassigned.
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
            budget_->open.fetch_sub(1, std::memory_order_relaxed);
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
