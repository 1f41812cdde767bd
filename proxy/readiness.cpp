#include "proxy/readiness.hpp"

#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <iterator>
#include <system_error>
#include <type_traits>
#include <utility>

namespace drover::proxy {

namespace asio = boost::asio;

namespace {
constexpr std::size_t kHarvestBatch = 256;

std::uint64_t event_key(std::uint32_t index, std::uint32_t generation) {
    return (static_cast<std::uint64_t>(generation) << 32) | index;
}
}  // namespace

Readiness::Watch::Watch(Watch&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), index_(other.index_) {}

Readiness::Watch& Readiness::Watch::operator=(Watch&& other) noexcept {
    if (this != &other) {
        release();
        owner_ = std::exchange(other.owner_, nullptr);
        index_ = other.index_;
    }
    return *this;
}

Readiness::Watch::~Watch() { release(); }

void Readiness::Watch::release() {
    if (owner_ == nullptr) { return; }
    owner_->release(index_);
    owner_ = nullptr;
}

void Readiness::Watch::before_read() {
    if (owner_ == nullptr) { return; }
    auto& slot = owner_->slots_[index_];
    slot.seen = false;
    slot.drained = false;
}

void Readiness::Watch::after_read(std::size_t got, std::size_t asked) {
    if (owner_ == nullptr) { return; }
    // A TCP read returns short only when nothing else was queued (the kernel takes what its backlog
    // holds before giving up): from here on, only an edge can bring bytes.
    if (got > 0 && got < asked) { owner_->slots_[index_].drained = true; }
}

bool Readiness::Watch::seen() const { return owner_ != nullptr && owner_->slots_[index_].seen; }

bool Readiness::Watch::quiet() const {
    if (owner_ == nullptr) { return false; }
    const auto& slot = owner_->slots_[index_];
    return slot.drained && !slot.seen && !slot.hung_up;
}

// The nested instance sits in the worker's reactor as an internal descriptor, the way Asio's own
// signal_set service reads its pipe: with an operation that never completes, whose perform() the
// reactor runs at every edge of the instance. A wait through the public interface (async_wait) ends
// at each edge, and starting the next one re-arms the descriptor with EPOLL_CTL_MOD: a syscall per
// harvest. This uses Asio's detail interface (epoll_reactor), which has kept this shape since the
// signal_set service came to use it.
static_assert(std::is_same_v<asio::detail::reactor, asio::detail::epoll_reactor>,
              "Readiness nests an epoll instance in Asio's epoll reactor");

struct Readiness::Registration {
    asio::detail::reactor* reactor = nullptr;
    asio::detail::reactor::per_descriptor_data data{};
};

struct ReadinessHarvest final : asio::detail::reactor_op {
    explicit ReadinessHarvest(Readiness* readiness)
        : reactor_op(boost::system::error_code(), &ReadinessHarvest::perform_harvest, &ReadinessHarvest::destroy_harvest),
          owner(readiness) {}

    static status perform_harvest(reactor_op* base) {
        static_cast<ReadinessHarvest*>(base)->owner->on_edge();
        return not_done;   // stays queued: the reactor runs it again at the next edge
    }
    // Never completed, only destroyed, when the descriptor leaves the reactor.
    static void destroy_harvest(void*, asio::detail::operation* base, const boost::system::error_code&, std::size_t) {
        delete static_cast<ReadinessHarvest*>(base);
    }

    Readiness* owner;
};

Readiness::Readiness() = default;
Readiness::~Readiness() { stop(); }

void Readiness::start(asio::io_context& context) {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) { throw std::system_error(errno, std::generic_category(), "epoll_create1"); }
    auto registration = std::make_unique<Registration>();
    registration->reactor = &asio::use_service<asio::detail::reactor>(context);
    if (const int error = registration->reactor->register_internal_descriptor(asio::detail::reactor::read_op, fd,
                                                                               registration->data, new ReadinessHarvest(this))) {
        registration->reactor->cleanup_descriptor_data(registration->data);
        ::close(fd);
        throw std::system_error(error, std::generic_category(), "registering the readiness epoll instance");
    }
    context_ = &context;
    epoll_fd_ = fd;
    registration_ = std::move(registration);
}

