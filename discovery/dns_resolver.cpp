#include "discovery/dns_resolver.hpp"

#include <ares.h>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <random>
#include <vector>

#include "config/log.hpp"
#include "discovery/refresh_schedule.hpp"

// How c-ares runs inside the control loop: the channel is created with ARES_OPT_SOCK_STATE_CB, so
// c-ares tells us which of its sockets to watch for reading or writing. Each one is wrapped in a
// posix::stream_descriptor that only borrows the descriptor (released, never closed, when c-ares is
// done with it); readiness calls ares_process_fd, and ares_timeout() arms one steady_timer for
// c-ares's retransmissions. Queries complete through callbacks that post the result back to the loop,
// where the refresh coroutine is waiting for it.

namespace drover::discovery {

namespace asio = boost::asio;

namespace {

constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypeAaaa = 28;
constexpr int kTypeSrv = 33;

// Per try; c-ares doubles it for each later round. Two tries against one server end within ~3 s,
// well inside any sensible refresh interval.
constexpr int kTryTimeoutMs = 1000;
constexpr int kTries = 2;
// Backstop for one whole resolution (SRV plus its targets) in case c-ares never calls back.
constexpr auto kResolutionDeadline = std::chrono::seconds(10);
// Failures in a row after which the channel is thrown away and a fresh one opened.
constexpr std::uint32_t kRecreateChannelAfter = 3;
// The smallest A record in a message (a compressed name, type, class, TTL, length, 4 bytes): c-ares
// fills a caller-sized array, sized from this so that no answer is cut short.
constexpr std::size_t kMinAddressRecordBytes = 16;
// SRV weights are 16 bits; records adding up on one host stay within them.
constexpr std::uint32_t kMaxSrvWeight = 65535;

std::string_view type_name(int type) {
    switch (type) {
        case kTypeA: return "A";
        case kTypeAaaa: return "AAAA";
        case kTypeSrv: return "SRV";
    }
    return "?";
}

std::string_view type_word(config::DnsDiscovery::Type type) {
    switch (type) {
        case config::DnsDiscovery::Type::a: return "a";
        case config::DnsDiscovery::Type::aaaa: return "aaaa";
        case config::DnsDiscovery::Type::a_aaaa: return "a+aaaa";
        case config::DnsDiscovery::Type::srv: return "srv";
    }
    return "?";
}

// What an operator should read for each way a query can fail. `single_server`: see open_channel().
std::string error_text(int status, bool single_server) {
    switch (status) {
        case ARES_ENOTFOUND: return "NXDOMAIN (name does not exist)";
        case ARES_ENODATA: return "empty answer (no records of this type)";
        case ARES_ESERVFAIL: return "SERVFAIL";
        case ARES_EREFUSED: return "REFUSED";
        case ARES_ETIMEOUT: return "timed out";
        case ARES_ECONNREFUSED:
            return single_server ? "DNS server unreachable (connection refused)"
                                 : "no usable answer from any DNS server (unreachable, SERVFAIL or REFUSED)";
        case ARES_ECANCELLED: return "no answer within the resolution deadline";
        case ARES_EDESTRUCTION: return "resolver shut down";
        default: return ares_strerror(status);
    }
}

struct Question {
    std::string name;
    int type = kTypeA;
};

struct Reply {
    int status = ARES_SUCCESS;
    std::vector<unsigned char> message;
};

using Replies = std::vector<Reply>;

std::string describe(const Question& q, int status, bool single_server) {
    return fmt::format("{} {}: {}", type_name(q.type), q.name, error_text(status, single_server));
}

int count_servers(ares_channel channel) {
    ares_addr_node* servers = nullptr;
    if (ares_get_servers(channel, &servers) != ARES_SUCCESS) { return 0; }
    int count = 0;
    for (const ares_addr_node* s = servers; s != nullptr; s = s->next) { ++count; }
    ares_free_data(servers);
    return count;
}

unsigned read_u16(const unsigned char* p) { return (static_cast<unsigned>(p[0]) << 8) | p[1]; }

std::uint32_t read_u32(const unsigned char* p) {
    return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
           (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
}

void keep_shorter(std::optional<std::uint32_t>& ttl, std::uint32_t candidate) {
    if (!ttl || candidate < *ttl) { ttl = candidate; }
}

// The shortest TTL among the answer records of `type`. c-ares 1.18 parses SRV records without their
// TTL, so this walks the answer section itself (names are skipped with ares_expand_name).
std::optional<std::uint32_t> shortest_answer_ttl(const std::vector<unsigned char>& message, int type) {
    constexpr std::size_t kHeader = 12;
    if (message.size() < kHeader) { return std::nullopt; }
    const unsigned char* const begin = message.data();
    const unsigned char* const end = begin + message.size();
    const auto length = static_cast<int>(message.size());
    const unsigned char* p = begin + kHeader;
    const auto left = [&] { return static_cast<std::size_t>(end - p); };
    const auto skip_name = [&] {
        char* name = nullptr;
        long used = 0;
        if (ares_expand_name(p, begin, length, &name, &used) != ARES_SUCCESS) { return false; }
        ares_free_string(name);
        if (used < 0 || static_cast<std::size_t>(used) > left()) { return false; }
        p += used;
        return true;
    };
    const unsigned questions = read_u16(begin + 4);
    const unsigned answers = read_u16(begin + 6);
    for (unsigned i = 0; i < questions; ++i) {
        if (!skip_name() || left() < 4) { return std::nullopt; }
        p += 4;   // type, class
    }
    std::optional<std::uint32_t> shortest;
    for (unsigned i = 0; i < answers; ++i) {
        if (!skip_name() || left() < 10) { break; }
        const unsigned record_type = read_u16(p);
        const std::uint32_t ttl = read_u32(p + 4);
        const unsigned data_length = read_u16(p + 8);
        p += 10;
        if (left() < data_length) { break; }
        p += data_length;
        if (static_cast<int>(record_type) == type) { keep_shorter(shortest, ttl); }
    }
    return shortest;
}

// Appends the addresses of an A or AAAA answer; ARES_ENODATA when it holds none.
int parse_addresses(const Reply& reply, int type, std::vector<asio::ip::address>& out,
                    std::optional<std::uint32_t>& ttl) {
    const auto* data = reply.message.data();
    const auto size = static_cast<int>(reply.message.size());
    const std::size_t room = reply.message.size() / kMinAddressRecordBytes + 1;
    int count = static_cast<int>(room);
    if (type == kTypeA) {
        std::vector<ares_addrttl> records(room);
        const int status = ares_parse_a_reply(data, size, nullptr, records.data(), &count);
        if (status != ARES_SUCCESS) { return status; }
        for (int i = 0; i < count; ++i) {
            asio::ip::address_v4::bytes_type bytes{};
            std::memcpy(bytes.data(), &records[static_cast<std::size_t>(i)].ipaddr, bytes.size());
            out.emplace_back(asio::ip::address_v4{bytes});
            keep_shorter(ttl,
                         static_cast<std::uint32_t>(std::max(0, records[static_cast<std::size_t>(i)].ttl)));
        }
    } else {
        std::vector<ares_addr6ttl> records(room);
        const int status = ares_parse_aaaa_reply(data, size, nullptr, records.data(), &count);
        if (status != ARES_SUCCESS) { return status; }
        for (int i = 0; i < count; ++i) {
            asio::ip::address_v6::bytes_type bytes{};
            std::memcpy(bytes.data(), &records[static_cast<std::size_t>(i)].ip6addr, bytes.size());
            out.emplace_back(asio::ip::address_v6{bytes});
            keep_shorter(ttl,
                         static_cast<std::uint32_t>(std::max(0, records[static_cast<std::size_t>(i)].ttl)));
        }
    }
    return count == 0 ? ARES_ENODATA : ARES_SUCCESS;
}

struct SrvRecord {
    std::string target;
    std::uint16_t port = 0;
    std::uint16_t weight = 0;
    std::uint16_t priority = 0;
};

int parse_srv(const Reply& reply, std::vector<SrvRecord>& out) {
    ares_srv_reply* list = nullptr;
    const int status =
        ares_parse_srv_reply(reply.message.data(), static_cast<int>(reply.message.size()), &list);
    if (status != ARES_SUCCESS) { return status; }
    for (const ares_srv_reply* r = list; r != nullptr; r = r->next) {
        out.push_back(SrvRecord{r->host != nullptr ? r->host : "", r->port, r->weight, r->priority});
    }
    ares_free_data(list);
    return out.empty() ? ARES_ENODATA : ARES_SUCCESS;
}

int init_library_once() {
    static const int status = ares_library_init(ARES_LIB_INIT_ALL);
    return status;
}

}  // namespace

class DnsResolver::Impl : public std::enable_shared_from_this<Impl> {
public:
    Impl(asio::io_context& io, std::string cluster, config::DnsDiscovery config, Random random)
        : io_(io),
          config_(std::move(config)),
          random_(std::move(random)),
          label_(fmt::format("cluster {}: dns {} {}", cluster, type_word(config_.type), config_.name)),
          schedule_(RefreshSchedule::Settings{config_.refresh_min, config_.refresh_max, config_.max_stale,
                                              kRecreateChannelAfter}),
          ares_timer_(io),
          deadline_timer_(io),
          refresh_timer_(io) {
        if (!random_) {
            random_ = [engine = std::make_shared<std::mt19937_64>(std::random_device{}())] {
                return std::uniform_real_distribution<double>(0.0, 1.0)(*engine);
            };
        }
    }

