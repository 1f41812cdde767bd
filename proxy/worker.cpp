#include "proxy/worker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "config/log.hpp"
#include "proxy/spawn.hpp"

namespace drover::proxy {

std::string_view local_reason_name(LocalReason reason) {
    switch (reason) {
        case LocalReason::bad_request: return "bad_request";
        case LocalReason::no_route: return "no_route";
        case LocalReason::request_header_timeout: return "request_header_timeout";
        case LocalReason::body_too_large: return "body_too_large";
        case LocalReason::uri_too_long: return "uri_too_long";
        case LocalReason::headers_too_large: return "headers_too_large";
        case LocalReason::upstream_connect_failed: return "upstream_connect_failed";
        case LocalReason::bad_upstream_response: return "bad_upstream_response";
        case LocalReason::no_healthy_host: return "no_healthy_host";
        case LocalReason::shed: return "shed";
        case LocalReason::upstream_timeout: return "upstream_timeout";
        case LocalReason::not_implemented: return "not_implemented";
        case LocalReason::request_body_timeout: return "request_body_timeout";
        case LocalReason::too_many_services: return "too_many_services";
        case LocalReason::count: break;
    }
    return "unknown";
}

namespace {
int make_eventfd() {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) { throw std::system_error(errno, std::generic_category(), "eventfd"); }
    return fd;
}
}  // namespace

Worker::Worker(std::size_t index) : index_(index), inbox_event_(context_, make_eventfd()) {
    wait_inbox();
}

Worker::~Worker() {
    stop();
    join();
    // While the context still exists: a spare session's coroutine holds timers and sockets on it.
    auto spares = std::move(spare_sessions_);
    for (Session* s : spares) { s->discard(); }
}

void Worker::post(std::function<void()> task) {
    bool wake = false;
    {
        std::lock_guard lock(inbox_mutex_);
        wake = inbox_.empty();   // otherwise a wake-up is already on its way
        inbox_.push_back(std::move(task));
    }
    if (wake) {
        const std::uint64_t one = 1;
        // Cannot fail short of a counter overflow, which would take 2^64 - 1 unread wake-ups.
        [[maybe_unused]] const auto written = ::write(inbox_event_.native_handle(), &one, sizeof one);
    }
}

void Worker::wait_inbox() {
    inbox_event_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
        if (ec) { return; }   // the descriptor closed: the worker is going away
        run_inbox();
        wait_inbox();
    });
}

void Worker::run_inbox() {
    // Read the counter before taking the tasks: a task posted after the read either is taken below
    // or finds the inbox empty and wakes us again.
    std::uint64_t count = 0;
    [[maybe_unused]] const auto read = ::read(inbox_event_.native_handle(), &count, sizeof count);
    {
        std::lock_guard lock(inbox_mutex_);
        inbox_running_.swap(inbox_);
    }
    for (auto& task : inbox_running_) {
        try {
            task();
        } catch (const std::exception& e) {
            g_escaped_exceptions.fetch_add(1, std::memory_order_relaxed);
            log::error("worker {}: unexpected exception in a posted task: {}", index_, e.what());
        }
    }
    inbox_running_.clear();
}

void Worker::start() {
    thread_ = std::thread([this] {
        for (;;) {
            try {
                context_.run();
                return;
            } catch (const std::exception& e) {
                // A handler let an exception escape: log it and keep serving the other connections.
                g_escaped_exceptions.fetch_add(1, std::memory_order_relaxed);
                log::error("worker {}: unexpected exception: {}", index_, e.what());
            }
        }
    });
}

void Worker::stop() {
    post([this] { context_.stop(); });
}

void Worker::join() {
    if (thread_.joinable()) { thread_.join(); }
}

namespace {
std::shared_ptr<health::RetryBudget> make_budget(const config::Cluster& config) {
    health::RetryBudget::Settings settings;
    settings.budget = config.retries.budget;
    return std::make_shared<health::RetryBudget>(settings);
}

void attach_limiter(WorkerCluster& slot, const config::Cluster& config) {
    slot.limiter.reset();
    if (!config.adaptive_concurrency) { return; }
    slot.limiter = std::make_shared<health::ConcurrencyLimiter>(health::ConcurrencyLimiter::Settings::from(*config.adaptive_concurrency));
    slot.published_limit = slot.limiter->cap();
    slot.snapshot->stats->concurrency_limit.fetch_add(slot.published_limit, std::memory_order_relaxed);
}

template <class Waiters, class Key>
void wake(Waiters& waiters, const Key& key) {
    auto [begin, end] = waiters.equal_range(key);
    for (auto it = begin; it != end; ++it) {
        if (auto timer = it->second.lock()) { timer->cancel(); }
    }
    waiters.erase(begin, end);
}
}  // namespace

void Worker::add_cluster(std::shared_ptr<const ClusterSnapshot> snapshot) {
    auto balancer = make_load_balancer(snapshot->config->load_balancing);
    auto budget = make_budget(*snapshot->config);
    auto& slot = clusters_.emplace_back();
    slot.snapshot = std::move(snapshot);
    slot.balancer = std::move(balancer);
    slot.budget = std::move(budget);
    attach_limiter(slot, *slot.snapshot->config);
}

void Worker::install_cluster(std::size_t index, std::shared_ptr<const ClusterSnapshot> snapshot) {
    while (clusters_.size() <= index) { clusters_.emplace_back(); }
    auto& slot = clusters_[index];
    slot.balancer = make_load_balancer(snapshot->config->load_balancing);
    slot.budget = make_budget(*snapshot->config);
    slot.snapshot = std::move(snapshot);
    slot.retired = false;
    attach_limiter(slot, *slot.snapshot->config);
}

