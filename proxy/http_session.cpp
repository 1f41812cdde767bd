#include "proxy/http_session.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/container/small_vector.hpp>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "config/log.hpp"
#include "health/probe.hpp"
#include "health/tls_client.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admission.hpp"
#include "proxy/http_body.hpp"
#include "proxy/http_heads.hpp"
#include "proxy/http_rules.hpp"
#include "proxy/listener.hpp"
#include "proxy/load_balancer/hash.hpp"
#include "proxy/pressure.hpp"
#include "proxy/readiness.hpp"
#include "proxy/relay.hpp"
#include "proxy/socket_options.hpp"
#include "proxy/spawn.hpp"
#include "proxy/stream.hpp"
#include "proxy/tls_server.hpp"
#include "proxy/worker.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 16 * 1024;
// Hosts a request tried or found full: inline for the usual few, no allocation per request.
using HostList = boost::container::small_vector<const discovery::Host*, 4>;
// Responses are read in larger steps: a 16 KiB body with its head then comes in one read and goes out
// in one write, where 16 KiB steps took two of each (benchmarks/e2e http-16k, strace). The session's
// upstream buffer keeps this capacity while the session lives (spare sessions included).
constexpr std::size_t kUpstreamReadChunk = 64 * 1024;
// Body runs shorter than this (small chunks) are gathered into one write (HttpSession::next_body_run).
constexpr std::size_t kGatherBelow = 1024;
constexpr std::size_t kMaxResponseHeaderBytes = 64 * 1024;
// Body bytes up to this size that came in with a response head are sent in the head's buffer (a copy
// this small costs less than a gathered write; see stream_response).
constexpr std::size_t kCoalescedBodyMax = 4 * 1024;
// How long the first request for a service made from a template waits for its first DNS answer.
constexpr auto kDynamicResolveWait = std::chrono::seconds(3);
// A request waiting for an admission slot looks again this often (slots freed on other workers).
constexpr auto kSlotPoll = std::chrono::milliseconds(5);
// Weight of each new sample in the smoothed upstream latency.
constexpr double kLatencyWeight = 0.1;
// How long a closing TLS connection waits for the client's close_notify after sending its own.
constexpr auto kTlsShutdownWait = std::chrono::seconds(1);
// How long a client whose request body was left unread is read and ignored before its connection
// is closed (HttpSession::linger).
constexpr auto kLingerTime = std::chrono::seconds(2);
// While a request body waits for room at a backend, how often it looks for an early answer.
constexpr auto kAnswerPoll = std::chrono::milliseconds(250);
// While a request waits for its response head, how often it looks whether the client is still there.
constexpr auto kClientCheck = std::chrono::seconds(1);
// The same while it waits for a slot, for a host under its cap, or for a host to come back: sooner,
// as those waits are short (queue_timeout), and at most one syscall per look per waiting request.
constexpr auto kWaitingClientCheck = std::chrono::milliseconds(100);
// What the access log shows for a request whose client left before its answer (NGINX's 499).
constexpr unsigned kClientClosedRequest = 499;
// Response bodies at least this long still to come are spliced (kernel to kernel) between plain
// sockets; shorter ones are copied through one relay buffer (a pipe costs three syscalls to make).
constexpr std::uint64_t kSpliceBodyMin = 64 * 1024;

std::size_t status_class(unsigned status) { return std::min<std::size_t>(status / 100, 5) - 1; }

// The outcome of talking to one upstream host for one request.
// ok, client_gone and bad_response without HttpSession::unsent_: the client has its answer. timeout,
// reset_before_response and bad_response with unsent_: not answered yet (the caller may retry).
// retryable_status: a 502/503/504 the caller retries (the retry budget was already taken).
enum class Outcome { ok, reset_before_response, timeout, bad_response, client_gone, client_stalled, bad_request_body, body_too_large,
                     retryable_status, early_response };

struct LocalError {
    int status;
    LocalReason reason;
    std::string detail;
    bool close = true;
    std::uint32_t retry_after = 0;   // seconds; 0 = no Retry-After
};

using http_heads::append_field;
using http_heads::decimal;

// A client connection as it passes between a session and its parked state.
struct ClientConnection {
    tcp::socket socket;
    std::shared_ptr<ListenerState> listener;
    tcp::endpoint remote;
    std::string client_ip;   // remote's address as text, made once per connection
};

// How long a connection may wait idle for its next request: `timeout`, or at most shutdown.idle_grace
// once a drain has begun or its listener was removed.
std::chrono::milliseconds idle_timeout(const Worker& worker, const ListenerState& listener, std::chrono::milliseconds timeout) {
    if (worker.draining() || listener.shared->closed.load(std::memory_order_relaxed)) {
        return std::min(timeout, worker.idle_grace());
    }
    return timeout;
}

// Parks a plain client connection until its next bytes (then a session serves them) or `timeout`
// after `now`.
void park_client(Worker& worker, ClientConnection&& connection, std::chrono::milliseconds timeout,
                 std::chrono::steady_clock::time_point now);

class HttpSession final : public Session {
public:
    // Sessions are reused: a plain connection parks between requests, and the next request of any
    // connection on the worker takes a spare session (Worker::spare_sessions) instead of building one
    // (its stream, timers and buffers). begin() and end() bracket one connection's turn.
    explicit HttpSession(Worker& worker) : worker_(worker), client_(worker.new_socket()) {}

    ~HttpSession() override {
        if (active_) { end(); }
    }

    void begin(ClientConnection&& connection) {
        listener_ = std::move(connection.listener);
        counters_ = &listener_->counters(worker_.index());
        client_.lowest().socket() = std::move(connection.socket);
        client_ip_ = std::move(connection.client_ip);
        client_remote_ = connection.remote;
        client_addr_.clear();
        client_cert_.clear();
        client_buf_.clear();
        // What a previous connection's last request may have left (it can end anywhere).
        last_connect_error_.clear();
        status_ = 0;
        error_reason_ = {};
        keep_client_ = request_keep_alive_ = body_consumed_ = request_cut_ = linger_ = false;
        unsent_.reset();
        local_reply_.reset();
        retry_after_.reset();
        gate_ = nullptr;
        limiter_verdict_ = LimiterVerdict::ignore;
        grant_wake_target_ = nullptr;
        disarm_deadline();
        deadline_fired_ = false;
        aborted_ = idle_ = parked_ = false;
        active_ = true;
        worker_.add_session(this);
    }

    void end() {
        active_ = false;
        worker_.remove_session(this);
        if (!parked_) { listener_->connections_active().fetch_sub(1, std::memory_order_relaxed); }
        listener_.reset();
        tls_server_.reset();
    }

    // Whether this session can serve another connection: plain, and its connection parked or closed.
    bool reusable() const { return !client_.tls() && upstream_ == nullptr; }

    // A spare session's coroutine waits here; resume() hands it its next connection and goes on with it
    // (inline, on the worker's thread).
    // Not a coroutine of its own: the operation's awaitable is the caller's to await (a frame less).
    asio::awaitable<void> wait_as_spare() {
        return asio::async_initiate<decltype(asio::use_awaitable), void()>(
            [this](auto handler) { wake_.emplace(asio::bind_allocator(PoolAllocator<void>{}, std::move(handler))); },
            asio::use_awaitable);
    }

    void resume(ClientConnection&& connection) {
        begin(std::move(connection));
        WakeHandler wake(std::move(*wake_));
        wake_.reset();
        std::move(wake)();
    }

    // The worker is going away: ends the waiting coroutine, and with its frame this session.
    void discard() override {
        WakeHandler wake(std::move(*wake_));
        wake_.reset();
    }

    HttpSession(const HttpSession&) = delete;
    HttpSession& operator=(const HttpSession&) = delete;

    void abort() override {
        aborted_ = true;
        boost::system::error_code ignored;
        // Cut mid-request (the drain's deadline, a second signal): a reset tells the client its answer
        // is not whole, where a FIN would look like a close-delimited answer's end.
        if (!idle_ && client_.socket().is_open()) { client_.socket().set_option(tcp::socket::linger(true, 0), ignored); }
        client_.socket().close(ignored);
        if (upstream_) { upstream_->socket().close(ignored); }   // a wait for the response ends too
    }

    void on_drain() override {
        if (!idle_) { return; }   // mid-request: the response says Connection: close instead
        // Idle over TLS: kept shutdown.idle_grace more (at most) for a request already on its way.
        if (worker_.idle_grace().count() > 0) {
            arm_deadline(std::min(deadline_, Clock::now() + worker_.idle_grace()));
            return;
        }
        boost::system::error_code ignored;
        client_.socket().close(ignored);
    }

    void on_listener_closed(const ListenerShared* closed) override {
        if (listener_ && listener_->shared.get() == closed) { on_drain(); }
    }

    asio::awaitable<void> run() {
        // Plain: no handshake coroutine, whose frame would be one more allocation per parked request.
        tls_server_ = listener_->tls;
        if (tls_server_ && !co_await handshake()) {
            close_client();
            co_return;
        }
        // A plain connection comes here with a request's first bytes readable (it was parked until
        // then); a TLS one waits for them here.
        bool first = true;
        while (!aborted_) {
            if (client_buf_.size() == 0 && !client_.tls()) {
                if (!first) {
                    // Parked: the session ends and only the socket stays (park_client). The buffers stay
                    // with the session, which waits as a spare for the next request on the worker.
                    park(listener_->config.timeouts.idle);
                    co_return;
                }
            } else if (client_buf_.size() == 0) {
                // Idle between requests over TLS: hold no buffer.
                release_buffers();
                idle_ = true;
                bump(counters_->connections_idle);
                const bool more = co_await wait_readable_tls(
                    idle_timeout(worker_, *listener_, first ? listener_->config.timeouts.request_headers
                                                            : listener_->config.timeouts.idle));
                drop(counters_->connections_idle);
                idle_ = false;
                if (!more) { break; }
            }
            first = false;
            // A drain (or the listener's removal) that began after this response went out with
            // keep-alive: the client may be sending its next request already. It is waited for
            // shutdown.idle_grace (idle_timeout) and answered with Connection: close.
            if (!co_await handle_request()) { break; }
        }
        if (linger_ && !client_.tls() && !aborted_) { co_await linger(Clock::now() + kLingerTime); }
        if (client_.tls() && !aborted_) {
            // close_notify, so the client can tell the end from a cut; its answer is waited for briefly.
            const auto linger_until = Clock::now() + kLingerTime;
            client_.lowest().expires_after(kTlsShutdownWait);
            co_await client_.async_shutdown(use_tuple);
            // With a body left unread, what the client still sends comes after the close_notify (the
            // shutdown ends at its first record): it is dropped as it is, undecrypted.
            if (linger_) { co_await linger(linger_until); }
        }
        close_client();
    }

private:
    void park(std::chrono::milliseconds timeout) {
        parked_ = true;
        // A last read that filled its buffer (a body of a multiple of the read size) leaves the
        // socket's note set: the park would wake at once and wait for a head under request_headers,
        // then answer 408 to a client that sent nothing.
        readiness::settle(client_.socket());
        // The previous request ended a moment ago (recorded then): its time saves reading the clock.
        park_client(worker_, ClientConnection{std::move(client_.socket()), std::move(listener_), client_remote_,
                                              std::move(client_ip_)},
                    timeout, finished_ > start_ ? finished_ : Clock::now());
    }

    void release_buffers() {
        client_buf_.shrink_to_fit();
        upstream_buf_.clear();
        upstream_buf_.shrink_to_fit();
        std::string().swap(raw_head_);
        std::string().swap(raw_response_head_);
        std::vector<http_rules::Field>().swap(request_head_.fields);
        std::vector<http_rules::Field>().swap(response_head_.fields);
    }

    // A reload removed the listener: after the request being served, the connection closes.
    bool listener_closed() const { return listener_->shared->closed.load(std::memory_order_relaxed); }

    // "ip:port" of the client, for logs; made when first needed.
    const std::string& client_addr() {
        if (client_addr_.empty()) { client_addr_ = discovery::to_string(client_remote_); }
        return client_addr_;
    }

    // A client whose request body was left unread (answered before it ended: 413, or the backend's
    // early answer) would get a reset from close(2) with its bytes still coming, and a reset can
    // destroy the answer before the client has read it. So: FIN after the answer, then its bytes read
    // and dropped until it closes too, until `deadline` (kLingerTime from the answer).
    asio::awaitable<void> linger(Clock::time_point deadline) {
        boost::system::error_code ignored;
        client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        for (;;) {
            client_buf_.clear();
            auto [ec, n] = co_await read_plain(client_.socket(), client_buf_.prepare(kReadChunk), deadline);
            if (ec) { break; }
        }
    }

    void close_client() {
        boost::system::error_code ignored;
        client_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        client_.socket().close(ignored);
    }

    // TLS listeners (tls_server_ set): the handshake, within the request header timeout.
    asio::awaitable<bool> handshake() {
        start_ = Clock::now();   // what a request answered during it is timed from
        client_.start_tls_server(tls_server_->context());
        client_.lowest().expires_after(listener_->config.timeouts.request_headers);
        auto [ec] = co_await client_.async_handshake(use_tuple);
        if (ec) {
            bump(counters_->tls_handshake_failures);
            log::debug("listener {}: TLS handshake with {} failed: {}", listener_->config.name, client_addr(),
                       health::describe_handshake_error(ec, nullptr));
            if (plain_http(ec)) {
                answer_plain_http();
                co_await linger(Clock::now() + kLingerTime);   // the rest of the request, if any, is dropped
            }
            co_return false;
        }
        bump(counters_->tls_handshakes);
        if (SSL_session_reused(client_.native_ssl()) == 1) { bump(counters_->tls_resumed); }
        if (!tls_server_->settings().client_ca.empty()) { client_cert_ = forwarded_client_cert(client_.native_ssl()); }
        co_return true;
    }