    ~Impl() { close_channel(); }

    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    void start(UpdateCallback on_update) {
        on_update_ = std::move(on_update);
        asio::co_spawn(io_, run(shared_from_this()), [label = label_](std::exception_ptr e) {
            if (!e) { return; }
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error("{}: discovery stopped by an unexpected exception: {}", label, ex.what());
            } catch (...) {
                log::error("{}: discovery stopped by an unexpected exception", label);
            }
        });
    }

    void stop() {
        stopped_ = true;
        refresh_timer_.cancel();
        deadline_timer_.cancel();
        // Queries in flight complete with ARES_EDESTRUCTION; the coroutine wakes up and ends.
        close_channel();
    }

    // New refresh bounds or max_stale for the same question: taken as it runs, and the name asked
    // again at once so they apply from now. Anything else needs a new resolver.
    bool update(const config::Discovery& next) {
        const auto* d = std::get_if<config::DnsDiscovery>(&next);
        if (d == nullptr || d->name != config_.name || d->type != config_.type || d->port != config_.port ||
            d->servers != config_.servers) {
            return false;
        }
        config_ = *d;
        schedule_.set_settings(RefreshSchedule::Settings{config_.refresh_min, config_.refresh_max, config_.max_stale,
                                                         kRecreateChannelAfter});
        refresh_timer_.cancel();
        log::info("{}: refresh settings reloaded", label_);
        return true;
    }

