#include "proxy/upstream_pool.hpp"

#include "proxy/readiness.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kSweepInterval = std::chrono::seconds(1);

}  // namespace

UpstreamPool::UpstreamPool(asio::io_context& context) : context_(context), sweeper_(context) {}

std::unique_ptr<Stream> UpstreamPool::take(const discovery::Host& host, const health::TlsClient* tls, bool verify) {
    auto it = hosts_.find(&host);
    if (it == hosts_.end()) { return nullptr; }
    auto& idle = it->second.idle;
    const auto now = Clock::now();
    // An idle keep-alive connection must have nothing to say: EOF means the backend closed it, bytes
    // mean it sent something outside a response. Either way it is not reusable. With `verify` the
    // kernel is asked (peek_quiet, which also corrects a note a full last read left set).
    while (!idle.empty()) {
        Idle entry = std::move(idle.back());
        idle.pop_back();
        if (entry.expires > now && entry.stream->tls_client() == tls &&
            ((!verify && readiness::quiet(entry.stream->socket())) || readiness::peek_quiet(entry.stream->socket()))) {
            return std::move(entry.stream);
        }
        host.stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
    }
    return nullptr;
}

void UpstreamPool::put(const std::shared_ptr<const discovery::Host>& host, std::unique_ptr<Stream> stream,
                       std::chrono::milliseconds idle) {
    auto& per_host = hosts_[host.get()];
    if (!per_host.host) { per_host.host = host; }
    auto* budget = stream->counted_in();
    // Not parked while requests of its cluster wait for room on another worker: its place goes to the
    // oldest of them. (When the oldest waits here, it is woken next and may want this very host.)
    if (per_host.idle.size() >= kMaxIdlePerHost ||
        (budget != nullptr && has_place_waiters(*budget) && !oldest_waiter_on(*budget, &context_))) {
        host->stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
        return;   // `stream` closes on return
    }
    per_host.idle.push_back({std::move(stream), Clock::now() + idle, IdleMark(budget)});
    schedule_sweep();
}

bool UpstreamPool::close_idle(const ConnectionBudget& budget) {
    // A host belongs to one cluster: its connections count in one budget. The oldest of each host is
    // its first; of those, the one that expires first was parked the longest (one idle timeout per
    // cluster).
    PerHost* oldest = nullptr;
    for (auto& [key, per_host] : hosts_) {
        if (per_host.idle.empty() || per_host.idle.front().stream->counted_in() != &budget) { continue; }
        if (oldest == nullptr || per_host.idle.front().expires < oldest->idle.front().expires) { oldest = &per_host; }
    }
    if (oldest == nullptr) { return false; }
    oldest->idle.erase(oldest->idle.begin());   // closes it, and gives its place back
    oldest->host->stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
    return true;
}

void UpstreamPool::drop(const discovery::Host& host) {
    auto it = hosts_.find(&host);
    if (it == hosts_.end()) { return; }
    host.stats().connections_active.fetch_sub(static_cast<std::int64_t>(it->second.idle.size()), std::memory_order_relaxed);
    hosts_.erase(it);
}

void UpstreamPool::clear() {
    for (auto& [key, per_host] : hosts_) {
        per_host.host->stats().connections_active.fetch_sub(static_cast<std::int64_t>(per_host.idle.size()),
                                                            std::memory_order_relaxed);
    }
    hosts_.clear();
}

std::size_t UpstreamPool::idle_count() const {
    std::size_t n = 0;
    for (const auto& [key, per_host] : hosts_) { n += per_host.idle.size(); }
    return n;
}

void UpstreamPool::schedule_sweep() {
    if (sweep_scheduled_) { return; }
    sweep_scheduled_ = true;
    sweeper_.expires_after(kSweepInterval);
    sweeper_.async_wait([this](const boost::system::error_code& ec) {
        sweep_scheduled_ = false;
        if (ec) { return; }
        sweep();
    });
}

void UpstreamPool::sweep() {
    const auto now = Clock::now();
    for (auto it = hosts_.begin(); it != hosts_.end();) {
        auto& idle = it->second.idle;
        const auto before = idle.size();
        std::erase_if(idle, [&](Idle& e) {
            return e.expires <= now || (!readiness::quiet(e.stream->socket()) && !readiness::peek_quiet(e.stream->socket()));
        });
        it->second.host->stats().connections_active.fetch_sub(static_cast<std::int64_t>(before - idle.size()),
                                                              std::memory_order_relaxed);
        it = idle.empty() ? hosts_.erase(it) : std::next(it);
    }
    if (!hosts_.empty()) { schedule_sweep(); }
}

}  // namespace drover::proxy