    // The client certificate a mutual-TLS listener verified, as X-Forwarded-Client-Cert says it (the
    // fields Envoy uses): Hash=<SHA-256 of the DER, hex>;Subject="<RFC 2253 subject>".
    static std::string forwarded_client_cert(SSL* ssl) {
        X509* certificate = SSL_get0_peer_certificate(ssl);
        if (certificate == nullptr) { return {}; }
        std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
        unsigned length = 0;
        if (X509_digest(certificate, EVP_sha256(), digest.data(), &length) != 1) { return {}; }
        std::string out = "Hash=";
        for (unsigned i = 0; i < length; ++i) { out += fmt::format("{:02x}", digest[i]); }
        std::unique_ptr<BIO, int (*)(BIO*)> bio{BIO_new(BIO_s_mem()), &BIO_free};
        if (bio && X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253) >= 0) {
            char* text = nullptr;
            const long size = BIO_get_mem_data(bio.get(), &text);
            out += ";Subject=\"";
            for (long i = 0; i < size; ++i) {
                if (text[i] == '"' || text[i] == '\\') { out.push_back('\\'); }
                out.push_back(text[i]);
            }
            out.push_back('"');
        }
        return out;
    }

    // OpenSSL saw an HTTP request where a ClientHello should be: http:// to an https:// port.
    static bool plain_http(const boost::system::error_code& ec) {
        if (ec.category() != asio::error::get_ssl_category()) { return false; }
        const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
        return reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST;
    }

    // Says so in plain HTTP, as NGINX does, rather than an empty reply: one write, no wait (it is
    // small, and the socket is fresh); the connection closes after it.
    // Counted and logged as every local answer is (a request with no head Drover could read: `- -`).
    void answer_plain_http() {
        static constexpr std::string_view kBody = "400 bad_request: plain HTTP sent to a TLS port (use https)\n";
        const std::string answer = fmt::format(
            "HTTP/1.1 400 Bad Request\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n"
            "drover-error: bad_request\r\nConnection: close\r\n\r\n{}",
            http_heads::http_date(), kBody.size(), kBody);
        boost::system::error_code ignored;
        auto& socket = client_.socket();
        if (!socket.non_blocking()) { socket.non_blocking(true, ignored); }
        const auto n = socket.write_some(asio::buffer(answer), ignored);
        bump(counters_->local_responses[static_cast<std::size_t>(LocalReason::bad_request)]);
        bump(counters_->bytes_sent, n);
        status_ = 400;
        error_reason_ = local_reason_name(LocalReason::bad_request);
        record(nullptr, kBody.size());
    }

    // Deadlines of the plain client's waits and of a plain upstream's response head (one at a time): the
    // timer cancels only the operation bound to deadline_cancel_ and leaves the socket open, so a 408 can
    // still be written. Cheaper than racing with the || operator, which co_spawns two child coroutines
    // per wait (benchmarks/e2e --callgrind, instructions per request).
    // The timer is re-armed lazily: it stays armed across requests, and a deadline no earlier than its
    // expiry leaves it alone (when it ends it compares with the current deadline: waits again, acts, or
    // goes idle). Setting and cancelling it for every wait was ~860 instructions of a keep-alive request
    // (benchmarks/profile). Disarming only forgets the deadline.
    void arm_deadline(Clock::time_point at) {
        deadline_fired_ = false;
        deadline_ = at;
        if (timer_at_ > at) { start_deadline_timer(at); }
    }

    void disarm_deadline() { deadline_ = Clock::time_point::max(); }

    void start_deadline_timer(Clock::time_point at) {
        timer_at_ = at;
        const auto generation = ++deadline_generation_;
        deadline_timer_.expires_at(at);   // a wait for a later expiry ends with operation_aborted
        deadline_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_), generation](const boost::system::error_code& ec) {
            // A handler already queued when the timer was re-armed is stale: the generation tells.
            if (alive.expired() || generation != deadline_generation_) { return; }
            timer_at_ = Clock::time_point::max();
            if (ec || deadline_ == Clock::time_point::max()) { return; }   // nothing waits: idle until the next arm
            if (Clock::now() < deadline_) {
                start_deadline_timer(deadline_);   // the deadline moved later meanwhile
                return;
            }
            deadline_ = Clock::time_point::max();
            deadline_fired_ = true;
            deadline_cancel_.emit(asio::cancellation_type::terminal);
        });
    }

    // The wait's operation comes from the worker's BlockPool: the waits of many connections interleave,
    // which Asio's own small cache serves badly (proxy/block_pool.hpp).
    auto with_deadline() {
        return asio::bind_allocator(PoolAllocator<void>{},
                                    asio::bind_cancellation_slot(deadline_cancel_.slot(), use_tuple));
    }

    // "/" and `path` (an absolute-form target with an empty path), in upstream_head_: that buffer is
    // filled only later for this request (upstream_head()), so it can lend its capacity to routing.
    std::string_view slashed(std::string_view path) {
        upstream_head_.assign(1, '/').append(path);
        return upstream_head_;
    }

    // Waits for the next request over TLS. Readable bytes on the socket may be TLS records with nothing
    // for HTTP, and decrypted bytes may wait inside the TLS layer with the socket quiet: only a read can
    // tell. (Plain connections wait for readability, in run().)
    // Timed by the session's deadline, which a drain may bring forward (on_drain): the tcp_stream's
    // expiry applies only to reads started after it is set.
    asio::awaitable<bool> wait_readable_tls(std::chrono::milliseconds timeout) {
        client_.lowest().expires_never();
        arm_deadline(Clock::now() + timeout);
        auto [ec, n] = co_await client_.async_read_some(client_buf_.prepare(kReadChunk), with_deadline());
        disarm_deadline();
        client_buf_.commit(n);
        co_return !ec || n > 0;
    }

    // Where reading a request head stands: complete, failed (`error` to answer with), the client gone
    // (closed or reset before a complete head: nothing to answer), or waiting for more bytes.
    enum class HeadStep { done, error, gone, wait };

    // Takes a request head from what is buffered or already readable, without waiting: its bytes into
    // raw_head_, parsed into request_head_ (views of raw_head_: forwarded fields keep the client's
    // order and spelling).
    // Usually the whole head is in (run() waited for it): then no coroutine is needed for it at all
    // (a frame per request, benchmarks/profile); read_request_head waits for the rest.
    HeadStep take_request_head(http_rules::HeadScan& scan, std::optional<LocalError>& error) {
        const auto limit = listener_->config.limits.max_request_header_bytes;
        for (;;) {
            if (client_buf_.size() > 0) {
                const auto data = client_buf_.data();
                std::string_view bytes(static_cast<const char*>(data.data()), data.size());
                // Empty lines before a request line are ignored (RFC 9112 section 2.2): some clients
                // send a CRLF after a POST body. An endless run of them ends at request_headers.
                if (scan.scanned == 0 && bytes.starts_with("\r\n")) {
                    std::size_t crlf = 0;
                    while (bytes.substr(crlf, 2) == "\r\n") { crlf += 2; }
                    client_buf_.consume(crlf);
                    bytes.remove_prefix(crlf);
                    if (bytes.empty()) { continue; }
                }
                if (auto rejection = http_rules::scan_head(bytes, scan)) {
                    error = LocalError{400, LocalReason::bad_request, rejection->detail};
                    return HeadStep::error;
                }
                if ((scan.complete ? scan.scanned : bytes.size()) > limit) {
                    // A request line longer than the whole head may be is a request-target too long
                    // (RFC 9112 section 3: 414), not a field section.
                    error = bytes.substr(0, limit).find('\n') == std::string_view::npos
                                ? LocalError{414, LocalReason::uri_too_long, "request-target too long"}
                                : LocalError{431, LocalReason::headers_too_large, "request header too large"};
                    return HeadStep::error;
                }
                if (scan.complete) {
                    raw_head_.assign(bytes.substr(0, scan.scanned));
                    client_buf_.consume(scan.scanned);
                    bump(counters_->bytes_received, scan.scanned);   // bodies are counted as they are forwarded
                    if (auto rejection = http_rules::parse_request_head(raw_head_, request_head_)) {
                        error = LocalError{400, LocalReason::bad_request, std::move(rejection->detail)};
                        return HeadStep::error;
                    }
                    return HeadStep::done;
                }
            }
            if (client_.tls()) { return HeadStep::wait; }
            // Bytes already in are taken without arming the deadline or a trip through the scheduler.
            const auto space = client_buf_.prepare(kReadChunk);
            const ssize_t got = readiness::recv_now(client_.socket(), space);
            if (got > 0) {
                client_buf_.commit(static_cast<std::size_t>(got));
                continue;
            }
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                return HeadStep::gone;   // closed or reset, as a read would say
            }
            return HeadStep::wait;
        }
    }

    // The rest of a request head that take_request_head could not take without waiting, by `deadline`:
    // the session's deadline cancels the read and leaves the connection open, so the 408 can still be
    // sent (over TLS too: the TLS layer's read is cancelled, not the connection closed).
    asio::awaitable<HeadStep> read_request_head(http_rules::HeadScan& scan, Clock::time_point deadline,
                                                std::optional<LocalError>& error) {
        for (;;) {
            boost::system::error_code ec;
            std::size_t n = 0;
            arm_deadline(deadline);
            if (client_.tls()) {
                client_.lowest().expires_never();
                std::tie(ec, n) = co_await client_.async_read_some(client_buf_.prepare(kReadChunk), with_deadline());
            } else {
                // take_request_head found the socket drained: wait for its next edge, and let it read the
                // bytes (recv_now), so that the connection stays known drained (proxy/readiness.hpp).
                std::tie(ec) = co_await readiness::async_wait(client_.socket(), with_deadline());
            }
            disarm_deadline();
            if (deadline_fired_) {
                error = LocalError{408, LocalReason::request_header_timeout, "request header not received in time"};
                co_return HeadStep::error;
            }
            if (ec) { co_return HeadStep::gone; }
            client_buf_.commit(n);
            const auto step = take_request_head(scan, error);
            if (step != HeadStep::wait) { co_return step; }
        }
    }

    // One request/response exchange. Returns whether the client connection may carry another.
    asio::awaitable<bool> handle_request() {
        start_ = Clock::now();
        upstream_name_ = "-";
        const auto head_deadline = start_ + listener_->config.timeouts.request_headers;
        http_rules::HeadScan scan;
        std::optional<LocalError> head_error;
        auto step = take_request_head(scan, head_error);
        if (step == HeadStep::wait) { step = co_await read_request_head(scan, head_deadline, head_error); }
        if (step == HeadStep::error) {
            co_await send_local(*head_error, nullptr);
            co_return false;
        }
        if (step == HeadStep::gone) { co_return false; }

        const auto& request = request_head_;
        http_rules::RequestInfo info;
        http_rules::RequestLimits limits{listener_->config.limits.max_request_headers,
                                         listener_->config.limits.max_uri_bytes};
        if (auto rejection = http_rules::check_request(request, limits, info)) {
            const auto reason = rejection->status == 414   ? LocalReason::uri_too_long
                                : rejection->status == 431 ? LocalReason::headers_too_large
                                : rejection->status == 501 ? LocalReason::not_implemented
                                                           : LocalReason::bad_request;
            const LocalError local_error{rejection->status, reason, rejection->detail};
            co_await send_local(local_error, &request);
            co_return false;
        }
        request_keep_alive_ = info.keep_alive;
        const bool has_body = info.chunked || info.content_length.value_or(0) > 0;
        const auto max_body = listener_->config.limits.max_request_body_bytes;
        if (max_body > 0 && info.content_length && *info.content_length > max_body) {
            const LocalError local_error{413, LocalReason::body_too_large, "request body larger than the limit"};
            co_await send_local(local_error, &request);
            linger_ = true;
            co_return false;
        }

        auto cluster_index = worker_.router(listener_->index).match(
            info.host, info.path_lacks_slash ? slashed(info.path) : info.path);
        if (cluster_index && (*cluster_index & Router::kTemplate) != 0) {
            std::optional<LocalError> refused;
            cluster_index = co_await dynamic_cluster(*cluster_index & ~Router::kTemplate, info.host, has_body, refused);
            if (refused) {
                co_await send_local(*refused, &request);
                co_return !has_body && info.keep_alive;
            }
        }
        if (!cluster_index) {
            const LocalError local_error{404, LocalReason::no_route, "no route for this host and path", has_body};
            co_await send_local(local_error, &request);
            co_return !has_body && info.keep_alive;
        }
        auto& cluster = worker_.cluster(*cluster_index);
        const auto snapshot = cluster.snapshot;
        if (snapshot->stats->dynamic) {
            snapshot->stats->last_used_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        }
        const bool keep = co_await forward(info, cluster, *cluster_index);
        if (snapshot->stats->dynamic) {   // idle from the end of its last request, not the start
            snapshot->stats->last_used_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        }
        if (local_reply_) {
            co_await send_local(*local_reply_, &request);
            local_reply_.reset();
        }
        co_return keep;
    }

    // A name DNS can be asked for (RFC 1035 syntax, as hosts use it): at most 253 characters, labels of
    // 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen. Anything else
    // ("x..test", "-a.test", an IP literal in brackets) would take a cluster slot for nothing.
    static bool is_dns_name(std::string_view name) {
        if (name.empty() || name.size() > 253) { return false; }
        std::size_t start = 0;
        while (start <= name.size()) {
            const std::size_t dot = std::min(name.find('.', start), name.size());
            const std::string_view label = name.substr(start, dot - start);
            if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
                !std::all_of(label.begin(), label.end(), [](unsigned char c) { return std::isalnum(c) || c == '-'; })) {
                return false;
            }
            start = dot + 1;
        }
        return true;
    }

    // The cluster a template makes for this request's Host, made on first use by the control loop;
    // the first request waits (bounded) for its first DNS answer.
    asio::awaitable<std::optional<std::size_t>> dynamic_cluster(std::size_t template_index, std::string_view host,
                                                                bool has_body, std::optional<LocalError>& refused) {
        const std::string name = Router::normalize_host(host);
        if (!is_dns_name(name)) {
            refused = LocalError{404, LocalReason::no_route, "host is not a usable service name", has_body};
            co_return std::nullopt;
        }
        const std::string key = listener_->template_names[template_index] + "/" + name;
        if (auto index = worker_.find_dynamic(key)) {
            if (worker_.cluster(*index).snapshot->listed > 0) { co_return index; }
        } else if (worker_.dynamic_full(template_index)) {
            refused = LocalError{503, LocalReason::too_many_services,
                                 "too many services from this template (dynamic.max_clusters)", has_body};
            co_return std::nullopt;
        } else {
            worker_.request_dynamic(template_index, name);
        }
        co_await worker_.wait_dynamic(key, kDynamicResolveWait);
        auto index = worker_.find_dynamic(key);
        if (!index || worker_.cluster(*index).snapshot->listed == 0) {
            refused = LocalError{503, LocalReason::no_healthy_host, "service " + name + " has no hosts (not resolved)", has_body};
            co_return std::nullopt;
        }
        co_return index;
    }

    // The request head to send upstream, built into upstream_head_ (every try sends it).
    const std::string& upstream_head(const http_rules::RequestInfo& info) {
        http_heads::upstream_request(request_head_, info,
                                     {client_ip_, client_.tls() ? "https" : "http", &worker_.random(),
                                      info.host.empty() ? local_authority() : std::string_view(), client_cert_},
                                     upstream_head_);
        return upstream_head_;
    }

    // "ip:port" (IPv6 in brackets) the client connected to; empty if the socket cannot say. Only
    // for the rare request without a Host: kept in a buffer of the session (for the current head).
    std::string_view local_authority() {
        boost::system::error_code ec;
        const auto local = client_.socket().local_endpoint(ec);
        local_authority_.clear();
        if (ec) { return local_authority_; }
        const auto ip = local.address().to_string();
        local_authority_ = local.address().is_v6() ? fmt::format("[{}]:{}", ip, local.port())
                                                   : fmt::format("{}:{}", ip, local.port());
        return local_authority_;
    }

    // Whether a failed try may be tried again on another host: the request must be replayable (no
    // body bytes read yet, or an idempotent method with none), the cause listed in retries.on, tries
    // left, and the cluster's retry budget must allow it (checked last: a refusal is counted).
    struct RetryGate {
        const config::Cluster* config = nullptr;
        health::RetryBudget* budget = nullptr;
        ClusterStats* stats = nullptr;
        bool idempotent = false;
        std::size_t tries_left = 0;
        std::size_t untried = 0;   // eligible hosts not tried yet, besides the current one

        bool listed(config::RetryOn on) const {
            return std::find(config->retries.on.begin(), config->retries.on.end(), on) != config->retries.on.end();
        }
        // A cause that reached the backend (reset, timeout, 5xx): idempotent requests only. A reset may
        // also wait for a host to come back (the request is held); a timeout or a status needs another
        // host now, else the client gets this try's answer.
        bool possible(config::RetryOn on, bool replayable) const {
            return tries_left > 0 && (untried > 0 || on == config::RetryOn::reset) && idempotent && replayable &&
                   listed(on);
        }
        bool take(config::RetryOn on, bool replayable) {
            if (!possible(on, replayable)) { return false; }
            if (!budget->try_acquire_retry(Clock::now())) {
                stats->retries_budget_exhausted.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            stats->retries.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
    };

    static bool idempotent(http_rules::Method method) {
        using http_rules::Method;
        switch (method) {
            case Method::get:
            case Method::head:
            case Method::options:
            case Method::trace:
            case Method::put:
            case Method::delete_: return true;
            default: return false;
        }
    }

    // Chooses hosts and sends the request. A connect failure goes on to another host at once; a reset,
    // timeout or retryable 5xx of an idempotent request is tried again on another host within the retry
    // budget, after a short jittered backoff; a dead pooled connection is retried once on a fresh one.
    // While no host can take the request it is held (up to hold_timeout) until the cluster changes.
    asio::awaitable<bool> forward(const http_rules::RequestInfo& info, WorkerCluster& cluster, std::size_t cluster_index) {
        const auto& request = request_head_;
        auto snapshot = cluster.snapshot;
        // Held for the whole request: `snapshot` is re-read while holding or waiting, and a reload may
        // give the new one a new config. This request keeps the settings it started with.
        const std::shared_ptr<const config::Cluster> config_holder = snapshot->config;
        const std::shared_ptr<ClusterStats> stats_holder = snapshot->stats;
        const auto& config = *config_holder;
        auto* stats = stats_holder.get();
        const std::string& head = upstream_head(info);
        const bool has_body = info.chunked || info.content_length.value_or(0) > 0;
        const auto hold_deadline = start_ + config.hold_timeout;
        auto& tried = tried_;   // members, not frame locals: see local_reply_
        tried.clear();
        unsent_.reset();   // what the request before may have left (pipelined, or TLS: no begin() between)
        hold_expired_ = false;
        client_left_ = false;
        held_ = false;
        // Tries that reached a backend. Unlike `tried`, not cleared when a hold ends: a request that
        // makes its host reset is sent 1 + retries.attempts times at most, however often the cluster
        // changes while it waits (else it would be replayed on every change, the budget bypassed).
        std::size_t sent = 0;
        bool retried_stale = false;
        bool after_connect_failure = false;   // the last try's connect failed: the next is a retry
        // Holding (no host available) is for requests no backend has acted on: nothing was sent yet, or
        // every try so far ended by connection failure or reset and the request is idempotent.
        bool holdable = true;
        const auto key = hash_key(request, config);

        // Admission: the cluster's request breaker first, then each host's cap at every choice. Past
        // them a request waits up to queue_timeout for a slot, then is shed: 503, drover-error: shed.
        const bool low_priority = http_rules::iequals(info.priority.value, "low");
        // From now, not from the request's arrival: a slow head must not use up the wait for a slot.
        const auto queue_deadline = Clock::now() + config.limits.queue_timeout;
        if (g_pressure.memory.load(std::memory_order_relaxed)) {
            stats->shed_memory.fetch_add(1, std::memory_order_relaxed);
            co_return reply_locally(shed_error(cluster, *stats, config, "the process is near its memory limit", has_body),
                                    !has_body && info.keep_alive);
        }
        const auto cluster_slot_free = [stats, &config] { return take_cluster_slot(*stats, config.limits.max_requests); };
        if (!cluster_slot_free()) {
            // Slots given back are granted in arrival order across workers (GrantQueue).
            const auto wake_target = std::make_shared<std::weak_ptr<asio::steady_timer>>();
            GrantQueueEntry queued(stats->request_waiters, &worker_.context(), grant_wake(wake_target),
                                   [stats] { release_cluster_slot(*stats); });
            grant_wake_target_ = wake_target.get();
            const bool shed = co_await admit(cluster, *stats, config, low_priority, queue_deadline, has_body,
                                             [&] { return queued.take_grant() || cluster_slot_free(); },
                                             stats->shed_max_requests, "cluster at limits.max_requests");
            grant_wake_target_ = nullptr;
            if (shed) { co_return !client_left_ && !has_body && info.keep_alive; }
        }
        struct ClusterSlot {
            ClusterStats* stats;
            WorkerCluster* cluster;
            ~ClusterSlot() {
                release_cluster_slot(*stats);
                cluster->wake_one_slot_waiter();
            }
        } cluster_slot{stats, &cluster};
        if (cluster.limiter) {
            const auto limiter_slot_free = [&cluster] { return cluster.limiter->try_acquire(); };
            if (!limiter_slot_free()) {
                if (co_await admit(cluster, *stats, config, low_priority, queue_deadline, has_body, limiter_slot_free,
                                   stats->shed_adaptive, "at the adaptive concurrency limit")) {
                    co_return !client_left_ && !has_body && info.keep_alive;
                }
            }
        }
        // Teaches the limiter how this request went (only if it got a slot; see limiter_verdict_).
        LimiterSlot limiter_slot{&cluster, stats, Clock::now(), this};
        limiter_verdict_ = LimiterVerdict::ignore;
        tunnel_start_ = {};
        auto& full = full_;
        auto& excluded = excluded_;
        full.clear();
        bool waiting_for_host = false;
        // Each wait for a host below its cap has queue_timeout of its own: a request held while every
        // host was down, or retried after a hung host's per_try_timeout, has spent the first one.
        Clock::time_point host_wait_deadline{};
        Clock::time_point host_next_look{};   // when to look again whether the client left (left_while_waiting)
        // While waiting for a host under its cap, the request's place among the cluster's waiters (all
        // workers, oldest first), and a slot a finished request granted it (a host's, still counted).
        const auto per_host_cap = config.limits.max_requests_per_host;
        std::optional<GrantQueueEntry> host_queue;
        std::shared_ptr<std::weak_ptr<asio::steady_timer>> host_wake_target;
        struct GrantedHost {
            ClusterStats* stats;
            std::uint64_t cap;
            std::shared_ptr<const discovery::Host> host;
            ~GrantedHost() { give_back(); }
            void give_back() {
                if (host) { release_host_slot(*stats, std::exchange(host, nullptr), cap); }
            }
        } granted_host{stats, per_host_cap, nullptr};

        const auto budget = cluster.budget;   // a reload may replace the worker's; this request keeps its own
        budget->on_request(start_);
        RetryGate gate{&config, budget.get(), stats, idempotent(request.verb), config.retries.attempts};
        std::uint32_t backoff_step = 0;

        while (!aborted_) {
            excluded.assign(tried.begin(), tried.end());
            excluded.insert(excluded.end(), full.begin(), full.end());
            const HostEntry* entry = nullptr;
            bool granted = false;
            if (granted_host.host) {
                // A slot granted while waiting: taken if its host may still have this request.
                for (const auto& candidate : snapshot->hosts) {
                    if (candidate.host == granted_host.host && tried.size() <= config.retries.attempts &&
                        std::find(tried.begin(), tried.end(), candidate.host.get()) == tried.end()) {
                        entry = &candidate;
                    }
                }
                if (entry != nullptr) {
                    granted_host.host.reset();   // HostSlot holds it from here
                    granted = true;
                } else {
                    granted_host.give_back();
                }
            }
            if (entry == nullptr && tried.size() <= config.retries.attempts) {
                entry = cluster.balancer->choose(*snapshot, {excluded, key});
            }
            if (!granted && entry != nullptr && !host_has_room(*entry->host, per_host_cap)) {
                full.push_back(entry->host.get());
                continue;
            }
            if (entry == nullptr && !full.empty()) {
                // Every host left is at its cap: wait for one to finish a request, up to queue_timeout.
                // Slots are granted oldest first across workers (ClusterStats::host_waiters).
                static constexpr std::string_view kHostsFull = "every host is at limits.max_requests_per_host";
                if (!waiting_for_host) {
                    if (auto shed = start_waiting(*stats, config, low_priority, has_body, cluster,
                                                  stats->shed_host_capacity, kHostsFull)) {
                        co_return reply_locally(std::move(*shed), !has_body && info.keep_alive);
                    }
                    waiting_for_host = true;
                    host_wait_deadline = Clock::now() + config.limits.queue_timeout;
                    host_next_look = Clock::now() + kWaitingClientCheck;
                }
                if (Clock::now() >= host_wait_deadline) {
                    stats->pending_active.fetch_sub(1, std::memory_order_relaxed);
                    stats->shed_host_capacity.fetch_add(1, std::memory_order_relaxed);
                    co_return reply_locally(shed_error(cluster, *stats, config, kHostsFull, has_body),
                                            !has_body && info.keep_alive);
                }
                if (!host_queue) {
                    host_wake_target = std::make_shared<std::weak_ptr<asio::steady_timer>>();
                    host_queue.emplace(stats->host_waiters, &worker_.context(), grant_wake(host_wake_target),
                                       [stats, per_host_cap](std::shared_ptr<const void> unit) {
                                           release_host_slot(*stats, std::static_pointer_cast<const discovery::Host>(unit),
                                                             per_host_cap);
                                       });
                }
                grant_wake_target_ = host_wake_target.get();
                co_await wait_slot(cluster, host_wait_deadline);
                grant_wake_target_ = nullptr;
                if (left_while_waiting(host_next_look)) {
                    stats->pending_active.fetch_sub(1, std::memory_order_relaxed);
                    co_return false;
                }
                if (std::shared_ptr<const void> unit; host_queue->take_grant(&unit)) {
                    // Granted, the request has left the queue: it joins again (last) if it must wait on.
                    granted_host.host = std::static_pointer_cast<const discovery::Host>(std::move(unit));
                    host_queue.reset();
                }
                full.clear();
                snapshot = cluster.snapshot;
                continue;
            }
            if (waiting_for_host) {
                stats->pending_active.fetch_sub(1, std::memory_order_relaxed);
                waiting_for_host = false;
            }
            host_queue.reset();   // a grant that came meanwhile goes to the next waiter
            full.clear();
            if (entry == nullptr) {
                // Holding helps only if something may bring a host back: discovery (nothing listed or
                // eligible yet), checks, or the end of an ejection.
                const bool may_recover = tried.empty() || config.health_check.enabled || config.outlier_detection.enabled;
                if (holdable && may_recover && co_await hold(cluster, cluster_index, snapshot, hold_deadline)) {
                    tried.clear();
                    continue;
                }
                break;
            }
            if (after_connect_failure) {
                stats->retries_connect_failure.fetch_add(1, std::memory_order_relaxed);
                log::debug("cluster {}: retrying on {} after a failed connect", config.name, entry->host->name());
                after_connect_failure = false;
            }
            const auto host = entry->host;   // a copy: the snapshot may be replaced while we wait
            upstream_name_ = host->name();
            // In flight on this host from its choice to the end of the exchange: what least_request
            // weighs hosts by and max_requests_per_host caps.
            HostSlot host_slot{host, &cluster, stats, per_host_cap, granted};

            bool reused = false;
            // A request that could not simply go again has the pool check the connection with a
            // syscall rather than trust what the reactor last reported (UpstreamPool::take).
            const bool verify = has_body || !gate.idempotent;
            const auto take_pooled = [&] {
                if (retried_stale) { return false; }
                auto pooled = worker_.pool().take(*host, snapshot->tls.get(), verify);
                if (!pooled) { return false; }
                upstream_ = std::move(pooled);
                reused = true;
                host->stats().pool_reuses.fetch_add(1, std::memory_order_relaxed);
                return true;
            };
            auto& places = stats->connections;
            if (!take_pooled() && !reserve_connection(places, config.limits.max_connections)) {
                // At limits.max_connections: an idle pooled connection of the cluster (to another host)
                // is closed for the place, else the request waits up to queue_timeout for a place
                // given back (granted in arrival order across workers: ConnectionBudget), or for a
                // connection to this host to come back to the pool.
                const auto room = [&] {
                    return take_pooled() || reserve_connection(places, config.limits.max_connections) ||
                           (worker_.pool().close_idle(places) && reserve_connection(places, config.limits.max_connections));
                };
                if (!room()) {
                    const auto wake_target = std::make_shared<std::weak_ptr<asio::steady_timer>>();
                    PlaceQueueEntry queued(places, &worker_.context(), grant_wake(wake_target));
                    grant_wake_target_ = wake_target.get();
                    if (worker_.close_idle_elsewhere) {
                        worker_.close_idle_elsewhere(std::shared_ptr<ConnectionBudget>(stats_holder, &places));
                    }
                    const bool shed = co_await admit(cluster, *stats, config, low_priority, Clock::now() + config.limits.queue_timeout,
                                                     has_body, [&] { return queued.take_grant() || room() || queued.take_grant(); },
                                                     stats->shed_max_connections, "cluster at limits.max_connections");
                    grant_wake_target_ = nullptr;
                    if (shed) { co_return !client_left_ && !has_body && info.keep_alive; }
                }
            }
            if (!reused) {
                // Counted from here: whatever closes the connection gives the place back.
                upstream_ = std::make_unique<Stream>(beast::tcp_stream(worker_.context()));
                upstream_->count_in(ConnectionToken(std::shared_ptr<ConnectionBudget>(stats_holder, &places)));
                auto ec = co_await connect_upstream(*host, snapshot->tls, config.timeouts.connect);
                if (ec && health::is_local_shortage(ec)) {
                    // Drover has no descriptor (or buffer) for the connection: its own shortage, not the
                    // host's failure, and another host would fare no better. Shed, as when out of memory.
                    upstream_.reset();
                    stats->shed_descriptors.fetch_add(1, std::memory_order_relaxed);
                    co_return reply_locally(
                        shed_error(cluster, *stats, config, "no file descriptor left for the upstream connection", has_body),
                        !has_body && info.keep_alive);
                }
                if (ec) {
                    host->stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
                    log::debug("cluster {}: {}", config.name, last_connect_error_);
                    report(*snapshot, host, ec == beast::error::timeout ? health::Outcome::timeout : health::Outcome::connect_failed);
                    upstream_.reset();
                    host_slot.release();
                    tried.push_back(host.get());
                    // Nothing reached the backend: always safe to try another host, and not budgeted
                    // (counted as a retry once another host is tried).
                    after_connect_failure = true;
                    continue;
                }
                host->stats().connections_total.fetch_add(1, std::memory_order_relaxed);
                host->stats().connections_active.fetch_add(1, std::memory_order_relaxed);
            }

            body_consumed_ = false;
            unsent_.reset();
            attempt_failure_ = health::Outcome::success;
            retry_after_.reset();
            // A retry needs tries left and a host not tried yet (this one is about to be).
            // (Counted, not searched: excluded hosts come from this snapshot but for the rare one that left.)
            const std::size_t untried = snapshot->hosts.size() - std::min(snapshot->hosts.size(), excluded.size());
            gate.untried = untried > 0 ? untried - 1 : 0;
            gate.tries_left =
                config.retries.attempts - std::min<std::size_t>(config.retries.attempts, std::max(tried.size(), sent));
            const bool replayable = !has_body;
            // Every try of a request retries may cover (idempotent, no body) is cut at per_try_timeout, the
            // last one too; others have the whole request timeout.
            // timeouts.request runs from sending the request (exchange() starts it again once a body
            // is all sent: an upload's own time is bounded by timeouts.idle between its pieces).
            const auto attempt_start = Clock::now();
            per_try_deadline_ = attempt_start + config.timeouts.request;
            if (gate.idempotent && replayable) {
                per_try_deadline_ = std::min(per_try_deadline_, attempt_start + config.retries.per_try_timeout);
            }
            gate_ = &gate;
            const Outcome outcome = co_await exchange(info, head, host, config);
            // An upgraded connection's try ended with the 101: what followed was the tunnel's life.
            attempt_end_ = tunnel_start_ != Clock::time_point{} ? tunnel_start_ : Clock::now();
            host_slot.release();
            gate_ = nullptr;
            if (outcome == Outcome::retryable_status && worker_.index() < stats->latency.size()) {
                // A 502/503/504 tried again elsewhere: the host answered, in this time.
                stats->latency[worker_.index()]->add(
                    std::chrono::duration_cast<std::chrono::microseconds>(attempt_end_ - attempt_start));
            }
            if (outcome == Outcome::ok) {
                const auto elapsed = attempt_end_ - attempt_start;
                const double seconds = std::chrono::duration<double>(elapsed).count();
                // Seeded by the first exchange: from 0, a shed's Retry-After (from this average) stayed
                // far too short for the first dozens of requests after a start or reload.
                cluster.latency_ewma_seconds = cluster.latency_ewma_seconds == 0.0
                                                   ? seconds
                                                   : cluster.latency_ewma_seconds + kLatencyWeight * (seconds - cluster.latency_ewma_seconds);
                if (worker_.index() < stats->latency.size()) {
                    stats->latency[worker_.index()]->add(std::chrono::duration_cast<std::chrono::microseconds>(elapsed));
                }
            }
            limiter_verdict_ = outcome == Outcome::ok && attempt_failure_ == health::Outcome::success ? LimiterVerdict::ok
                               : outcome == Outcome::client_gone                                       ? LimiterVerdict::ignore
                                                                                                       : LimiterVerdict::failed;

            if (outcome == Outcome::reset_before_response && reused && !body_consumed_ && !retried_stale) {
                // A keep-alive connection the backend had already closed: once more on a fresh one.
                retried_stale = true;
                continue;
            }
            retried_stale = false;
            if (retry_after_ && snapshot->reporter) { snapshot->reporter->overloaded(host, *retry_after_); }
            report(*snapshot, host, attempt_failure_);
            tried.push_back(host.get());
            ++sent;
            if (held_ && outcome == Outcome::ok) { stats->held_served.fetch_add(1, std::memory_order_relaxed); }

            std::optional<config::RetryOn> cause;
            if (outcome == Outcome::retryable_status) {
                holdable = false;
                co_await backoff(backoff_step++);
                continue;   // the gate was taken when the status was seen
            }
            if (outcome == Outcome::reset_before_response) {
                cause = config::RetryOn::reset;
                if (!unsent_) {
                    unsent_ = LocalError{502, LocalReason::bad_upstream_response,
                                         "backend " + host->name() + " closed the connection before responding"};
                }
            } else if (outcome == Outcome::timeout) {
                cause = config::RetryOn::timeout;
            } else if (outcome == Outcome::bad_response && unsent_) {
                cause = config::RetryOn::status_502;
            }
            holdable = outcome == Outcome::reset_before_response && gate.idempotent && !has_body;
            if (cause && unsent_) {
                if (gate.take(*cause, !has_body || !body_consumed_)) {
                    log::debug("cluster {}: retrying on another host after {} from {}", config.name,
                               unsent_->detail, host->name());
                    co_await backoff(backoff_step++);
                    continue;
                }
                // Out of tries or budget: this try's answer. (A reset with tries and budget left but
                // no host left to try was taken above: it holds for one to come back.)
                co_return reply_unsent(has_body, info.keep_alive);
            }
            co_return outcome == Outcome::ok && keep_client_;
        }
        if (waiting_for_host) { stats->pending_active.fetch_sub(1, std::memory_order_relaxed); }   // aborted while waiting
        if (aborted_ || client_left_) { co_return false; }
        if (unsent_) {
            // A reset taken for retry found no host to go to, even after holding: the try's own answer.
            co_return reply_unsent(has_body, info.keep_alive);
        }
        // Every host refused or timed out the connection. Answered at once (no hold: hold_timeout 0s,
        // or max_pending requests already held) that is the gateway's failure to connect, 502; after
        // waiting out hold_timeout for one to come back, the service is unavailable: 503 with
        // Retry-After, as when no host was eligible at all (all down in panic, use_all, ends here).
        LocalError local_error{503, LocalReason::no_healthy_host,
                               "no host of cluster " + config.name + " is available", has_body};
        if (!tried.empty()) {
            local_error = LocalError{hold_expired_ ? 503 : 502,
                                     hold_expired_ ? LocalReason::no_healthy_host : LocalReason::upstream_connect_failed,
                                     "no host of cluster " + config.name + " accepted a connection (last: " +
                                         last_connect_error_ + ")",
                                     has_body};
        }
        local_error.retry_after = cluster.snapshot->retry_after_seconds;
        co_return reply_locally(std::move(local_error), !has_body && info.keep_alive);
    }

    // Waits, while no host can take the request, for the cluster to change (a host passing a check, an
    // ejection ending, discovery), until `deadline`. Returns whether to try again (with `snapshot` fresh).
    asio::awaitable<bool> hold(WorkerCluster& cluster, std::size_t cluster_index,
                               std::shared_ptr<const ClusterSnapshot>& snapshot, Clock::time_point deadline) {
        auto* stats = snapshot->stats.get();
        const auto now = Clock::now();
        if (now >= deadline || worker_.draining()) { co_return false; }
        if (stats->held_active.fetch_add(1, std::memory_order_relaxed) >=
            static_cast<std::int64_t>(snapshot->config->limits.max_pending)) {
            stats->held_active.fetch_sub(1, std::memory_order_relaxed);
            stats->held_rejected_full.fetch_add(1, std::memory_order_relaxed);
            co_return false;
        }
        stats->held_total.fetch_add(1, std::memory_order_relaxed);
        const auto version = snapshot->version;
        auto next_look = now + kWaitingClientCheck;
        while (!aborted_ && !cluster.retired && cluster.snapshot->version == version && Clock::now() < deadline) {
            const auto until = std::min(deadline, next_look);
            co_await worker_.wait_snapshot(cluster_index, std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()));
            if (left_while_waiting(next_look)) {
                stats->held_active.fetch_sub(1, std::memory_order_relaxed);
                stats->held_client_left.fetch_add(1, std::memory_order_relaxed);
                co_return false;
            }
        }
        stats->held_active.fetch_sub(1, std::memory_order_relaxed);
        snapshot = cluster.snapshot;
        if (aborted_ || snapshot->version == version) {
            stats->held_timed_out.fetch_add(1, std::memory_order_relaxed);
            hold_expired_ = true;
            co_return false;
        }
        held_ = true;   // counted as served if a backend answers it in the end (forward)
        co_return true;
    }

    // Jittered exponential backoff between tries: uniform in [0, 25 ms x 2^step], at most 250 ms, so
    // retries of many requests that failed together do not arrive together.
    asio::awaitable<void> backoff(std::uint32_t step) {
        const auto cap = std::min<std::int64_t>(250, std::int64_t{25} << std::min<std::uint32_t>(step, 4));
        const auto wait = std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(0, cap)(worker_.random()));
        if (wait.count() == 0) { co_return; }
        asio::steady_timer timer(worker_.context(), wait);
        co_await timer.async_wait(use_tuple);
    }

    // A host's in-flight count held by one try (taken here, or `granted` by a request that finished);
    // released once (at the end of the try or on scope exit): granted to the oldest request waiting for
    // a host under max_requests_per_host, and a request of this worker waiting for a slot is woken.
    struct HostSlot {
        const std::shared_ptr<const discovery::Host>* host;   // the caller's, which outlives the slot
        WorkerCluster* cluster;
        ClusterStats* stats;
        std::uint64_t cap;
        HostSlot(const std::shared_ptr<const discovery::Host>& h, WorkerCluster* c, ClusterStats* s, std::uint64_t per_host,
                 bool granted)
            : host(&h), cluster(c), stats(s), cap(per_host) {
            if (!granted) { (*host)->stats().requests_active.fetch_add(1, std::memory_order_relaxed); }
        }
        HostSlot(const HostSlot&) = delete;
        HostSlot& operator=(const HostSlot&) = delete;
        ~HostSlot() { release(); }
        void release() {
            if (host == nullptr) { return; }
            release_host_slot(*stats, *host, cap);
            host = nullptr;
            cluster->wake_one_slot_waiter();
        }
    };

    // What a finished request teaches the adaptive limiter: its latency, a failure (timeout, reset, 5xx:
    // a sign of overload), or nothing (it never reached a backend, or the client left).
    enum class LimiterVerdict : std::uint8_t { ignore, ok, failed };
    struct LimiterSlot {
        WorkerCluster* cluster;
        ClusterStats* stats;
        Clock::time_point admitted;
        HttpSession* session;
        std::shared_ptr<health::ConcurrencyLimiter> limiter;   // the one the slot came from
        LimiterSlot(WorkerCluster* c, ClusterStats* s, Clock::time_point at, HttpSession* owner)
            : cluster(c), stats(s), admitted(at), session(owner), limiter(c->limiter) {
            session->limiter_slot_ = this;
        }
        LimiterSlot(const LimiterSlot&) = delete;
        LimiterSlot& operator=(const LimiterSlot&) = delete;
        ~LimiterSlot() {
            session->limiter_slot_ = nullptr;
            // The slot is released as its last try ends (no clock read), or now if none was made.
            release(session->attempt_end_ > admitted ? session->attempt_end_ : Clock::now(), session->limiter_verdict_);
        }
        // Released at `now`, once: at the end of the request, or when its connection is upgraded (the
        // tunnel that follows is no request in flight: a few long WebSockets must not hold the limit).
        void release(Clock::time_point now, LimiterVerdict verdict) {
            if (!limiter) { return; }
            switch (verdict) {
                case LimiterVerdict::ignore: limiter->release_ignored(); break;
                case LimiterVerdict::ok: limiter->release(now, now - admitted, true); break;
                case LimiterVerdict::failed: limiter->release(now, now - admitted, false); break;
            }
            // A reload may have replaced the worker's limiter meanwhile: only the current one publishes.
            if (limiter == cluster->limiter && limiter->cap() != cluster->published_limit) {
                stats->concurrency_limit.fetch_add(static_cast<std::int64_t>(limiter->cap()) - cluster->published_limit,
                                                   std::memory_order_relaxed);
                cluster->published_limit = limiter->cap();
            }
            limiter.reset();
            cluster->wake_one_slot_waiter();
        }
    };

    // After `try_take` found no admission slot: waits up to `deadline` for one, taking it with `try_take`
    // (at most max_pending requests wait). Past it, or when too many wait, returns true with the shed
    // answer in local_reply_, counted in `shed_counter`. The caller tries first, so an admitted request
    // makes no coroutine frame here (benchmarks/profile).
    template <class TryTake>
    asio::awaitable<bool> admit(WorkerCluster& cluster, ClusterStats& stats, const config::Cluster& config, bool low_priority,
                                Clock::time_point deadline, bool has_body, TryTake try_take,
                                std::atomic<std::uint64_t>& shed_counter, std::string_view why) {
        if (auto shed = start_waiting(stats, config, low_priority, has_body, cluster, shed_counter, why)) {
            co_return reply_locally(std::move(*shed), true);
        }
        auto next_look = Clock::now() + kWaitingClientCheck;
        do {
            if (Clock::now() >= deadline) {
                stats.pending_active.fetch_sub(1, std::memory_order_relaxed);
                shed_counter.fetch_add(1, std::memory_order_relaxed);
                co_return reply_locally(shed_error(cluster, stats, config, why, has_body), true);
            }
            co_await wait_slot(cluster, deadline);
            if (left_while_waiting(next_look)) {
                stats.pending_active.fetch_sub(1, std::memory_order_relaxed);
                co_return true;
            }
        } while (!try_take());
        stats.pending_active.fetch_sub(1, std::memory_order_relaxed);
        co_return false;
    }

    // A request found no slot (`why`; counted in `shed_counter` if it is shed for it): it may wait unless
    // it is low priority, queue_timeout is 0, or max_pending already wait.
    std::optional<LocalError> start_waiting(ClusterStats& stats, const config::Cluster& config, bool low_priority,
                                            bool has_body, const WorkerCluster& cluster,
                                            std::atomic<std::uint64_t>& shed_counter, std::string_view why) {
        if (low_priority) {
            stats.shed_low_priority.fetch_add(1, std::memory_order_relaxed);
            return shed_error(cluster, stats, config, "no free slot for a low-priority request", has_body);
        }
        if (config.limits.queue_timeout <= std::chrono::milliseconds::zero()) {
            shed_counter.fetch_add(1, std::memory_order_relaxed);
            return shed_error(cluster, stats, config, why, has_body);
        }
        if (stats.pending_active.fetch_add(1, std::memory_order_relaxed) >= static_cast<std::int64_t>(config.limits.max_pending)) {
            stats.pending_active.fetch_sub(1, std::memory_order_relaxed);
            stats.shed_queue_full.fetch_add(1, std::memory_order_relaxed);
            return shed_error(cluster, stats, config, "limits.max_pending requests are waiting already", has_body);
        }
        return std::nullopt;
    }

    // A GrantQueue waiter's wake: the grant is posted to this worker, where it ends the wait's timer.
    std::function<void()> grant_wake(const std::shared_ptr<std::weak_ptr<asio::steady_timer>>& target) {
        return [worker = &worker_, target] {
            worker->post([target] {
                if (auto timer = target->lock()) { timer->cancel(); }
            });
        };
    }

    // Waits for a request of this worker to end (it wakes the oldest waiter), or a short poll: slots
    // freed by other workers are only seen by looking again.
    asio::awaitable<void> wait_slot(WorkerCluster& cluster, Clock::time_point deadline) {
        auto timer = std::make_shared<asio::steady_timer>(worker_.context(), std::min(deadline, Clock::now() + kSlotPoll));
        cluster.slot_waiters.push_back(timer);
        if (grant_wake_target_ != nullptr) { *grant_wake_target_ = timer; }   // a grant wakes it too
        co_await timer->async_wait(use_tuple);
    }

    // The try's own failure (502, 504) as the answer. A request without a body was read whole, so the
    // client's connection goes on, as NGINX's does (a client pool need not reconnect after every
    // backend failure); with a body, part of it may be unread: close.
    bool reply_unsent(bool has_body, bool keep_alive) {
        unsent_->close = has_body || !keep_alive;
        return reply_locally(*unsent_, !unsent_->close);
    }

    // Leaves `error` for handle_request to send (local_reply_) and returns `result`.
    bool reply_locally(LocalError error, bool result) {
        local_reply_ = std::move(error);
        return result;
    }

    // 503 shed, with a Retry-After from what is queued and how fast requests finish: the time for the
    // waiting requests to drain through the cluster's slots, in whole seconds (1 to 30).
    static LocalError shed_error(const WorkerCluster& cluster, const ClusterStats& stats, const config::Cluster& config,
                                 std::string_view why, bool has_body) {
        const auto& limits = config.limits;
        // Requests in flight are bounded by each of these (every one holds an upstream connection).
        std::uint64_t slots = std::min<std::uint64_t>(
            std::min(limits.max_requests, limits.max_connections), limits.max_requests_per_host > 0
                                     ? limits.max_requests_per_host * std::max<std::size_t>(1, cluster.snapshot->hosts.size())
                                     : limits.max_requests);
        if (cluster.limiter) { slots = std::min<std::uint64_t>(slots, std::max<std::uint32_t>(1, cluster.limiter->cap())); }
        LocalError error{503, LocalReason::shed, fmt::format("overloaded, request shed: {}", why), has_body};
        error.retry_after = shed_retry_after(stats.pending_active.load(std::memory_order_relaxed), slots,
                                             cluster.latency_ewma_seconds);
        return error;
    }

    static bool request_has_body(const http_rules::RequestInfo& info) {
        return info.chunked || info.content_length.value_or(0) > 0;
    }

    static config::RetryOn retry_on_status(unsigned status) {
        return status == 502 ? config::RetryOn::status_502
               : status == 503 ? config::RetryOn::status_503
                               : config::RetryOn::status_504;
    }

    // What a response status says about its host. "Overloaded is not dead": a 429, or a 503 with
    // Retry-After, lowers the host's share for that long instead of counting toward its ejection.
    void note_status(unsigned status, std::string_view retry_after) {
        if (status == 429 || (status == 503 && !retry_after.empty())) {
            std::uint32_t seconds = 0;
            const auto* end = retry_after.data() + retry_after.size();
            // Delay-seconds; an HTTP-date (rare from a backend) counts as 0: the minimum back-off.
            if (std::from_chars(retry_after.data(), end, seconds).ptr != end) { seconds = 0; }
            retry_after_ = std::chrono::milliseconds(std::chrono::seconds(seconds));
        } else if (status >= 500) {
            attempt_failure_ = health::Outcome::status_5xx;
        }
    }

    static void report(const ClusterSnapshot& snapshot, const std::shared_ptr<const discovery::Host>& host, health::Outcome outcome) {
        if (snapshot.reporter) { snapshot.reporter->report(host, outcome); }
    }

    // Maglev's key: the configured header or cookie, else the client's address. Absent -> no key, and
    // the policy picks at random (a request without the header has no affinity to keep).
    std::optional<std::uint64_t> hash_key(const http_rules::Head& request, const config::Cluster& config) const {
        if (config.load_balancing != config::LbPolicy::maglev) { return std::nullopt; }
        using Kind = config::HashPolicy::Kind;
        const Kind kind = config.hash ? config.hash->kind : Kind::source_ip;
        if (kind == Kind::source_ip) { return hash_address(client_remote_.address()); }
        if (kind == Kind::header) {
            const auto value = request.find(config.hash->name);
            if (value.empty()) { return std::nullopt; }
            return hash_bytes(value);
        }
        for (const auto& field : request.fields) {
            if (field.id != http_rules::FieldId::cookie) { continue; }
            std::string_view cookies = field.value;
            while (!cookies.empty()) {
                const auto semi = cookies.find(';');
                auto pair = cookies.substr(0, semi);
                while (!pair.empty() && pair.front() == ' ') { pair.remove_prefix(1); }
                const auto eq = pair.find('=');
                if (eq != std::string_view::npos && pair.substr(0, eq) == config.hash->name) {
                    return hash_bytes(pair.substr(eq + 1));
                }
                if (semi == std::string_view::npos) { break; }
                cookies.remove_prefix(semi + 1);
            }
        }
        return std::nullopt;
    }

    // Connects `upstream_` to `host` and, for a TLS cluster, does the handshake, both within `timeout`
    // each. On failure last_connect_error_ says what went wrong.
    asio::awaitable<boost::system::error_code> connect_upstream(const discovery::Host& host,
                                                                const std::shared_ptr<const health::TlsClient>& tls,
                                                                std::chrono::milliseconds timeout) {
        upstream_->lowest().expires_after(timeout);
        auto [ec] = co_await upstream_->lowest().async_connect(host.address(), use_tuple);
        if (ec) {
            last_connect_error_ = fmt::format("connect to {} failed: {}", host.name(),
                                              ec == beast::error::timeout ? "timed out" : ec.message());
            co_return ec;
        }
        configure_upstream(upstream_->socket());
        if (!tls) {
            upstream_->socket().non_blocking(true, ec);   // written to without waiting (write_now)
            readiness::watch(upstream_->socket(), true);   // nothing to read before the request goes
            co_return boost::system::error_code();
        }
        upstream_->start_tls_client(tls, host.name());
        upstream_->lowest().expires_after(timeout);
        std::tie(ec) = co_await upstream_->async_handshake(use_tuple);
        if (ec) {
            last_connect_error_ = fmt::format("TLS handshake with {} failed: {}", host.name(),
                                              health::describe_handshake_error(ec, tls->settings().verify ? upstream_->native_ssl() : nullptr));
        }
        co_return ec;
    }

    void close_upstream(const std::shared_ptr<const discovery::Host>& host) {
        if (!upstream_) { return; }
        boost::system::error_code ignored;
        upstream_->socket().close(ignored);
        upstream_.reset();
        host->stats().connections_active.fetch_sub(1, std::memory_order_relaxed);
    }

    // Writes the head and body to the upstream, then relays the response. Sends the client an answer
    // in every case except a stale pooled connection (which the caller retries).
    asio::awaitable<Outcome> exchange(const http_rules::RequestInfo& info, const std::string& head,
                                      const std::shared_ptr<const discovery::Host>& host, const config::Cluster& config) {
        const auto& request = request_head_;
        const bool has_body = info.chunked || info.content_length.value_or(0) > 0;
        request_cut_ = false;
        body_write_stalled_ = false;
        // Plain writes do not use the tcp_stream's timer (stream.hpp): setting it is for TLS only.
        if (upstream_->tls()) { upstream_->lowest().expires_at(per_try_deadline_); }
        boost::system::error_code write_ec;
        if (const std::size_t now = write_now(*upstream_, asio::buffer(head), write_ec); !write_ec && now < head.size()) {
            std::tie(write_ec, std::ignore) =
                co_await asio::async_write(*upstream_, asio::buffer(head.data() + now, head.size() - now), use_tuple);
        }
        if (write_ec) {
            if (upstream_->tls()) { co_await read_tls_alert(*host); }
            close_upstream(host);
            co_return Outcome::reset_before_response;
        }
        if (has_body) {
            if (info.expect_continue && request.version == 11) {
                static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
                co_await write_client(asio::buffer(kContinue), listener_->config.timeouts.idle);
            }
            Outcome sent = co_await send_body(info);
            if (sent == Outcome::early_response ||
                (sent == Outcome::reset_before_response && upstream_ != nullptr && answer_left(*upstream_))) {
                // The backend answered before it had the whole body (a 413, a 401, a redirect), and
                // may have closed: that answer is the client's, not a 502. The rest of the body is not
                // read, so neither connection is used again.
                request_keep_alive_ = false;
                request_cut_ = linger_ = true;
                // The answer is there (or the connection's end): an upload longer than
                // timeouts.request must not find its deadline gone before reading it.
                per_try_deadline_ = Clock::now() + config.timeouts.request;
                const Outcome answered = co_await relay_response(request, info, host, config);
                if (answered != Outcome::reset_before_response) { co_return answered; }
                sent = Outcome::reset_before_response;   // nothing came after all
            }
            if (sent != Outcome::ok) {
                close_upstream(host);
                if (sent == Outcome::reset_before_response) { attempt_failure_ = health::Outcome::reset; }
                if (sent == Outcome::body_too_large) {
                    linger_ = true;
                    const LocalError local_error{413, LocalReason::body_too_large, "request body larger than the limit"};
                    co_await send_local(local_error, &request);
                } else if (sent == Outcome::reset_before_response && body_write_stalled_) {
                    // The backend took none of the body for timeouts.idle (as NGINX's proxy_send_timeout: 504).
                    attempt_failure_ = health::Outcome::timeout;
                    const LocalError local_error{504, LocalReason::upstream_timeout,
                                                 "backend stopped reading the request body (timeouts.idle)"};
                    co_await send_local(local_error, &request);
                } else if (sent == Outcome::reset_before_response) {
                    const LocalError local_error{502, LocalReason::bad_upstream_response, "backend closed while receiving the request body"};
                    co_await send_local(local_error, &request);
                } else if (sent == Outcome::bad_request_body) {
                    const LocalError local_error{400, LocalReason::bad_request, "malformed request body"};
                    co_await send_local(local_error, &request);
                } else if (sent == Outcome::client_stalled) {
                    // The body stopped for timeouts.idle: the client hears why (as from NGINX), then the
                    // connection closes; the backend's connection went with the cut body.
                    const LocalError local_error{408, LocalReason::request_body_timeout, "request body not received in time"};
                    co_await send_local(local_error, &request);
                }
                co_return Outcome::client_gone;
            }
            per_try_deadline_ = Clock::now() + config.timeouts.request;   // the request is sent now
        }
        co_return co_await relay_response(request, info, host, config);
    }

    // A TLS alert where the response should be: with TLS 1.3 a backend that wants a client certificate,
    // or refuses Drover's, says so only after Drover's side of the handshake is over. The try's answer
    // (unless another host is tried) names it instead of a bare reset.
    void name_tls_alert(const boost::system::error_code& ec, const discovery::Host& host) {
        if (ec.category() != asio::error::get_ssl_category()) { return; }
        unsent_ = LocalError{502, LocalReason::bad_upstream_response,
                             fmt::format("TLS error from backend {} before its response: {}", host.name(),
                                         health::tls_error_reason(ec))};
    }

    // The request's write found the TLS connection reset: a backend that refused the handshake (see
    // name_tls_alert) and closed at once may have sent its alert first, and it is still queued. One
    // read takes it; after a reset it ends at once either way (bounded all the same).
    asio::awaitable<void> read_tls_alert(const discovery::Host& host) {
        std::array<char, 256> scratch;
        upstream_->lowest().expires_after(std::chrono::seconds(1));
        auto [ec, n] = co_await upstream_->async_read_some(asio::buffer(scratch), use_tuple);
        if (n == 0) { name_tls_alert(ec, host); }
    }

    // One non-blocking read of a plain socket that keeps its readiness flag (proxy/readiness.hpp):
    // true when the read ended (bytes in `n`, or `ec`: end of file or an error), false when nothing
    // was there (the connection is known drained now: wait for its next edge).
    static bool read_now(tcp::socket& socket, asio::mutable_buffer space, std::size_t& n, boost::system::error_code& ec) {
        for (;;) {
            const ssize_t got = readiness::recv_now(socket, space);
            if (got > 0) {
                n = static_cast<std::size_t>(got);
                return true;
            }
            if (got == 0) {
                ec = asio::error::eof;
                return true;
            }
            if (errno == EINTR) { continue; }
            if (errno == EAGAIN || errno == EWOULDBLOCK) { return false; }
            ec = boost::system::error_code(errno, boost::system::system_category());
            return true;
        }
    }

    // Reads what the plain `socket` has into `space` by `deadline`, waiting for its next edge while it
    // is drained: (error, bytes), with timeout past the deadline and eof at the end. The bytes are read
    // here, not by an asynchronous read, so that a short read leaves the connection known drained
    // (proxy/readiness.hpp) and its next wait needs no empty recv first. relay_response writes this
    // loop out instead of calling it: a call is one more coroutine frame on every keep-alive request.
    asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_plain(tcp::socket& socket, asio::mutable_buffer space,
                                                                                   Clock::time_point deadline) {
        boost::system::error_code ec;
        std::size_t n = 0;
        arm_deadline(deadline);
        for (bool wait = readiness::quiet(socket); !deadline_fired_; wait = true) {
            if (wait) {
                std::tie(ec) = co_await readiness::async_wait(socket, with_deadline());
                if (ec) { break; }
            }
            if (read_now(socket, space, n, ec)) { break; }
        }
        disarm_deadline();
        if (deadline_fired_) { ec = beast::error::timeout; }
        co_return std::tuple{ec, n};
    }

    // Client body -> upstream, re-framed (Content-Length as is, chunked re-chunked; trailers dropped).
    // Body bytes go out straight from client_buf_; what follows the body stays there (pipelining).
    asio::awaitable<Outcome> send_body(const http_rules::RequestInfo& info) {
        auto body = info.chunked ? http_body::BodyReader::chunked() : http_body::BodyReader::length(info.content_length.value_or(0));
        const auto max_body = listener_->config.limits.max_request_body_bytes;
        std::uint64_t total = 0;
        BufferPool::Lease gather;   // next_body_run(): small chunks passed on together
        while (!body.done()) {
            if (client_buf_.size() == 0) {
                const auto idle = listener_->config.timeouts.idle;
                boost::system::error_code ec;
                std::size_t n = 0;
                if (client_.tls()) {
                    client_.lowest().expires_after(idle);
                    std::tie(ec, n) = co_await client_.async_read_some(client_buf_.prepare(kReadChunk), use_tuple);
                } else {
                    // (Asked first, which also makes the note exact: a wait would end at once on a stale one.)
                    if (answer_waiting(*upstream_)) { co_return Outcome::early_response; }
                    const bool watching = watch_upstream();
                    std::tie(ec, n) = co_await read_plain(client_.socket(), client_buf_.prepare(kReadChunk), Clock::now() + idle);
                    if (watching && stop_watching_upstream()) {
                        client_buf_.commit(n);
                        co_return Outcome::early_response;   // an answer, a close or a reset: exchange() reads it
                    }
                }
                client_buf_.commit(n);
                if (ec == beast::error::timeout && n == 0) { co_return Outcome::client_stalled; }
                if (ec && n == 0) { co_return Outcome::client_gone; }
                continue;
            }
            http_body::Step step;
            if (next_body_run(body, buffered(client_buf_), gather, step)) { co_return Outcome::bad_request_body; }
            const std::size_t got = step.data.size();
            body_consumed_ = body_consumed_ || got > 0;
            total += got;
            bump(counters_->bytes_received, got);
            if (max_body > 0 && total > max_body) { co_return Outcome::body_too_large; }
            if (got > 0) {
                if (answer_waiting(*upstream_)) { co_return Outcome::early_response; }
                if (upstream_->tls()) {
                    upstream_->lowest().expires_after(listener_->config.timeouts.idle);
                    if (const auto wec = co_await write_piece(*upstream_, step.data, info.chunked)) {
                        body_write_stalled_ = wec == beast::error::timeout;
                        co_return Outcome::reset_before_response;
                    }
                } else if (const auto sent = co_await write_body_plain(step.data, info.chunked); sent != Outcome::ok) {
                    co_return sent;
                }
            }
            client_buf_.consume(step.consumed);
        }
        if (info.chunked) {
            auto [wec, wn] = co_await asio::async_write(*upstream_, asio::buffer("0\r\n\r\n", 5), use_tuple);
            if (wec) { co_return Outcome::reset_before_response; }
        }
        co_return Outcome::ok;
    }

    // While an upload waits for the client's next bytes, the backend may answer early, close or reset
    // (it died): that ends the wait, rather than the client's next bytes or timeouts.idle (a client
    // that paused would otherwise wait that long for its 502). Plain client and backend: a wait on
    // the backend's socket beside the client's read, which cancels the read when it ends. False if
    // not watched (TLS on either side; the next write finds a dead backend then).
    bool watch_upstream() {
        if (upstream_->tls() || !readiness::watched(upstream_->socket())) { return false; }
        upstream_spoke_ = false;
        const auto generation = ++upstream_watch_generation_;
        readiness::async_wait(upstream_->socket(),
                              asio::bind_cancellation_slot(upstream_watch_cancel_.slot(),
                                  [this, alive = std::weak_ptr<int>(alive_), generation](const boost::system::error_code& ec) {
                                      if (ec || alive.expired() || generation != upstream_watch_generation_) { return; }
                                      upstream_spoke_ = true;
                                      deadline_cancel_.emit(asio::cancellation_type::terminal);   // the client's read
                                  }));
        return true;
    }

    // After the client's read: whether the backend spoke meanwhile. The wait is over either way (a
    // completion already queued finds its generation stale).
    bool stop_watching_upstream() {
        ++upstream_watch_generation_;
        upstream_watch_cancel_.emit(asio::cancellation_type::terminal);
        return upstream_spoke_ || answer_waiting(*upstream_);
    }

    // Body bytes to a plain backend, as a chunk when `chunk`. While the backend takes nothing (its
    // window is full) it may have answered already and stopped reading (a 413 for an upload, the
    // connection kept open): the wait for room is cut into slices of kAnswerPoll and the answer looked
    // for between them, so the client gets it then, not after timeouts.idle. ok, early_response, or
    // reset_before_response (an error, or no room for timeouts.idle).
    asio::awaitable<Outcome> write_body_plain(std::string_view bytes, bool chunk) {
        auto& socket = upstream_->socket();
        if (!socket.non_blocking()) {   // write_now needs it; without, a plain wait (not expected)
            upstream_->lowest().expires_after(listener_->config.timeouts.idle);
            co_return co_await write_piece(*upstream_, bytes, chunk) ? Outcome::reset_before_response : Outcome::ok;
        }
        std::array<char, 20> size_line;
        const std::array<asio::const_buffer, 3> parts =
            chunk ? chunk_parts(bytes, size_line)
                  : std::array<asio::const_buffer, 3>{asio::buffer(bytes.data(), bytes.size()), asio::const_buffer{}, asio::const_buffer{}};
        beast::buffers_suffix<std::array<asio::const_buffer, 3>> rest(parts);
        const auto give_up = Clock::now() + listener_->config.timeouts.idle;
        for (;;) {
            boost::system::error_code ec;
            rest.consume(write_now(*upstream_, rest, ec));
            if (ec) { co_return Outcome::reset_before_response; }
            if (asio::buffer_size(rest) == 0) { co_return Outcome::ok; }
            if (answer_waiting(*upstream_)) { co_return Outcome::early_response; }
            if (Clock::now() >= give_up) {
                body_write_stalled_ = true;
                co_return Outcome::reset_before_response;
            }
            arm_deadline(std::min(give_up, Clock::now() + kAnswerPoll));
            std::tie(ec) = co_await socket.async_wait(tcp::socket::wait_write, with_deadline());
            disarm_deadline();
            if (ec && !deadline_fired_) { co_return Outcome::reset_before_response; }
        }
    }

    // The backend sent something (or closed) while the request is still going to it: on a plain,
    // watched connection the note says so without a syscall (proxy/readiness.hpp); only when it says
    // "maybe" is the kernel asked, since a last read that filled its buffer leaves it set for nothing.
    // Over TLS: not known here.
    static bool answer_waiting(Stream& upstream) {
        return !upstream.tls() && readiness::watched(upstream.socket()) && !readiness::quiet(upstream.socket()) &&
               !readiness::peek_quiet(upstream.socket());
    }

    // After a body write failed: did the backend send something before it went? The kernel is asked
    // (a rare path): the readiness note may not have seen the answer yet, as when a backend writes its
    // 413 and closes with the body unread, and its reset breaks the write first. The kernel keeps
    // what came before a reset for reading. Over TLS the bytes are records not yet decrypted (an
    // answer, or only a session ticket, which relay_response then reads past to the reset, and the
    // 502 stands). Over TLS, only this case is seen: a backend that stops reading and answers is found
    // when the write times out (timeouts.idle), and then its connection is gone.
    static bool answer_left(Stream& upstream) {
        char byte = 0;
        return ::recv(upstream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }

    // Writes what a plain socket takes now, without waiting: an asynchronous write that completes at once
    // still posts its completion through the scheduler (benchmarks/profile). Returns the bytes written
    // (0 over TLS, or when the socket is full: the caller writes the rest asynchronously); `ec` is set
    // only for a broken connection. The socket must be in non-blocking mode, else nothing is written.
    template <class Buffers>
    static std::size_t write_now(Stream& stream, const Buffers& buffers, boost::system::error_code& ec) {
        if (stream.tls() || !stream.socket().non_blocking()) { return 0; }
        const std::size_t n = stream.socket().write_some(buffers, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            return 0;
        }
        return ec ? 0 : n;
    }

    static std::string_view buffered(const beast::flat_buffer& buffer) {
        const auto data = buffer.data();
        return {static_cast<const char*>(data.data()), data.size()};
    }

    // The next body bytes in `input` to pass on in one write: a small run (a body of small chunks) goes
    // with the runs behind it, gathered (http_body::gather) into a pooled buffer leased on first need.
    // A body of 1-byte chunks took a system call per byte, and the peer got each byte as a chunk.
    std::optional<std::string_view> next_body_run(http_body::BodyReader& body, std::string_view input,
                                                  BufferPool::Lease& gather, http_body::Step& out) {
        if (auto bad = body.next(input, out)) { return bad; }
        if (out.data.empty() || out.data.size() >= kGatherBelow || out.consumed == input.size() || body.done()) {
            return std::nullopt;
        }
        if (!gather) { gather = worker_.buffers().acquire(); }
        const http_body::Step first = out;
        return http_body::gather(body, input, first, *gather, out);
    }

    // `bytes` as one chunk: its size line (written into `size_line`), the bytes, CRLF, for one gathered write.
    static std::array<asio::const_buffer, 3> chunk_parts(std::string_view bytes, std::array<char, 20>& size_line) {
        const auto end = std::to_chars(size_line.data(), size_line.data() + size_line.size() - 2, bytes.size(), 16).ptr;
        std::memcpy(end, "\r\n", 2);
        return {asio::buffer(size_line.data(), static_cast<std::size_t>(end + 2 - size_line.data())),
                asio::buffer(bytes.data(), bytes.size()), asio::buffer("\r\n", 2)};
    }

    // Writes body bytes, as a chunk when `chunk`. Returns the write's error.
    static asio::awaitable<boost::system::error_code> write_piece(Stream& to, std::string_view bytes, bool chunk) {
        if (!chunk) {
            auto [ec, n] = co_await asio::async_write(to, asio::buffer(bytes.data(), bytes.size()), use_tuple);
            co_return ec;
        }
        std::array<char, 20> size_line;
        auto [ec, n] = co_await asio::async_write(to, chunk_parts(bytes, size_line), use_tuple);
        co_return ec;
    }

    // Writes all of `buffers` to the client, or fails with beast::error::timeout once `timeout` passed
    // first: a client that stops reading must not keep its connection, the backend's and a request slot
    // for ever. A TLS stream carries its own timer; plain writes go straight to the socket, so the
    // session's deadline cancels them.
    template <class Buffers>
    asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_client(const Buffers& buffers,
                                                                                    std::chrono::milliseconds timeout) {
        if (client_.tls()) {
            client_.lowest().expires_after(timeout);
            co_return co_await asio::async_write(client_, buffers, use_tuple);
        }
        arm_deadline(Clock::now() + timeout);
        auto [ec, n] = co_await asio::async_write(client_, buffers, with_deadline());
        disarm_deadline();
        if (deadline_fired_) { ec = beast::error::timeout; }
        co_return std::tuple{ec, n};
    }

    // Whether the client closed or reset its connection: a peek finds its FIN, or an error (bytes of a
    // pipelined request waiting to be read mean it is still there, unless it reset after sending them).
    // Over TLS a leaving client's close_notify comes before its FIN, so unread bytes followed by a FIN
    // (the connection in CLOSE_WAIT) mean it has gone too.
    bool client_went_away() {
        const int fd = client_.socket().native_handle();
        char byte = 0;
        const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) { return true; }
        if (n < 0) { return false; }
        int error = 0;
        socklen_t length = sizeof error;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error != 0) { return true; }
        if (!client_.tls()) { return false; }
        tcp_info state{};
        length = sizeof state;
        return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &state, &length) == 0 && state.tcpi_state == TCP_CLOSE_WAIT;
    }

    // While the request waits (a slot, a host under its cap, a host to come back): whether its client
    // left, looked at when `next_look` has come (then kWaitingClientCheck later). A request whose client
    // left ends there, unanswered: 499 client_closed in the access log, and the connection closes.
    bool left_while_waiting(Clock::time_point& next_look) {
        const auto now = Clock::now();
        if (now < next_look) { return false; }
        next_look = now + kWaitingClientCheck;
        if (!client_went_away()) { return false; }
        client_left_ = true;
        end_for_a_client_that_left(request_head_);
        return true;
    }

    // The request's client left before its answer: nothing is sent, the access log says 499
    // client_closed (NGINX's convention), and the connection closes.
    void end_for_a_client_that_left(const http_rules::Head& request) {
        keep_client_ = false;
        status_ = kClientClosedRequest;
        error_reason_ = "client_closed";
        finish_request(request);
    }

    // Reads the response head (skipping interim 1xx), checks it, and streams it to the client.
    asio::awaitable<Outcome> relay_response(const http_rules::Head& request, const http_rules::RequestInfo& info,
                                            const std::shared_ptr<const discovery::Host>& host, const config::Cluster& config) {
        auto& upstream_buf = upstream_buf_;
        upstream_buf.clear();
        const auto deadline = per_try_deadline_;
        for (;;) {
            http_rules::HeadScan scan;
            bool got_bytes = upstream_buf.size() > 0;
            for (;;) {
                if (upstream_buf.size() > 0) {
                    const std::string_view bytes = buffered(upstream_buf);
                    auto rejection = http_rules::scan_head(bytes, scan);
                    if (!rejection && (scan.complete ? scan.scanned : bytes.size()) > kMaxResponseHeaderBytes) {
                        rejection = http_rules::Rejection{502, "bad_response", "response header too large"};
                    }
                    if (!rejection && scan.complete) {
                        raw_response_head_.assign(bytes.substr(0, scan.scanned));
                        upstream_buf.consume(scan.scanned);
                        rejection = http_rules::parse_response_head(raw_response_head_, response_head_);
                        if (!rejection) { break; }
                    }
                    if (rejection) {
                        close_upstream(host);
                        unsent_ = LocalError{502, LocalReason::bad_upstream_response,
                                             "backend sent an invalid response head: " + rejection->detail};
                        attempt_failure_ = health::Outcome::bad_response;
                        co_return Outcome::bad_response;
                    }
                }
                boost::system::error_code ec;
                std::size_t n = 0;
                // The session's lazily re-armed deadline (see arm_deadline), not the tcp_stream's timer,
                // which set and cancelled a timer for every read (~600 instructions a request,
                // benchmarks/profile). Past the deadline the read is cancelled and it is a timeout, as
                // tcp_stream would say (the socket is closed below, as tcp_stream would close it).
                // Every kClientCheck of waiting it looks whether the client has gone (closed or reset
                // its connection, as a client that gave up does): then the request ends and the
                // backend's connection closes, rather than hold it, and a place under the cluster's
                // limits, until the answer or timeouts.request (NGINX does the same).
                const auto next_look = [&deadline] { return std::min(deadline, Clock::now() + kClientCheck); };
                const auto space = upstream_buf.prepare(kUpstreamReadChunk);
                bool client_left = false;
                arm_deadline(next_look());
                if (upstream_->tls()) {
                    // A cancelled TLS read leaves the TLS layer waiting for the rest of its record, as
                    // read_request_head relies on too: the read starts again after each look.
                    upstream_->lowest().expires_never();
                    for (;;) {
                        std::tie(ec, n) = co_await upstream_->async_read_some(space, with_deadline());
                        if (!ec || !deadline_fired_ || Clock::now() >= deadline) { break; }
                        if ((client_left = client_went_away())) { break; }
                        ec = {};
                        arm_deadline(next_look());
                    }
                } else {
                    // The bytes are read here, so that a short read leaves the connection known drained
                    // (proxy/readiness.hpp): one that is waits for the edge of the response's bytes
                    // rather than trying a read that would find nothing, and the pool lends it on.
                    for (bool wait = readiness::quiet(upstream_->socket()); !deadline_fired_; wait = true) {
                        if (wait) {
                            std::tie(ec) = co_await readiness::async_wait(upstream_->socket(), with_deadline());
                            if (ec && deadline_fired_ && Clock::now() < deadline) {
                                if ((client_left = client_went_away())) { break; }
                                ec = {};
                                arm_deadline(next_look());
                                continue;
                            }
                            if (ec) { break; }
                        }
                        if (read_now(upstream_->socket(), space, n, ec)) { break; }
                    }
                }
                disarm_deadline();
                if (client_left) {
                    close_upstream(host);
                    end_for_a_client_that_left(request);
                    co_return Outcome::client_gone;
                }
                if (deadline_fired_ && (ec || !upstream_->tls())) { ec = beast::error::timeout; }
                if (ec) {
                    const bool timed_out = ec == beast::error::timeout;
                    close_upstream(host);
                    attempt_failure_ = timed_out ? health::Outcome::timeout : health::Outcome::reset;
                    if (!got_bytes && !timed_out) {
                        name_tls_alert(ec, *host);
                        co_return Outcome::reset_before_response;
                    }
                    unsent_ = timed_out ? LocalError{504, LocalReason::upstream_timeout, "backend did not answer in time"}
                                        : LocalError{502, LocalReason::bad_upstream_response,
                                                     "backend closed the connection mid-response"};
                    co_return timed_out ? Outcome::timeout : Outcome::bad_response;
                }
                got_bytes = true;
                upstream_buf.commit(n);
            }
            const auto& response = response_head_;
            const unsigned status = response.status;
            if (status == 101) {
                if (!info.upgrade_websocket) {
                    close_upstream(host);
                    unsent_ = LocalError{502, LocalReason::bad_upstream_response, "backend switched protocols unasked"};
                    attempt_failure_ = health::Outcome::bad_response;
                    co_return Outcome::bad_response;
                }
                co_await tunnel(upstream_buf, host);
                co_return Outcome::ok;
            }
            if (status >= 100 && status < 200) {
                // Interim. 100 Continue is Drover's own to send (it answers Expect itself); any other
                // (102, 103 Early Hints) goes on to an HTTP/1.1 client, as RFC 9110 section 15.2 asks
                // of a proxy. HTTP/1.0 clients get none. A failed write shows at the final response.
                if (status != 100 && request.version == 11) {
                    http_heads::ClientResponse interim;
                    interim.status = status;
                    interim.reason = response.reason;
                    interim.fields = &response.fields;
                    const auto connection = std::find_if(response.fields.begin(), response.fields.end(),
                                                         [](const auto& f) { return f.id == http_rules::FieldId::connection; });
                    if (connection != response.fields.end()) { interim.connection_tokens = connection->value; }
                    http_heads::client_response(interim, client_head_);
                    co_await write_client(asio::buffer(client_head_), listener_->config.timeouts.idle);
                }
                continue;
            }
            http_rules::ResponseInfo response_info;
            if (auto rejection = http_rules::check_response(response, response_info)) {
                close_upstream(host);
                unsent_ = LocalError{502, LocalReason::bad_upstream_response, "backend response: " + rejection->detail};
                attempt_failure_ = health::Outcome::bad_response;
                co_return Outcome::bad_response;
            }
            note_status(status, response_info.retry_after.value);
            if (status >= 502 && status <= 504 && gate_ != nullptr &&
                gate_->take(retry_on_status(status), !body_consumed_ || !request_has_body(info))) {
                // Tried again elsewhere: this answer is dropped with its connection.
                log::debug("cluster {}: retrying on another host after status {} from {}", config.name, status,
                           host->name());
                close_upstream(host);
                host->stats().responses_by_class[status_class(status)].fetch_add(1, std::memory_order_relaxed);
                co_return Outcome::retryable_status;
            }
            co_return co_await stream_response(request, response_info, upstream_buf, host, config);
        }
    }

    // Sends the response head and streams the body to the client: by Content-Length as it came, else
    // chunked to an HTTP/1.1 client, or delimited by closing to an HTTP/1.0 one. Body bytes go out
    // straight from the read buffer.
    asio::awaitable<Outcome> stream_response(const http_rules::Head& request, const http_rules::ResponseInfo& response_info,
                                             beast::flat_buffer& upstream_buf,
                                             const std::shared_ptr<const discovery::Host>& host, const config::Cluster& config) {
        const auto& response = response_head_;
        const unsigned status = response.status;
        const bool head_request = request.verb == http_rules::Method::head;
        const bool bodiless = head_request || status == 204 || status == 304;
        const auto length = response_info.content_length;
        const bool chunked_out_ok = request.version == 11;
        const bool close_delimited = !bodiless && !length && !response_info.chunked;
        // To an HTTP/1.0 client an unknown length can only be told by closing the connection.
        const bool needs_close_to_client = !bodiless && !length && !chunked_out_ok;
        keep_client_ = request_keep_alive_ && !needs_close_to_client && !worker_.draining() && !listener_closed();

        const bool chunk_out = !bodiless && !length && chunked_out_ok;
        const std::string& head = client_head_;
        http_heads::client_response({status, response.reason, &response.fields, response_info.connection.value, head_request,
                                     !bodiless && length ? std::optional<std::uint64_t>(*length) : std::nullopt, chunk_out,
                                     !keep_client_, keep_client_ && request.version == 10},
                                    client_head_);

        status_ = status;
        host->stats().responses_by_class[status_class(status)].fetch_add(1, std::memory_order_relaxed);
        auto body = bodiless                ? http_body::BodyReader::length(0)
                    : length                ? http_body::BodyReader::length(*length)
                    : response_info.chunked ? http_body::BodyReader::chunked()
                                            : http_body::BodyReader::until_close();
        // Body bytes already buffered behind the head (a small response: all of it) go out in the head's
        // write: one write and one scheduler trip less. Chunked output keeps to the loop below.
        http_body::Step early;
        bool early_bad = false;   // the buffered body bytes break the framing: cut after the head
        if (!chunk_out && upstream_buf.size() > 0 && !body.done()) {
            early_bad = body.next(buffered(upstream_buf), early).has_value();
        }
        // A small body is copied behind the head: one buffer is a send(2), where two are a sendmsg(2)
        // with more kernel work, and over TLS one record instead of two.
        std::string_view early_apart = early.data;
        if (!early_apart.empty() && early_apart.size() <= kCoalescedBodyMax) {
            client_head_.append(early_apart);
            early_apart = {};
        }
        const std::array<asio::const_buffer, 2> head_parts = {asio::buffer(head),
                                                              asio::buffer(early_apart.data(), early_apart.size())};
        boost::system::error_code hec;
        std::size_t hn = early_apart.empty() ? write_now(client_, asio::buffer(head), hec) : write_now(client_, head_parts, hec);
        if (!hec && hn < head.size() + early_apart.size()) {
            beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(head_parts);
            rest.consume(hn);
            std::size_t more = 0;
            std::tie(hec, more) = co_await write_client(rest, listener_->config.timeouts.idle);
            hn += more;
        }
        upstream_buf.consume(early.consumed);
        if (hec) {
            close_upstream(host);
            finish_request(request);
            co_return Outcome::client_gone;
        }
        bump(counters_->bytes_sent, hn);

        std::uint64_t body_bytes = early.data.size();
        if (early_bad) { co_return cut_response(http::error::bad_chunk, host, request, body_bytes); }
        // A large Content-Length body between plain sockets moves inside the kernel (splice), with
        // nothing buffered here to pass on first.
        if (!body.done() && body.remaining() >= kSpliceBodyMin && upstream_buf.size() == 0 && !client_.tls() &&
            !upstream_->tls()) {
            beast::error_code upstream_ec;
            switch (co_await splice_body(body.remaining(), body_bytes, config.timeouts.idle, upstream_ec)) {
                case SpliceEnd::done: body = http_body::BodyReader::length(0); break;
                case SpliceEnd::no_pipe: break;   // copy it instead
                case SpliceEnd::upstream_failed: co_return cut_response(upstream_ec, host, request, body_bytes);
                case SpliceEnd::client_gone:
                    close_upstream(host);
                    keep_client_ = false;
                    finish_request(request, body_bytes);
                    co_return Outcome::client_gone;
            }
        }
        BufferPool::Lease gather;   // next_body_run(): small chunks passed on together
        while (!body.done()) {
            if (upstream_buf.size() == 0) {
                const auto space = upstream_buf.prepare(kUpstreamReadChunk);
                boost::system::error_code ec;
                std::size_t n = 0;
                if (upstream_->tls()) {
                    upstream_->lowest().expires_after(config.timeouts.idle);
                    std::tie(ec, n) = co_await upstream_->async_read_some(space, use_tuple);
                } else {
                    std::tie(ec, n) = co_await read_plain(upstream_->socket(), space, Clock::now() + config.timeouts.idle);
                }
                upstream_buf.commit(n);
                if (n > 0) { continue; }
                if (ec == asio::error::eof && body.on_close()) { break; }   // the end of a close-delimited body
                co_return cut_response(ec ? ec : beast::error_code(http::error::partial_message), host, request, body_bytes);
            }
            http_body::Step step;
            if (next_body_run(body, buffered(upstream_buf), gather, step)) {
                co_return cut_response(http::error::bad_chunk, host, request, body_bytes);
            }
            if (!step.data.empty()) {
                body_bytes += step.data.size();
                boost::system::error_code wec;
                const std::size_t now = chunk_out ? 0 : write_now(client_, asio::buffer(step.data.data(), step.data.size()), wec);
                if (!wec && now < step.data.size()) {
                    // (An if, not ?: with a co_await on each side: GCC 12 miscompiles that.)
                    const auto rest = step.data.substr(now);
                    const auto idle = listener_->config.timeouts.idle;
                    if (chunk_out) {
                        std::array<char, 20> size_line;
                        const auto parts = chunk_parts(rest, size_line);
                        std::tie(wec, std::ignore) = co_await write_client(parts, idle);
                    } else {
                        std::tie(wec, std::ignore) = co_await write_client(asio::buffer(rest.data(), rest.size()), idle);
                    }
                }
                if (wec) {
                    close_upstream(host);
                    keep_client_ = false;
                    finish_request(request, body_bytes);
                    co_return Outcome::client_gone;
                }
                bump(counters_->bytes_sent, step.data.size());
            }
            upstream_buf.consume(step.consumed);
        }
        if (chunk_out) {
            auto [wec, wn] = co_await write_client(asio::buffer("0\r\n\r\n", 5), listener_->config.timeouts.idle);
            if (wec) { keep_client_ = false; }
        }

        // Back to the pool only when the exchange ended cleanly and nothing stray follows it, and the
        // cluster is within limits.max_connections (a reload may have lowered it).
        const auto* places = upstream_->counted_in();
        const bool reusable = response_info.keep_alive && !close_delimited && upstream_buf.size() == 0 && !request_cut_ &&
                              !worker_.draining() && !host->stats().removed.load(std::memory_order_relaxed) &&
                              !host->stats().draining.load(std::memory_order_relaxed) &&
                              (places == nullptr ||
                               places->open.load(std::memory_order_relaxed) <= static_cast<std::int64_t>(config.limits.max_connections));
        if (reusable) {
            worker_.pool().put(host, std::move(upstream_), config.timeouts.idle);
        } else {
            close_upstream(host);
        }
        finish_request(request, body_bytes);
        co_return Outcome::ok;
    }

    // The response is cut: the client must learn it from a broken framing (close).
    enum class SpliceEnd { done, no_pipe, upstream_failed, client_gone };

    // Moves the last `remaining` bytes of a response body from the upstream socket to the client's
    // through a pipe with splice(2): no copy through user space (http-1m in benchmarks/e2e). Like the
    // copy loop, it waits for the backend within `upstream_idle` (the cluster's timeouts.idle) and for
    // a client that stops reading within the listener's. The parser is bypassed: the caller knows the
    // body ended when this returns done.
    asio::awaitable<SpliceEnd> splice_body(std::uint64_t remaining, std::uint64_t& body_bytes,
                                           std::chrono::milliseconds upstream_idle, beast::error_code& upstream_ec) {
        Pipe pipe = worker_.pipes().take(Pipe::kCapacity);
        if (!pipe) { co_return SpliceEnd::no_pipe; }
        // splice(2) blocks on a blocking socket whatever its flags say: make sure neither is. Both are
        // already (write_now), so this makes no syscall.
        boost::system::error_code mode_ec;
        for (tcp::socket* socket : {&upstream_->socket(), &client_.socket()}) {
            if (!mode_ec && !socket->non_blocking()) { socket->non_blocking(true, mode_ec); }
        }
        if (mode_ec) { co_return SpliceEnd::no_pipe; }
        const int from = upstream_->socket().native_handle();
        const int to = client_.socket().native_handle();
        std::size_t in_pipe = 0;
        std::size_t chunks = 0;
        while (remaining > 0 || in_pipe > 0) {
            if (in_pipe == 0) {
                const ssize_t n = ::splice(from, nullptr, pipe.write_end(), nullptr,
                                           static_cast<std::size_t>(std::min<std::uint64_t>(remaining, Pipe::kCapacity)),
                                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                if (n > 0) {
                    in_pipe = static_cast<std::size_t>(n);
                    remaining -= in_pipe;
                } else if (n == 0) {
                    upstream_ec = http::error::partial_message;   // closed before the end of the body
                    co_return SpliceEnd::upstream_failed;
                } else if (errno == EAGAIN) {
                    arm_deadline(Clock::now() + upstream_idle);
                    auto [ec] = co_await upstream_->socket().async_wait(tcp::socket::wait_read, with_deadline());
                    disarm_deadline();
                    if (deadline_fired_ || ec) {
                        upstream_ec = deadline_fired_ ? beast::error_code(beast::error::timeout) : ec;
                        co_return SpliceEnd::upstream_failed;
                    }
                } else if (errno != EINTR) {
                    upstream_ec = beast::error_code(errno, boost::system::system_category());
                    co_return SpliceEnd::upstream_failed;
                }
                continue;
            }
            const ssize_t n = ::splice(pipe.read_end(), nullptr, to, nullptr, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                in_pipe -= static_cast<std::size_t>(n);
                body_bytes += static_cast<std::uint64_t>(n);
                bump(counters_->bytes_sent, static_cast<std::uint64_t>(n));
                // A long body yields to the worker's other connections now and then.
                if (in_pipe == 0 && ++chunks % 16 == 0) { co_await asio::post(worker_.context(), asio::use_awaitable); }
            } else if (n < 0 && errno == EAGAIN) {
                // A client that stops reading gets the listener's timeouts.idle to start again, as in the
                // copy loop (it had the cluster's, 60 s by default, holding its slot: soak audit).
                arm_deadline(Clock::now() + listener_->config.timeouts.idle);
                auto [ec] = co_await client_.socket().async_wait(tcp::socket::wait_write, with_deadline());
                disarm_deadline();
                if (ec || deadline_fired_) { co_return SpliceEnd::client_gone; }
            } else if (n == 0 || errno != EINTR) {
                co_return SpliceEnd::client_gone;   // `pipe` may hold bytes: it is closed, not kept
            }
        }
        worker_.pipes().put(std::move(pipe));   // drained: the next large body takes it
        co_return SpliceEnd::done;
    }

    Outcome cut_response(const beast::error_code& ec, const std::shared_ptr<const discovery::Host>& host,
                         const http_rules::Head& request, std::uint64_t body_bytes) {
        attempt_failure_ = ec == beast::error::timeout ? health::Outcome::timeout : health::Outcome::reset;
        close_upstream(host);
        keep_client_ = false;
        error_reason_ = "upstream_reset_mid_body";
        finish_request(request, body_bytes);
        return Outcome::bad_response;
    }

    // The backend agreed to switch protocols: pass its 101 on and relay raw bytes both ways.
    asio::awaitable<void> tunnel(beast::flat_buffer& upstream_buf,
                                 const std::shared_ptr<const discovery::Host>& host) {
        std::string head = "HTTP/1.1 101 Switching Protocols\r\n";
        for (const auto& field : response_head_.fields) { append_field(head, field.name, field.value); }
        head.append("\r\n", 2);
        status_ = 101;
        keep_client_ = false;
        host->stats().responses_by_class[status_class(101)].fetch_add(1, std::memory_order_relaxed);
        tunnel_start_ = Clock::now();
        if (limiter_slot_ != nullptr) { limiter_slot_->release(tunnel_start_, LimiterVerdict::ok); }
        auto [ec, n] = co_await write_client(asio::buffer(head), listener_->config.timeouts.idle);
        bump(counters_->bytes_sent, n);
        // Bytes either side sent right behind the handshake are already buffered: deliver them first.
        if (!ec && upstream_buf.size() > 0) {
            std::tie(ec, n) = co_await write_client(upstream_buf.data(), listener_->config.timeouts.idle);
            bump(counters_->bytes_sent, n);
        }
        if (!ec && client_buf_.size() > 0) {
            bump(counters_->bytes_received, client_buf_.size());
            std::tie(ec, n) = co_await asio::async_write(*upstream_, client_buf_.data(), use_tuple);
            client_buf_.consume(client_buf_.size());
        }
        if (!ec) {
            co_await relay(worker_.buffers(), worker_.deadlines(), client_, *upstream_, listener_->config.timeouts.idle,
                           RelayCounters{counters_->bytes_received, counters_->bytes_sent});
        }
        close_upstream(host);
        // One access-log line and one request counted (1xx, status_ above) when the tunnel ends, its
        // duration the tunnel's whole life; no body bytes (its bytes are in the listener's byte counters).
        finish_request(request_head_);
    }

    // Answers the client from Drover itself, with a drover-error header saying why.
    asio::awaitable<void> send_local(const LocalError& error, const http_rules::Head* request) {
        static const auto reason_phrase = [](int status) -> std::string_view {
            return http::obsolete_reason(static_cast<http::status>(status));
        };
        const std::string_view reason = local_reason_name(error.reason);
        const std::string body = fmt::format("{} {}: {}\n", error.status, reason, error.detail);
        std::string head = fmt::format("HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                       "Content-Length: {}\r\ndrover-error: {}\r\n{}",
                                       error.status, reason_phrase(error.status), http_heads::http_date(), body.size(),
                                       reason, error.close ? "Connection: close\r\n" : "");
        if (error.retry_after > 0) { head += fmt::format("Retry-After: {}\r\n", error.retry_after); }
        head += "\r\n";
        // A HEAD answer has no body (RFC 9110 section 9.3.2), though its Content-Length says what a GET's
        // would be: bytes after the head would be read as the start of the next response.
        const bool bodiless = request != nullptr && request->verb == http_rules::Method::head;
        if (!bodiless) { head += body; }
        bump(counters_->local_responses[static_cast<std::size_t>(error.reason)]);
        status_ = static_cast<unsigned>(error.status);
        error_reason_ = reason;
        keep_client_ = !error.close;
        auto [ec, n] = co_await write_client(asio::buffer(head), std::chrono::seconds(5));
        if (!ec) { bump(counters_->bytes_sent, n); }
        if (request != nullptr) {
            finish_request(*request, bodiless ? 0 : body.size());
        } else {
            record(nullptr, body.size());
        }
    }

    void finish_request(const http_rules::Head& request, std::uint64_t body_bytes = 0) { record(&request, body_bytes); }

    void record(const http_rules::Head* request, std::uint64_t body_bytes) {
        finished_ = Clock::now();
        const auto elapsed = finished_ - start_;
        const double seconds = std::chrono::duration<double>(elapsed).count();
        bump(counters_->requests_by_class[status_class(status_ == 0 ? 500 : status_)]);
        std::size_t bucket = 0;
        while (bucket < kDurationBuckets.size() && seconds > kDurationBuckets[bucket]) { ++bucket; }
        bump(counters_->duration_buckets[bucket]);
        bump(counters_->duration_sum_micros,
             static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
        if (listener_->access_log != nullptr) {
            listener_->access_log->write(AccessLog::Entry{
                client_addr(), request ? request->method : std::string_view("-"),
                request ? request->target : std::string_view("-"), status_, body_bytes,
                std::chrono::duration_cast<std::chrono::milliseconds>(elapsed), upstream_name_,
                error_reason_.empty() ? std::string_view("-") : std::string_view(error_reason_)});
        }
        status_ = 0;
        error_reason_ = {};
    }

    Worker& worker_;
    std::shared_ptr<ListenerState> listener_;
    ListenerCounters* counters_ = nullptr;
    Stream client_;
    beast::flat_buffer client_buf_;
    beast::flat_buffer upstream_buf_;   // the current try's response bytes (relay_response)
    std::string raw_head_;            // the current request's head as received
    std::string raw_response_head_;   // the current response's head as received
    http_rules::Head request_head_;    // parsed raw_head_ (its field vector is reused)
    http_rules::Head response_head_;   // parsed raw_response_head_
    std::unique_ptr<Stream> upstream_;   // by pointer: lent to and from the pool without moving the Stream
    std::shared_ptr<const TlsServer> tls_server_;   // kept alive for the handshake's context
    std::string last_connect_error_;   // the last host's connect or TLS failure, for the 502
    std::string client_ip_;
    std::string local_authority_;   // see local_authority()
    std::string client_cert_;       // X-Forwarded-Client-Cert of this connection (mutual TLS), or empty
    tcp::endpoint client_remote_;
    std::string client_addr_;   // made by client_addr()
    bool parked_ = false;   // the connection lives on without this session
    bool active_ = false;   // between begin() and end()
    using WakeHandler = asio::any_completion_handler<void()>;
    // Set while a spare. Held in an optional: any_completion_handler's move assignment in Asio 1.81
    // wraps the handler in itself instead of moving it (unbounded recursion); construction is fine.
    std::optional<WakeHandler> wake_;
    Clock::time_point start_{};
    Clock::time_point finished_{};      // when the last request was recorded as done
    Clock::time_point attempt_end_{};   // when the last try of a request upstream ended
    Clock::time_point tunnel_start_{};  // when the request's connection was upgraded (101), if it was
    struct LimiterSlot* limiter_slot_ = nullptr;   // the request's adaptive-concurrency slot, while forward() runs
    std::string upstream_name_ = "-";
    std::string_view error_reason_;
    unsigned status_ = 0;
    bool keep_client_ = false;
    bool request_keep_alive_ = false;
    bool request_cut_ = false;   // the backend answered before the whole request body was sent
    bool linger_ = false;        // the client's request body was left unread: linger() before closing
    bool body_consumed_ = false;   // request body bytes were read: the request can no longer be replayed
    // The current try: its deadline for the response head, its failure as outlier detection sees it,
    // the answer owed to the client if it is not tried again, a busy host's Retry-After, and the gate
    // deciding whether a retryable status is tried again.
    Clock::time_point per_try_deadline_{};
    health::Outcome attempt_failure_ = health::Outcome::success;
    std::optional<LocalError> unsent_;
    // What forward() found to answer from Drover itself (a shed, no host, a try's failure); handle_request
    // sends it once forward has returned. Kept here, with the host lists below, rather than in forward's
    // coroutine frame, which they took from 992 to 1,664 bytes: then more than Asio's cache held (a
    // malloc and a free per request); now frames up to 4 KiB are pooled (proxy/block_pool.hpp), and the
    // smaller frame is still less memory touched per request.
    std::optional<LocalError> local_reply_;
    HostList tried_;      // hosts this request went to
    bool hold_expired_ = false;   // this request waited out hold_timeout for a host
    bool client_left_ = false;    // its client left while it waited (left_while_waiting): 499, no answer
    bool held_ = false;           // this request waited for a host, and the cluster changed
    // While waiting in a GrantQueue (a max_requests slot, a max_connections place): where a grant finds
    // the wait's timer (wait_slot sets it).
    std::weak_ptr<asio::steady_timer>* grant_wake_target_ = nullptr;
    HostList full_;       // hosts found at their cap for this choice
    HostList excluded_;   // tried_ and full_: what the balancer must not choose
    // Heads serialized for each request into buffers that keep their capacity: no allocation per request.
    std::string upstream_head_;   // the request head sent upstream
    std::string client_head_;     // the response head sent to the client
    std::optional<std::chrono::milliseconds> retry_after_;
    RetryGate* gate_ = nullptr;
    LimiterVerdict limiter_verdict_ = LimiterVerdict::ignore;   // read by LimiterSlot
    bool aborted_ = false;
    bool idle_ = false;   // waiting for the next request on a keep-alive connection
    asio::steady_timer deadline_timer_{worker_.context()};
    asio::cancellation_signal deadline_cancel_;
    asio::cancellation_signal upstream_watch_cancel_;   // watch_upstream()'s wait
    bool body_write_stalled_ = false;   // the request body's write to the backend timed out (not a close)
    std::uint32_t upstream_watch_generation_ = 0;
    bool upstream_spoke_ = false;
    std::uint64_t deadline_generation_ = 0;   // of the timer's current wait
    Clock::time_point deadline_ = Clock::time_point::max();   // the waiting operation's; max: none
    Clock::time_point timer_at_ = Clock::time_point::max();   // the timer's pending wait ends; max: none
    bool deadline_fired_ = false;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);   // the timer handler's liveness check
};