    ResolverStatus status() const {
        ResolverStatus s;
        s.kind = "dns";
        s.resolved = schedule_.resolved();
        s.stale = schedule_.stale();
        s.consecutive_failures = schedule_.consecutive_failures();
        s.successes = successes_;
        s.failures = failures_;
        s.stale_drops = stale_drops_;
        s.last_success = schedule_.last_success();
        s.last_error = last_error_;
        return s;
    }

private:
    // One c-ares socket. The descriptor is borrowed: c-ares opened it and closes it.
    struct Watch {
        Watch(asio::io_context& io, int fd, std::uint64_t id) : descriptor(io, fd), generation(id) {}
        asio::posix::stream_descriptor descriptor;
        std::uint64_t generation;   // tells a reused fd number from the socket a late handler meant
        bool want_read = false;
        bool want_write = false;
        bool reading = false;   // a wait is pending
        bool writing = false;
    };

    // The replies of one set of parallel queries, handed to the coroutine when the last one is in.
    struct Batch {
        // The handler is moved in by construction: Boost 1.81's any_completion_handler move assignment
        // recurses forever (fixed in 1.82).
        template <class Handler>
        Batch(asio::io_context::executor_type ex, Handler&& h)
            : executor(ex), handler(std::forward<Handler>(h)) {}
        asio::io_context::executor_type executor;
        Replies replies;
        std::size_t pending = 0;
        asio::any_completion_handler<void(Replies)> handler;
    };

    struct PendingQuery {
        std::shared_ptr<Batch> batch;
        std::size_t index = 0;
    };

