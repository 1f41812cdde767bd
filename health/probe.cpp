#include "health/probe.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <string_view>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "discovery/endpoint.hpp"

namespace drover::health {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A status line is a few dozen bytes; a backend that sends 8 KiB without one is not speaking HTTP.
constexpr std::size_t kMaxStatusLineBytes = 8 * 1024;

constexpr std::string_view kHttpVersionPrefix = "HTTP/1.";

ProbeResult failed(std::string detail) { return ProbeResult{false, std::move(detail)}; }

std::string describe(const error_code& ec) {
    if (ec == asio::error::connection_refused) { return "connection refused"; }
    if (ec == asio::error::connection_reset) { return "connection reset"; }
    return ec.message();
}

// "500ms", "1500ms", "2s": whole seconds read better in logs, anything else stays exact.
std::string format_duration(config::Duration duration) {
    const auto ms = duration.count();
    if (ms >= 1000 && ms % 1000 == 0) { return fmt::format("{}s", ms / 1000); }
    return fmt::format("{}ms", ms);
}

std::string format_ranges(const std::vector<config::StatusRange>& ranges) {
    std::string out;
    for (const auto& range : ranges) {
        if (!out.empty()) { out += ", "; }
        out += range.lo == range.hi ? fmt::format("{}", range.lo) : fmt::format("{}-{}", range.lo, range.hi);
    }
    return out.empty() ? "(none)" : out;
}

bool in_ranges(int status, const std::vector<config::StatusRange>& ranges) {
    return std::any_of(ranges.begin(), ranges.end(),
                       [status](const config::StatusRange& r) { return r.lo <= status && status <= r.hi; });
}

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// Lets a reply that cannot become a status line fail on its first bytes instead of at the deadline.
bool could_start_status_line(std::string_view received) {
    const std::size_t n = std::min(received.size(), kHttpVersionPrefix.size());
    return received.substr(0, n) == kHttpVersionPrefix.substr(0, n);
}

// "HTTP/1.x NNN[ reason]", without its line end. The reason phrase may be absent (RFC 9112 allows it
// empty); anything else around the code is refused.
std::optional<int> parse_status_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') { line.remove_suffix(1); }
    if (!line.starts_with(kHttpVersionPrefix)) { return std::nullopt; }
    line.remove_prefix(kHttpVersionPrefix.size());
    if (line.size() < 5 || !is_digit(line[0]) || line[1] != ' ') { return std::nullopt; }
    const std::string_view code = line.substr(2, 3);
    if (!std::all_of(code.begin(), code.end(), is_digit) || code[0] == '0') { return std::nullopt; }
    if (line.size() > 5 && line[5] != ' ') { return std::nullopt; }
    return (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
}

// SNI carries DNS names only (RFC 6066): no IP literals, nothing a resolver would not accept.
bool looks_like_hostname(const std::string& name) {
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.front() == '-') { return false; }
    const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
    });
    if (!charset_ok) { return false; }
    error_code ec;
    (void)asio::ip::make_address(name, ec);
    return static_cast<bool>(ec);
}

// One for the process: building an SSL_CTX loads the default configuration and is far dearer than a
// handshake. No verification: the probe proves the backend's TLS stack answers, not who it is.
asio::ssl::context& client_tls_context() {
    static asio::ssl::context context = [] {
        asio::ssl::context built(asio::ssl::context::tls_client);
        built.set_verify_mode(asio::ssl::verify_none);
        return built;
    }();
    return context;
}