// One session's coroutine. Between connections it waits as a spare (Worker::spare_sessions) for
// take_spare() to hand it the next one, so a request that ends a park costs a resumption rather than
// a new coroutine, session, stream and timers (benchmarks/profile/http_keepalive_callgrind.py).
asio::awaitable<void> serve_http(Worker& worker, ClientConnection connection) {
    HttpSession session(worker);
    session.begin(std::move(connection));
    for (;;) {
        co_await session.run();
        session.end();
        auto& spares = worker.spare_sessions();
        if (!session.reusable() || worker.draining() || spares.size() >= Worker::kSpareSessions) { co_return; }
        spares.push_back(&session);
        co_await session.wait_as_spare();
    }
}

// Serves `connection` on a spare session if the worker has one, else on a new one.
void serve(Worker& worker, ClientConnection&& connection) {
    auto& spares = worker.spare_sessions();
    if (spares.empty()) {
        spawn(worker.context().get_executor(), serve_http(worker, std::move(connection)), "http session");
        return;
    }
    auto* session = static_cast<HttpSession*>(spares.back());
    spares.pop_back();
    session->resume(std::move(connection));
}

// A plain client connection between requests (or before its first): no session, no buffer, no timer
// of its own; a few hundred bytes where a session with its coroutine frames, timers and buffers took
// several KiB (benchmarks/profile/idle_memory.py). Its first readable byte starts a session; its
// deadline (the worker's DeadlineQueue), a drain or a shutdown closes it.
class ParkedClient final : public Session, public DeadlineQueue::Entry {
public:
    ParkedClient(Worker& worker, ClientConnection&& connection) : worker_(worker), connection_(std::move(connection)) {
        worker_.add_session(this);
        bump(idle_gauge());
    }
    ~ParkedClient() override { worker_.remove_session(this); }