    struct Outcome {
        bool ok = false;
        EndpointSet endpoints;
        std::optional<std::uint32_t> ttl_seconds;
        std::string error;
        std::vector<std::string> failed;   // of a usable answer: the questions that failed (see take_answer)

        static Outcome failure(std::string why) { return Outcome{false, {}, std::nullopt, std::move(why), {}}; }
    };

    // The addresses each (name, record type) gave at its last answer.
    using Answers = std::map<std::pair<std::string, int>, std::vector<asio::ip::address>>;

    // --- the refresh loop -------------------------------------------------------------------------

    // `self` keeps this object alive for as long as the loop runs, even past the DnsResolver.
    asio::awaitable<void> run(std::shared_ptr<Impl> self) {
        while (!stopped_) {
            if (recreate_channel_) {
                recreate_channel_ = false;
                log::info("{}: {} failures in a row; recreating the resolver channel", label_,
                          schedule_.consecutive_failures());
                close_channel();
            }
            Outcome outcome;
            try {
                outcome = co_await resolve();
            } catch (const std::exception& e) {
                outcome = Outcome::failure(fmt::format("internal error: {}", e.what()));
            }
            if (stopped_) { break; }
            refresh_timer_.expires_after(apply(std::move(outcome)));
            co_await refresh_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        (void)self;
    }

    // Feeds the outcome to the schedule, delivers a changed set, and returns the time to the next try.
    RefreshDuration apply(Outcome outcome) {
        const auto now = RefreshClock::now();
        const double random = random_();
        if (outcome.ok) {
            ++successes_;
            const std::uint32_t failed_before = schedule_.consecutive_failures();
            std::optional<RefreshDuration> ttl;
            if (outcome.ttl_seconds) { ttl = std::chrono::seconds(*outcome.ttl_seconds); }
            const auto decision = schedule_.on_success(ttl, now, random);
            if (failed_before > 0) {
                log::info("{}: answering again after {} failed refreshes", label_, failed_before);
            }
            // Part of the answer failed: said once per change, not at every refresh (a server that
            // refuses AAAA does so every time).
            // Sorted: SRV targets are asked in the order each answer lists them, which DNS servers rotate.
            std::sort(outcome.failed.begin(), outcome.failed.end());
            std::string partial;
            for (const auto& f : outcome.failed) { partial += (partial.empty() ? "" : "; ") + f; }
            if (partial != partial_error_) {
                if (!partial.empty()) {
                    log::warn("{}: part of the answer failed, its last addresses (if any) are kept: {}", label_,
                              partial);
                    last_error_ = partial;
                } else {
                    log::info("{}: every part of the answer is back", label_);
                }
                partial_error_ = std::move(partial);
            }
            sort_endpoints(outcome.endpoints);
            if (!delivered_ || *delivered_ != outcome.endpoints) {
                log::info("{}: {} endpoints (ttl {}s, next refresh in {} ms)", label_,
                          outcome.endpoints.size(), outcome.ttl_seconds.value_or(0), decision.delay.count());
                delivered_ = outcome.endpoints;
                on_update_(std::move(outcome.endpoints));
            } else {
                log::debug("{}: unchanged, next refresh in {} ms", label_, decision.delay.count());
            }
            return decision.delay;
        }
        ++failures_;
        last_error_ = outcome.error;
        const auto decision = schedule_.on_failure(now, random);
        if (decision.drop_stale) {
            ++stale_drops_;
            log::error("{}: {}; the last good set outlived max_stale ({} ms): dropping its {} endpoints, "
                       "the cluster has no hosts now; retry in {} ms",
                       label_, outcome.error, config_.max_stale.value_or(RefreshDuration{0}).count(),
                       delivered_ ? delivered_->size() : 0, decision.delay.count());
            delivered_ = EndpointSet{};
            on_update_(EndpointSet{});
        } else if (schedule_.stale()) {
            log::warn("{}: {} (failure {} in a row); keeping the last {} endpoints, retry in {} ms", label_,
                      outcome.error, schedule_.consecutive_failures(), delivered_ ? delivered_->size() : 0,
                      decision.delay.count());
        } else {
            log::warn("{}: {} (failure {} in a row); the cluster has no hosts, retry in {} ms", label_,
                      outcome.error, schedule_.consecutive_failures(), decision.delay.count());
        }
        if (decision.recreate_channel) { recreate_channel_ = true; }
        return decision.delay;
    }

    asio::awaitable<Outcome> resolve() {
        if (channel_ == nullptr && !open_channel()) { co_return Outcome::failure(channel_error_); }
        if (config_.type == config::DnsDiscovery::Type::srv) { co_return co_await resolve_srv(); }
        co_return co_await resolve_addresses();
    }

    asio::awaitable<Outcome> resolve_addresses() {
        std::vector<Question> questions;
        using Type = config::DnsDiscovery::Type;
        if (config_.type == Type::a || config_.type == Type::a_aaaa) {
            questions.push_back({config_.name, kTypeA});
        }
        if (config_.type == Type::aaaa || config_.type == Type::a_aaaa) {
            questions.push_back({config_.name, kTypeAaaa});
        }
        const Replies replies = co_await query(questions);
        Outcome outcome;
        Answers answers;
        std::vector<asio::ip::address> addresses;
        for (std::size_t i = 0; i < questions.size(); ++i) {
            if (const int status = take_answer(questions[i], replies[i], answers, outcome, addresses);
                status != ARES_SUCCESS) {
                outcome.failed.push_back(describe(questions[i], status, single_server_));
            }
        }
        if (outcome.failed.size() == questions.size()) { co_return Outcome::failure(outcome.failed.front()); }
        answers_ = std::move(answers);
        if (addresses.empty()) {
            co_return Outcome::failure(outcome.failed.empty()
                                           ? fmt::format("{}: empty answer (no address records)", config_.name)
                                           : outcome.failed.front());
        }
        for (const auto& address : addresses) {
            outcome.endpoints.push_back(Endpoint{{address, config_.port.value_or(0)}, 1, 0});
        }
        outcome.ok = true;
        co_return outcome;
    }

    asio::awaitable<Outcome> resolve_srv() {
        const Question srv_question{config_.name, kTypeSrv};
        // A named vector, not a braced list: GCC 12 miscompiles initializer lists in co_await arguments.
        std::vector<Question> srv_questions;
        srv_questions.push_back(srv_question);
        const Replies srv_replies = co_await query(std::move(srv_questions));
        if (stopped_) { co_return Outcome::failure("stopped"); }
        std::vector<SrvRecord> records;
        int status = srv_replies[0].status;
        if (status == ARES_SUCCESS) { status = parse_srv(srv_replies[0], records); }
        if (status != ARES_SUCCESS) {
            co_return Outcome::failure(describe(srv_question, status, single_server_));
        }
        Outcome outcome;
        outcome.ttl_seconds = shortest_answer_ttl(srv_replies[0].message, kTypeSrv);

        // Each distinct target once, both address families. A target of "." means "no service here".
        // A target is a full name (RFC 2782), which c-ares hands over without its final dot: with the
        // dot back, the search list of resolv.conf is not applied to it (in a Kubernetes pod, ndots:5
        // would try "target.<ns>.svc.cluster.local" and the rest first, and could find another host).
        std::vector<Question> questions;
        std::map<std::string, std::vector<asio::ip::address>> targets;
        for (auto& r : records) {
            if (r.target.empty() || r.target == ".") { continue; }
            if (r.target.back() != '.') { r.target.push_back('.'); }
            if (targets.emplace(r.target, std::vector<asio::ip::address>{}).second) {
                questions.push_back({r.target, kTypeA});
                questions.push_back({r.target, kTypeAaaa});
            }
        }
        if (questions.empty()) {
            // Only "." (RFC 2782: the service is decidedly not available here): an answer, with no
            // host, not a failure that would keep the last set.
            outcome.ok = true;
            co_return outcome;
        }
        const Replies replies = co_await query(questions);
        Answers answers;
        for (std::size_t i = 0; i < questions.size(); ++i) {
            if (const int target_status = take_answer(questions[i], replies[i], answers, outcome, targets[questions[i].name]);
                target_status != ARES_SUCCESS) {
                outcome.failed.push_back(fmt::format("SRV {}: target {}", config_.name,
                                                     describe(questions[i], target_status, single_server_)));
            }
        }
        if (outcome.failed.size() == questions.size()) { co_return Outcome::failure(outcome.failed.front()); }
        answers_ = std::move(answers);
        // One host per address and port: records naming the same one (two targets with one address)
        // add their weights within the best priority that lists it.
        std::map<asio::ip::tcp::endpoint, std::size_t> index;
        for (const auto& r : records) {
            const auto it = targets.find(r.target);
            if (it == targets.end()) { continue; }
            // SRV weight 0 means "rarely, when others are available"; the closest we do is weight 1.
            const std::uint32_t weight = std::max<std::uint32_t>(1, r.weight);
            for (const auto& address : it->second) {
                const asio::ip::tcp::endpoint endpoint{address, r.port};
                const auto [at, added] = index.try_emplace(endpoint, outcome.endpoints.size());
                if (added) {
                    outcome.endpoints.push_back(Endpoint{endpoint, weight, r.priority});
                    continue;
                }
                Endpoint& existing = outcome.endpoints[at->second];
                if (r.priority < existing.priority) {
                    existing.priority = r.priority;
                    existing.weight = weight;
                } else if (r.priority == existing.priority) {
                    existing.weight = std::min<std::uint32_t>(kMaxSrvWeight, existing.weight + weight);
                }
            }
        }
        if (outcome.endpoints.empty()) {
            co_return Outcome::failure(outcome.failed.empty()
                                           ? fmt::format("SRV {}: no target resolved to an address", config_.name)
                                           : outcome.failed.front());
        }
        outcome.ok = true;
        co_return outcome;
    }

    // One address question's reply into `addresses`: its records, none (no records of that type, or an
    // SRV target that does not exist), or, when the question failed (SERVFAIL, REFUSED, a timeout), the
    // addresses its last answer gave (none if it never answered), so that one family failing (a server
    // that refuses AAAA) neither takes the other family's hosts out nor keeps the name unresolved.
    // ARES_SUCCESS, or why it failed. The answer (or the one kept) goes into `answers` for the next refresh.
    int take_answer(const Question& question, const Reply& reply, Answers& answers, Outcome& outcome,
                    std::vector<asio::ip::address>& addresses) {
        std::vector<asio::ip::address> got;
        int status = reply.status;
        if (status == ARES_SUCCESS) { status = parse_addresses(reply, question.type, got, outcome.ttl_seconds); }
        const bool answered = status == ARES_SUCCESS || status == ARES_ENODATA ||
                              (status == ARES_ENOTFOUND && config_.type == config::DnsDiscovery::Type::srv);
        const auto key = std::pair{question.name, question.type};
        if (!answered) {
            if (const auto kept = answers_.find(key); kept != answers_.end()) { got = kept->second; }
        }
        addresses.insert(addresses.end(), got.begin(), got.end());
        answers.emplace(key, std::move(got));
        return answered ? ARES_SUCCESS : status;
    }

    template <class Token>
    auto async_query(std::vector<Question> questions, Token&& token) {
        return asio::async_initiate<Token, void(Replies)>(
            [this](auto handler, std::vector<Question> qs) {
                auto batch = std::make_shared<Batch>(io_.get_executor(), std::move(handler));
                batch->replies.resize(qs.size());
                batch->pending = qs.size();
                if (channel_ == nullptr || qs.empty()) {
                    for (auto& r : batch->replies) { r.status = ARES_EDESTRUCTION; }
                    complete(batch);
                    return;
                }
                for (std::size_t i = 0; i < qs.size(); ++i) {
                    // ares_search applies the search domains of resolv.conf like the system resolver;
                    // a name with a trailing dot is taken as it is.
                    ares_search(channel_, qs[i].name.c_str(), kClassIn, qs[i].type, &Impl::on_reply,
                                new PendingQuery{batch, i});
                }
                schedule_timeout();
            },
            token, std::move(questions));
    }

    // Runs the questions in parallel; every reply comes back (c-ares calls back exactly once per query,
    // also on timeout, cancellation and channel destruction). Bounded by kResolutionDeadline.
    asio::awaitable<Replies> query(std::vector<Question> questions) {
        const std::uint64_t id = ++query_generation_;
        deadline_timer_.expires_after(kResolutionDeadline);
        deadline_timer_.async_wait([weak = weak_from_this(), id](const boost::system::error_code& ec) {
            const auto self = weak.lock();
            if (ec || !self || self->query_generation_ != id || self->channel_ == nullptr) { return; }
            log::warn("{}: no answer within {} s; cancelling the queries", self->label_,
                      std::chrono::duration_cast<std::chrono::seconds>(kResolutionDeadline).count());
            ares_cancel(self->channel_);
        });
        Replies replies = co_await async_query(std::move(questions), asio::use_awaitable);
        ++query_generation_;
        deadline_timer_.cancel();
        co_return replies;
    }

    // Always through the loop, never inline: c-ares may call back from inside ares_search.
    static void complete(const std::shared_ptr<Batch>& batch) {
        asio::post(batch->executor, [batch] {
            auto handler = std::move(batch->handler);
            std::move(handler)(std::move(batch->replies));
        });
    }

    static void on_reply(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
        const std::unique_ptr<PendingQuery> pending{static_cast<PendingQuery*>(arg)};
        Batch& batch = *pending->batch;
        Reply& reply = batch.replies[pending->index];
        reply.status = status;
        if (abuf != nullptr && alen > 0) { reply.message.assign(abuf, abuf + alen); }
        if (--batch.pending == 0) { complete(pending->batch); }
    }

    // --- the c-ares channel and its sockets ---------------------------------------------------------

    // With several servers, c-ares moves on to the next one when a server answers SERVFAIL or REFUSED,
    // and reports only "connection refused" when all did. With a single server there is nothing to move
    // on to, so the channel is reopened with ARES_FLAG_NOCHECKRESP: the answer comes through and the
    // error names the real rcode.
    bool open_channel() {
        if (!open_channel(0)) { return false; }
        single_server_ = count_servers(channel_) == 1;
        if (single_server_) {
            close_channel();
            return open_channel(ARES_FLAG_NOCHECKRESP);
        }
        return true;
    }

    bool open_channel(int flags) {
        if (const int status = init_library_once(); status != ARES_SUCCESS) {
            channel_error_ = fmt::format("cannot initialise c-ares: {}", ares_strerror(status));
            return false;
        }
        ares_options options{};
        options.flags = flags;
        options.sock_state_cb = &Impl::on_socket_state;
        options.sock_state_cb_data = this;
        options.timeout = kTryTimeoutMs;
        options.tries = kTries;
        const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
        ares_channel channel = nullptr;
        if (const int status = ares_init_options(&channel, &options, mask); status != ARES_SUCCESS) {
            channel_error_ = fmt::format("cannot create a resolver channel: {}", ares_strerror(status));
            return false;
        }
        channel_ = channel;
        if (!config_.servers.empty()) {
            std::string servers;
            for (const auto& s : config_.servers) {
                if (!servers.empty()) { servers += ','; }
                servers += s.str();
            }
            if (const int status = ares_set_servers_ports_csv(channel_, servers.c_str());
                status != ARES_SUCCESS) {
                channel_error_ = fmt::format("cannot use DNS servers {}: {}", servers, ares_strerror(status));
                close_channel();
                return false;
            }
        }
        return true;
    }

    void close_channel() {
        if (channel_ == nullptr) { return; }
        ares_destroy(channel_);   // calls back every pending query and hands back every socket
        channel_ = nullptr;
        ares_timer_.cancel();
        for (auto& [fd, watch] : watches_) { watch->descriptor.release(); }
        watches_.clear();
    }

    static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
        static_cast<Impl*>(data)->watch_socket(fd, readable != 0, writable != 0);
    }