template <class Stream>
asio::awaitable<ProbeResult> http_exchange(Stream& socket, const config::HttpProbe& http,
                                           const std::string& default_host) {
    const std::string& host = http.host.empty() ? default_host : http.host;
    const std::string request = fmt::format(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover-health-check\r\nConnection: close\r\n\r\n",
        http.path, host);
    auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(request), use_tuple);
    if (write_ec) { co_return failed(describe(write_ec)); }

    std::array<char, kMaxStatusLineBytes> buffer{};
    std::size_t filled = 0;
    for (;;) {
        auto [read_ec, n] = co_await socket.async_read_some(
            asio::buffer(buffer.data() + filled, buffer.size() - filled), use_tuple);
        filled += n;
        const std::string_view received(buffer.data(), filled);
        if (const auto eol = received.find('\n'); eol != std::string_view::npos) {
            const auto status = parse_status_line(received.substr(0, eol));
            if (!status) { co_return failed("malformed status line"); }
            if (in_ranges(*status, http.expected_statuses)) { co_return ProbeResult{true, fmt::format("HTTP {}", *status)}; }
            co_return failed(fmt::format("HTTP {} not in {}", *status, format_ranges(http.expected_statuses)));
        }
        if (!could_start_status_line(received)) { co_return failed("malformed status line"); }
        if (read_ec == asio::error::eof) { co_return failed("connection closed before a status line"); }
        if (read_ec) { co_return failed(describe(read_ec)); }
        if (filled == buffer.size()) { co_return failed("no status line in the first 8 KiB"); }
    }
}

// Longest wait for the server's answer to a TLS probe's close_notify (refused_after_handshake).
constexpr auto kCloseAnswerWait = std::chrono::milliseconds(250);

// Where an SSL's fatal alert from the peer is noted (an int: the alert as the info callback has it).
int alert_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

void note_fatal_alert(const SSL* ssl, int where, int alert) {
    if ((where & SSL_CB_READ_ALERT) == 0 || (alert >> 8) != SSL3_AL_FATAL) { return; }
    if (auto* seen = static_cast<int*>(SSL_get_ex_data(ssl, alert_index()))) { *seen = alert; }
}

// With TLS 1.3 a server checks the client's certificate (or its absence) after the client's side of
// the handshake is over, and says no with an alert that only a read sees: a TLS probe's handshake
// would pass while every request fails. So the probe ends with a close_notify and reads the answer:
// the server's close_notify or its end pass, a fatal alert is the refusal (named). A server that
// does neither within kCloseAnswerWait (or half the time left) passes. The alert is taken from the
// info callback: OpenSSL's shutdown can report success after one.
asio::awaitable<std::optional<std::string>> refused_after_handshake(asio::ssl::stream<tcp::socket&>& stream,
                                                                    tcp::socket& socket,
                                                                    std::chrono::steady_clock::time_point deadline) {
    int alert = 0;
    SSL* ssl = stream.native_handle();
    SSL_set_ex_data(ssl, alert_index(), &alert);
    SSL_set_info_callback(ssl, &note_fatal_alert);
    const auto left = deadline - std::chrono::steady_clock::now();
    asio::steady_timer timer(socket.get_executor(), std::min<std::chrono::steady_clock::duration>(kCloseAnswerWait, left / 2));
    timer.async_wait([&socket](const error_code& ec) {
        error_code ignored;
        if (!ec) { socket.cancel(ignored); }
    });
    auto [ec] = co_await stream.async_shutdown(use_tuple);
    if (alert == 0 && ec && ec != asio::error::operation_aborted) {
        // The close_notify did not go out: a server that sent its alert and then reset the
        // connection. The alert is still there to be read (the kernel keeps it past the reset).
        std::array<char, 256> scratch{};
        co_await stream.async_read_some(asio::buffer(scratch), use_tuple);
    }
    timer.cancel();
    SSL_set_info_callback(ssl, nullptr);
    SSL_set_ex_data(ssl, alert_index(), nullptr);
    if (alert != 0) {
        // OpenSSL 3.0 has no names for the TLS 1.3 alerts.
        const int code = alert & 0xff;
        const std::string_view name = code == 116   ? "certificate required"
                                      : code == 120 ? "no application protocol"
                                                    : SSL_alert_desc_string_long(alert);
        co_return fmt::format("the backend refused the connection: {} (alert {})", name, code);
    }
    co_return std::nullopt;
}