    void abort() override { close(); }
    void on_drain() override { leave_soon(); }
    void on_listener_closed(const ListenerShared* closed) override {
        if (connection_.listener->shared.get() == closed) { leave_soon(); }
    }
    void expired() override { close(); }

    // A keep-alive connection parks after every response: its blocks are kept for reuse by the thread
    // that frees them (a worker), up to kKeptBlocks, instead of a malloc and a free per request
    // (benchmarks/profile/http_keepalive_callgrind.py). Not under AddressSanitizer, which must see
    // every block freed to catch a use after free.
    static void* operator new(std::size_t size) {
#if !defined(__SANITIZE_ADDRESS__)
        auto& kept = kept_blocks();
        if (kept.count > 0) { return kept.blocks[--kept.count]; }
#endif
        return ::operator new(size);
    }
    static void operator delete(void* block, std::size_t size) {
#if !defined(__SANITIZE_ADDRESS__)
        auto& kept = kept_blocks();
        if (kept.count < kept.blocks.size()) {
            kept.blocks[kept.count++] = block;
            return;
        }
#endif
        ::operator delete(block, size);
    }

    // Waits for the client's next bytes. The wait's handler owns the parked connection.
    // A connection its session left drained (proxy/readiness.hpp) waits for the edge of the next
    // request's bytes; otherwise (bytes may be in already) it resumes at once. No syscall either way.
    static void wait(std::unique_ptr<ParkedClient> parked) {
        ParkedClient& self = *parked;
        auto woken = [parked = std::move(parked)](const boost::system::error_code& ec) mutable {
            if (parked->closed_) { return; }
            if (ec) {
                parked->close();
                return;
            }
            parked->unpark();
            // Straight from the parked state into the session (one move of the socket, not two); the
            // emptied ParkedClient goes once the session has run up to its first wait.
            serve(parked->worker_, std::move(parked->connection_));
        };
        readiness::async_wait(self.connection_.socket, asio::bind_allocator(PoolAllocator<void>{}, std::move(woken)));
    }

private:
    static constexpr std::size_t kKeptBlocks = 64;
    struct KeptBlocks {
        std::array<void*, kKeptBlocks> blocks{};
        std::size_t count = 0;
        KeptBlocks() = default;
        KeptBlocks(const KeptBlocks&) = delete;
        KeptBlocks& operator=(const KeptBlocks&) = delete;
        ~KeptBlocks() {
            while (count > 0) { ::operator delete(blocks[--count], sizeof(ParkedClient)); }
        }
    };
    static KeptBlocks& kept_blocks() {
        static thread_local KeptBlocks kept;
        return kept;
    }