    void watch_socket(int fd, bool readable, bool writable) {
        auto it = watches_.find(fd);
        if (!readable && !writable) {
            if (it != watches_.end()) {
                // c-ares closes the descriptor right after this call: give it back (release also
                // deregisters it and cancels our waits) rather than let asio close it.
                it->second->descriptor.release();
                watches_.erase(it);
            }
            return;
        }
        if (it == watches_.end()) {
            try {
                it = watches_.emplace(fd, std::make_unique<Watch>(io_, fd, ++next_generation_)).first;
            } catch (const boost::system::system_error& e) {
                // c-ares still times the query out and retries; we only lose the early wake-up.
                log::error("{}: cannot watch a DNS socket: {}", label_, e.what());
                return;
            }
        }
        Watch& watch = *it->second;
        watch.want_read = readable;
        watch.want_write = writable;
        if (readable && !watch.reading) { wait_socket(watch, false); }
        if (writable && !watch.writing) { wait_socket(watch, true); }
    }

    void wait_socket(Watch& watch, bool write) {
        (write ? watch.writing : watch.reading) = true;
        watch.descriptor.async_wait(
            write ? asio::posix::stream_descriptor::wait_write : asio::posix::stream_descriptor::wait_read,
            [weak = weak_from_this(), fd = watch.descriptor.native_handle(), id = watch.generation,
             write](const boost::system::error_code& ec) {
                if (const auto self = weak.lock()) { self->on_socket_ready(fd, id, write, ec); }
            });
    }