void Worker::remove_cluster(std::size_t index) {
    if (index >= clusters_.size() || !clusters_[index].snapshot) { return; }
    for (const auto& entry : clusters_[index].snapshot->hosts) { pool_.drop(*entry.host); }
    clusters_[index].retired = true;
    wake(snapshot_waiters_, index);   // held requests and connections give up now, not at hold_timeout
}

void Worker::set_routes(std::size_t listener, std::shared_ptr<const Router> router, std::size_t cluster) {
    if (routers_.size() <= listener) {
        routers_.resize(listener + 1);
        listener_clusters_.resize(listener + 1);
    }
    routers_[listener] = std::move(router);
    listener_clusters_[listener] = cluster;
}

void Worker::set_snapshot(std::size_t cluster, std::shared_ptr<const ClusterSnapshot> snapshot) {
    // Hosts that left discovery get no new requests from here on; their idle pooled connections close.
    const auto& previous = clusters_[cluster].snapshot;
    if (previous) {
        std::unordered_set<const discovery::Host*> kept;
        for (const auto& entry : snapshot->hosts) { kept.insert(entry.host.get()); }
        for (const auto& entry : previous->hosts) {
            if (!kept.contains(entry.host.get())) { pool_.drop(*entry.host); }
        }
    }
    // A reload changed the cluster's settings: the per-worker state built from them follows.
    auto& slot = clusters_[cluster];
    if (previous && previous->config != snapshot->config) {
        if (previous->config->load_balancing != snapshot->config->load_balancing) {
            slot.balancer = make_load_balancer(snapshot->config->load_balancing);
        }
        if (previous->config->retries.budget != snapshot->config->retries.budget) { slot.budget = make_budget(*snapshot->config); }
        if (previous->config->adaptive_concurrency != snapshot->config->adaptive_concurrency) {
            if (slot.limiter) { snapshot->stats->concurrency_limit.fetch_sub(slot.published_limit, std::memory_order_relaxed); }
            attach_limiter(slot, *snapshot->config);
        }
    }
    slot.snapshot = std::move(snapshot);
    // The first published set of a dynamic cluster: the requests waiting for it go on.
    if (const auto key = dynamic_keys_.find(cluster); key != dynamic_keys_.end()) { wake(dynamic_waiters_, key->second); }
    // Requests held while no host was up look again.
    wake(snapshot_waiters_, cluster);
}

std::optional<std::size_t> Worker::find_dynamic(const std::string& key) const {
    const auto it = dynamic_.find(key);
    if (it == dynamic_.end()) { return std::nullopt; }
    return it->second;
}

void Worker::install_dynamic(std::size_t index, const std::string& key, std::shared_ptr<const ClusterSnapshot> snapshot) {
    while (clusters_.size() <= index) { clusters_.push_back({}); }
    auto& slot = clusters_[index];
    slot.balancer = make_load_balancer(snapshot->config->load_balancing);
    slot.budget = make_budget(*snapshot->config);
    slot.snapshot = std::move(snapshot);
    attach_limiter(slot, *slot.snapshot->config);
    dynamic_[key] = index;
    dynamic_keys_[index] = key;
}

void Worker::remove_dynamic(std::size_t index, const std::string& key) {
    dynamic_.erase(key);
    dynamic_keys_.erase(index);
    if (index < clusters_.size()) {
        for (const auto& entry : clusters_[index].snapshot->hosts) { pool_.drop(*entry.host); }
    }
}

namespace {
// Forgets a waiter that woke (and any whose waiter is gone).
template <class Waiters, class Key>
void forget(Waiters& waiters, const Key& key, const std::shared_ptr<boost::asio::steady_timer>& timer) {
    auto [begin, end] = waiters.equal_range(key);
    for (auto it = begin; it != end;) { it = it->second.expired() || it->second.lock() == timer ? waiters.erase(it) : std::next(it); }
}
}  // namespace

boost::asio::awaitable<void> Worker::wait_dynamic(const std::string& key, std::chrono::milliseconds timeout) {
    auto timer = std::make_shared<boost::asio::steady_timer>(context_, timeout);
    dynamic_waiters_.emplace(key, timer);
    co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    forget(dynamic_waiters_, key, timer);
}

boost::asio::awaitable<void> Worker::wait_snapshot(std::size_t index, std::chrono::milliseconds timeout) {
    auto timer = std::make_shared<boost::asio::steady_timer>(context_, timeout);
    snapshot_waiters_.emplace(index, timer);
    co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    forget(snapshot_waiters_, index, timer);
}

void Worker::wait_snapshot(std::size_t index, std::chrono::milliseconds timeout, std::function<void()> done) {
    auto timer = std::make_shared<boost::asio::steady_timer>(context_, timeout);
    snapshot_waiters_.emplace(index, timer);
    timer->async_wait([this, index, timer, done = std::move(done)](boost::system::error_code) {
        forget(snapshot_waiters_, index, timer);
        done();
    });
}

void Worker::add_session(Session* session) {
    sessions_.push_back(*session);
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::remove_session(Session* session) {
    sessions_.erase(sessions_.iterator_to(*session));
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::abort_sessions() {
    // abort() only closes sockets; sessions unregister later, from their own handlers.
    for (auto it = sessions_.begin(); it != sessions_.end();) { (it++)->abort(); }
    // Connections held for a host: waking them now ends them (they see they were aborted).
    for (auto& [index, waiter] : snapshot_waiters_) {
        if (auto timer = waiter.lock()) { timer->cancel(); }
    }
}

}  // namespace drover::proxy