    std::atomic<std::uint64_t>& idle_gauge() { return connection_.listener->counters(worker_.index()).connections_idle; }

    // Leaves the parked state once (resumed or closed): off the deadline queue and the idle gauge.
    void unpark() {
        closed_ = true;
        cancel();
        drop(idle_gauge());
    }

    // The drain began or the listener went: the connection is kept shutdown.idle_grace more, for a
    // request already on its way (answered with Connection: close), then closed.
    void leave_soon() {
        if (closed_) { return; }
        if (worker_.idle_grace().count() <= 0) {
            close();
            return;
        }
        worker_.deadlines().schedule(*this, worker_.idle_grace());
    }

    void close() {
        if (closed_) { return; }
        unpark();
        boost::system::error_code ignored;
        connection_.socket.close(ignored);   // the wait ends with operation_aborted and frees this
        connection_.listener->connections_active().fetch_sub(1, std::memory_order_relaxed);
    }

    Worker& worker_;
    ClientConnection connection_;
    bool closed_ = false;   // unparked: resumed (the connection moved on) or closed
};

void park_client(Worker& worker, ClientConnection&& connection, std::chrono::milliseconds timeout,
                 std::chrono::steady_clock::time_point now) {
    timeout = idle_timeout(worker, *connection.listener, timeout);
    auto parked = std::make_unique<ParkedClient>(worker, std::move(connection));
    worker.deadlines().schedule(*parked, timeout, now);
    ParkedClient::wait(std::move(parked));
}

}  // namespace

void accept_http(Worker& worker, std::shared_ptr<ListenerState> listener, tcp::socket client) {
    boost::system::error_code ec;
    const auto remote = client.remote_endpoint(ec);
    std::string client_ip = ec ? std::string("unknown") : remote.address().to_string();
    if (!listener->tls) {
        client.non_blocking(true, ec);   // written to without waiting (HttpSession::write_now)
        // Counted as drained: bytes that are in already are reported afresh, and wake the parked wait.
        readiness::watch(client, true);
    }
    ClientConnection connection{std::move(client), std::move(listener), remote, std::move(client_ip)};
    if (connection.listener->tls) {
        serve(worker, std::move(connection));
        return;
    }
    const auto timeout = connection.listener->config.timeouts.request_headers;
    park_client(worker, std::move(connection), timeout, std::chrono::steady_clock::now());
}

}  // namespace drover::proxy
