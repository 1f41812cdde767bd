#include "proxy/worker.hpp"

#include "config/log.hpp"

namespace drover::proxy {

Worker::Worker(std::size_t index, std::size_t listener_count)
    : index_(index), work_(boost::asio::make_work_guard(context_)) {
    listener_counters_.reserve(listener_count);
    for (std::size_t i = 0; i < listener_count; ++i) {
        listener_counters_.push_back(std::make_unique<ListenerCounters>());
    }
}

Worker::~Worker() {
    stop();
    join();
}

void Worker::start() {
    thread_ = std::thread([this] {
        for (;;) {
            try {
                context_.run();
                return;
            } catch (const std::exception& e) {
                // A handler let an exception escape: log it and keep serving the other connections.
                log::error("worker {}: unexpected exception: {}", index_, e.what());
            }
        }
    });
}

void Worker::stop() {
    work_.reset();
    context_.stop();
}

void Worker::join() {
    if (thread_.joinable()) { thread_.join(); }
}

void Worker::add_cluster(std::shared_ptr<const ClusterSnapshot> snapshot) {
    auto balancer = make_load_balancer(snapshot->config->load_balancing);
    clusters_.push_back({std::move(snapshot), std::move(balancer)});
}

void Worker::set_snapshot(std::size_t cluster, std::shared_ptr<const ClusterSnapshot> snapshot) {
    clusters_[cluster].snapshot = std::move(snapshot);
}

void Worker::add_session(Session* session) {
    sessions_.insert(session);
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::remove_session(Session* session) {
    sessions_.erase(session);
    session_count_.store(sessions_.size(), std::memory_order_relaxed);
}

void Worker::abort_sessions() {
    // abort() only closes sockets; sessions unregister later, from their own coroutines.
    for (Session* s : sessions_) { s->abort(); }
}

}  // namespace drover::proxy