// The handshake, then (for an HTTP probe) the request over TLS. With the cluster's TLS the handshake
// is the one traffic does; without, it only shows that a TLS stack answers.
asio::awaitable<ProbeResult> over_tls(tcp::socket& socket, const config::Probe& probe, const std::string& default_host,
                                      const TlsClient* tls, const std::string& peer,
                                      std::chrono::steady_clock::time_point deadline) {
    asio::ssl::stream<tcp::socket&> stream(socket, tls != nullptr ? tls->context() : client_tls_context());
    if (tls != nullptr) {
        tls->prepare(stream.native_handle(), peer);
    } else if (looks_like_hostname(default_host)) {
        // SSL_set_tlsext_host_name is a macro with a C cast; this is what it expands to.
        SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(default_host.c_str()));
    }
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (ec) {
        const bool verifying = tls != nullptr && tls->settings().verify;
        co_return failed("TLS: " + describe_handshake_error(ec, verifying ? stream.native_handle() : nullptr));
    }
    ProbeResult result{true, "TLS handshake ok"};
    if (const auto* http = std::get_if<config::HttpProbe>(&probe)) {
        result = co_await http_exchange(stream, *http, default_host);
    } else if (tls != nullptr && SSL_version(stream.native_handle()) == TLS1_3_VERSION) {
        if (auto refused = co_await refused_after_handshake(stream, socket, deadline)) {
            co_return failed("TLS: " + *refused);
        }
    }
    keep_session(stream.native_handle());
    co_return result;
}

// Connect, then the probe's own exchange. Returns when it has an answer or its socket is closed.
asio::awaitable<ProbeResult> exchange(tcp::socket& socket, const tcp::endpoint& address,
                                      const config::Probe& probe, const std::string& default_host,
                                      const TlsClient* tls, std::chrono::steady_clock::time_point deadline) {
    auto [connect_ec] = co_await socket.async_connect(address, use_tuple);
    if (connect_ec && is_local_shortage(connect_ec)) {
        co_return ProbeResult{false, "not checked: " + connect_ec.message() + " (on Drover's side)", true};
    }
    if (connect_ec) { co_return failed(describe(connect_ec)); }
    const bool is_http = std::holds_alternative<config::HttpProbe>(probe);
    if (std::holds_alternative<config::TlsProbe>(probe) || (is_http && tls != nullptr)) {
        const std::string peer = discovery::to_string(address);
        co_return co_await over_tls(socket, probe, default_host, tls, peer, deadline);
    }
    if (is_http) { co_return co_await http_exchange(socket, std::get<config::HttpProbe>(probe), default_host); }
    co_return ProbeResult{true, "TCP connect ok"};
}

// Closing the socket, not only cancelling, is what bounds the exchange: it aborts whichever operation
// is in flight, TLS engine included. Completes normally either way so the || below never sees an
// exception; a cancelled wait (the exchange finished first) leaves the socket alone.
asio::awaitable<void> close_at_deadline(asio::steady_timer& timer, tcp::socket& socket) {
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (!ec) {
        error_code ignored;
        socket.close(ignored);
    }
}

}  // namespace

asio::awaitable<ProbeResult> run_probe(asio::any_io_executor executor, tcp::endpoint address,
                                       const config::HealthCheck& check, std::string default_host,
                                       std::shared_ptr<const TlsClient> tls) {
    ProbeResult result;
    try {
        tcp::socket socket(executor);
        asio::steady_timer timer(executor, check.timeout);   // armed now: the bound covers the connect too
        // Named first: GCC 12 mishandles temporaries built inside a co_await expression.
        auto flow = exchange(socket, address, check.probe, default_host, tls.get(),
                             std::chrono::steady_clock::now() + check.timeout);
        auto deadline = close_at_deadline(timer, socket);
        // || waits for both branches to finish, so nothing refers to socket or timer once it returns.
        auto first = co_await (std::move(flow) || std::move(deadline));
        error_code ignored;
        socket.close(ignored);
        result = first.index() == 0 ? std::get<0>(std::move(first))
                                    : failed(fmt::format("timed out after {}", format_duration(check.timeout)));
    } catch (const std::exception& e) {
        result = failed(fmt::format("probe error: {}", e.what()));
    } catch (...) {
        result = failed("probe error");
    }
    co_return result;
}

bool is_local_shortage(const boost::system::error_code& ec) {
    return ec == asio::error::no_descriptors || ec == boost::system::error_code(ENFILE, boost::system::system_category()) ||
           ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

}  // namespace drover::health