void Readiness::stop() {
    // Moved out first: destroying a wait may end a session whose watches come back here.
    std::vector<Waiter> pending;
    for (auto& slot : slots_) {
        if (slot.waiter) {
            pending.push_back(std::move(*slot.waiter));
            slot.waiter.reset();
        }
    }
    for (auto* batch : {&woken_, &running_}) {
        std::move(batch->begin(), batch->end(), std::back_inserter(pending));
        batch->clear();
    }
    pending.clear();
    if (registration_) {
        registration_->reactor->deregister_internal_descriptor(epoll_fd_, registration_->data);
        registration_->reactor->cleanup_descriptor_data(registration_->data);
        registration_.reset();
    }
    if (epoll_fd_ >= 0) {
        ::close(epoll_fd_);
        epoll_fd_ = -1;
    }
}

Readiness::Watch Readiness::watch(int fd) {
    if (epoll_fd_ < 0) { return {}; }
    std::uint32_t index;
    if (!free_.empty()) {
        index = free_.back();
        free_.pop_back();
    } else {
        index = static_cast<std::uint32_t>(slots_.size());
        slots_.emplace_back();
    }
    auto& slot = slots_[index];
    ::epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    event.data.u64 = event_key(index, slot.generation);
    const int epfd = epoll_fd_;
    // EEXIST: the socket was watched before and that watch forgot it (the socket stayed registered).
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0 &&
        (errno != EEXIST || ::epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) != 0)) {
        free_.push_back(index);
        return {};
    }
    slot.live = true;
    slot.seen = false;
    slot.hung_up = false;
    slot.drained = true;
    return Watch(this, index);
}

Readiness::Ticket Readiness::begin_wait(std::uint32_t index) {
    auto& slot = slots_[index];
    return Ticket{index, slot.generation, ++slot.wait};
}

void Readiness::cancel_wait(Ticket ticket) {
    if (ticket.index >= slots_.size()) { return; }
    auto& slot = slots_[ticket.index];
    if (slot.generation != ticket.generation || slot.wait != ticket.wait) { return; }
    abort_wait(slot);
}

void Readiness::cancel(Watch& watch) {
    if (watch.owner_ != this) { return; }
    abort_wait(slots_[watch.index_]);
}

// The wait completes with operation_aborted, from the scheduler: never inside the caller.
void Readiness::abort_wait(Slot& slot) {
    if (!slot.waiter) { return; }
    ++slot.wait;
    asio::post(context_->get_executor(), [waiter = std::move(*slot.waiter)]() mutable {
        std::move(waiter)(asio::error::operation_aborted);
    });
    slot.waiter.reset();
}

void Readiness::release(std::uint32_t index) {
    auto& slot = slots_[index];
    abort_wait(slot);
    slot.live = false;
    ++slot.generation;   // edges of the socket still in flight no longer match
    free_.push_back(index);
}

// Inside the reactor's handling of the nested instance (a handler of the scheduler's, like any
// completion): the table is brought up to date first, then the woken waits run. Running them here
// rather than posting them saves the scheduler a turn, and with it a non-blocking epoll_wait.
void Readiness::on_edge() {
    harvest();
    run_woken();
}

void Readiness::harvest() {
    std::array<::epoll_event, kHarvestBatch> events;
    int n;
    do {
        n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
        for (int i = 0; i < n; ++i) {
            const auto& event = events[static_cast<std::size_t>(i)];
            const auto key = event.data.u64;
            const auto index = static_cast<std::uint32_t>(key);
            if (index >= slots_.size()) { continue; }
            auto& slot = slots_[index];
            if (!slot.live || slot.generation != static_cast<std::uint32_t>(key >> 32)) { continue; }
            slot.seen = true;
            // The mask is the socket's state at this harvest: a FIN (or a reset) that came with the
            // last bytes brings no edge of its own after a read takes them.
            if ((event.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) { slot.hung_up = true; }
            if (slot.waiter) {
                ++slot.wait;
                woken_.push_back(std::move(*slot.waiter));
                slot.waiter.reset();
            }
        }
    } while (n == static_cast<int>(events.size()));
}

// A woken wait runs its session on, which may watch, wait on, or close other sockets.
void Readiness::run_woken() {
    running_.clear();   // left by a wait whose session threw: ends them
    running_.swap(woken_);
    for (auto& waiter : running_) { std::move(waiter)(boost::system::error_code()); }
    running_.clear();
}

}  // namespace drover::proxy