    void on_socket_ready(int fd, std::uint64_t id, bool write, const boost::system::error_code& ec) {
        auto it = watches_.find(fd);
        if (it == watches_.end() || it->second->generation != id) { return; }   // released meanwhile
        (write ? it->second->writing : it->second->reading) = false;
        if (ec == asio::error::operation_aborted || channel_ == nullptr) { return; }
        if (ec) { log::debug("{}: waiting on a DNS socket: {}", label_, ec.message()); }
        process(write ? ARES_SOCKET_BAD : fd, write ? fd : ARES_SOCKET_BAD);
        // Processing may have closed the socket (and a new one may already use the same number).
        it = watches_.find(fd);
        if (ec || it == watches_.end() || it->second->generation != id) { return; }
        Watch& watch = *it->second;
        if (!write && watch.want_read && !watch.reading) { wait_socket(watch, false); }
        if (write && watch.want_write && !watch.writing) { wait_socket(watch, true); }
    }

    void process(ares_socket_t read_fd, ares_socket_t write_fd) {
        if (channel_ == nullptr) { return; }
        ares_process_fd(channel_, read_fd, write_fd);
        schedule_timeout();
    }

    // Arms the timer for c-ares's next retransmission or query timeout (none: no query in flight).
    void schedule_timeout() {
        timeval tv{};
        if (channel_ == nullptr || ares_timeout(channel_, nullptr, &tv) == nullptr) {
            ares_timer_.cancel();
            return;
        }
        ares_timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
        ares_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
            if (ec) { return; }
            if (const auto self = weak.lock()) { self->process(ARES_SOCKET_BAD, ARES_SOCKET_BAD); }
        });
    }

    asio::io_context& io_;
    config::DnsDiscovery config_;
    Random random_;
    std::string label_;   // "cluster web: dns srv _http._tcp.web.internal", the prefix of every log line
    RefreshSchedule schedule_;
    ares_channel channel_ = nullptr;
    bool single_server_ = false;
    std::string channel_error_;
    std::map<int, std::unique_ptr<Watch>> watches_;
    std::uint64_t next_generation_ = 0;
    std::uint64_t query_generation_ = 0;
    asio::steady_timer ares_timer_;       // c-ares retransmissions and query timeouts
    asio::steady_timer deadline_timer_;   // backstop for one resolution
    asio::steady_timer refresh_timer_;    // until the next resolution
    UpdateCallback on_update_;
    std::optional<EndpointSet> delivered_;   // the set last handed to the cluster (sorted)
    bool stopped_ = false;
    bool recreate_channel_ = false;
    std::uint64_t successes_ = 0;
    std::uint64_t failures_ = 0;
    std::uint64_t stale_drops_ = 0;
    std::string last_error_;
    std::string partial_error_;   // the failed questions of the last usable answer, if any
    Answers answers_;             // of the last usable answer
};

DnsResolver::DnsResolver(asio::io_context& control, std::string cluster, config::DnsDiscovery config,
                         Random random)
    : impl_(std::make_shared<Impl>(control, std::move(cluster), std::move(config), std::move(random))) {}

DnsResolver::~DnsResolver() { impl_->stop(); }

void DnsResolver::start(UpdateCallback on_update) { impl_->start(std::move(on_update)); }

void DnsResolver::stop() { impl_->stop(); }

ResolverStatus DnsResolver::status() const { return impl_->status(); }

bool DnsResolver::update(const config::Discovery& next) { return impl_->update(next); }

}  // namespace drover::discovery
