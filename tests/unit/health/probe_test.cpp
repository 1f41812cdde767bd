// health/probe: one active check against real loopback sockets. Each test scripts a backend on
// 127.0.0.1:0 (reply, hang, close, TLS with a certificate made here) and runs the io_context for a
// bounded time; the probe's completion stops it.

#include "health/probe.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace drover::health {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kRunBound = 5s;   // no probe here may take this long; a hang fails instead of blocking

tcp::endpoint loopback() { return {asio::ip::make_address_v4("127.0.0.1"), 0}; }

config::HealthCheck check_with(config::Probe probe, config::Duration timeout = 2s) {
    config::HealthCheck check;
    check.probe = std::move(probe);
    check.timeout = timeout;
    return check;
}

// Runs one probe to completion (or kRunBound) on `io`, with whatever backends are already spawned there.
ProbeResult probe(asio::io_context& io, tcp::endpoint to, const config::HealthCheck& check,
                  std::string default_host = "backend.example") {
    std::optional<ProbeResult> result;
    asio::co_spawn(io, run_probe(io.get_executor(), to, check, std::move(default_host)),
                   [&](std::exception_ptr error, ProbeResult r) {
                       if (!error) { result = std::move(r); }
                       io.stop();
                   });
    io.restart();
    io.run_for(kRunBound);
    if (!result) { return ProbeResult{false, "test: probe did not complete"}; }
    return *result;
}

// A plain-TCP backend that accepts one connection and follows its script.
class Backend {
public:
    enum class Script {
        close,           // accept, close at once
        hang,            // accept, read, never answer
        reply,           // read the request head, send `reply`, close
        send_at_once,    // send `reply` without reading, then keep the connection open and silent
    };

    Backend(asio::io_context& io, Script script, std::string reply = {})
        : acceptor_(io, loopback()), peer_(io), script_(script), reply_(std::move(reply)) {
        asio::co_spawn(io, serve(), asio::detached);
    }

    tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    const std::string& request() const { return request_; }

private:
    asio::awaitable<void> serve() {
        auto [accept_ec] = co_await acceptor_.async_accept(peer_, use_tuple);
        if (accept_ec) { co_return; }
        boost::system::error_code ec;
        switch (script_) {
            case Script::close: peer_.close(ec); co_return;
            case Script::hang: co_await drain(); co_return;
            case Script::reply: {
                auto [read_ec, n] = co_await asio::async_read_until(peer_, asio::dynamic_buffer(request_), "\r\n\r\n", use_tuple);
                if (read_ec) { co_return; }
                co_await asio::async_write(peer_, asio::buffer(reply_), use_tuple);
                peer_.close(ec);
                co_return;
            }
            case Script::send_at_once:
                co_await asio::async_write(peer_, asio::buffer(reply_), use_tuple);
                co_await drain();
                co_return;
        }
    }

    asio::awaitable<void> drain() {
        std::array<char, 1024> sink{};
        for (;;) {
            auto [ec, n] = co_await peer_.async_read_some(asio::buffer(sink), use_tuple);
            if (ec) { co_return; }
        }
    }

    tcp::acceptor acceptor_;
    tcp::socket peer_;
    Script script_;
    std::string reply_;
    std::string request_;
};

struct KeyFree {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertFree {
    void operator()(X509* cert) const { X509_free(cert); }
};

// A fresh P-256 key and a one-hour self-signed certificate for it, installed on `context`.
bool use_self_signed_certificate(asio::ssl::context& context) {
    std::unique_ptr<EVP_PKEY, KeyFree> key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    std::unique_ptr<X509, CertFree> cert(X509_new());
    if (!key || !cert) { return false; }
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_set_pubkey(cert.get(), key.get());
    X509_NAME* name = X509_get_subject_name(cert.get());
    const std::string common_name = "backend.example";
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) { return false; }
    return SSL_CTX_use_certificate(context.native_handle(), cert.get()) == 1 &&
           SSL_CTX_use_PrivateKey(context.native_handle(), key.get()) == 1;
}

// A TLS backend: accepts one connection, completes the server handshake, remembers the SNI it was sent.
class TlsBackend {
public:
    explicit TlsBackend(asio::io_context& io) : acceptor_(io, loopback()), context_(asio::ssl::context::tls_server) {
        certificate_ok_ = use_self_signed_certificate(context_);
        asio::co_spawn(io, serve(), asio::detached);
    }

    tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    bool certificate_ok() const { return certificate_ok_; }
    const std::string& server_name() const { return server_name_; }

private:
    asio::awaitable<void> serve() {
        auto [accept_ec, peer] = co_await acceptor_.async_accept(use_tuple);
        if (accept_ec) { co_return; }
        asio::ssl::stream<tcp::socket> stream(std::move(peer), context_);
        auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
        if (handshake_ec) { co_return; }
        if (const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
            server_name_ = name;
        }
    }

    tcp::acceptor acceptor_;
    asio::ssl::context context_;
    bool certificate_ok_ = false;
    std::string server_name_;
};

std::string http_request(std::string_view path, std::string_view host) {
    return std::string("GET ") + std::string(path) + " HTTP/1.1\r\nHost: " + std::string(host) +
           "\r\nUser-Agent: drover-health-check\r\nConnection: close\r\n\r\n";
}

TEST(ProbeTcp, PassesWhenTheConnectCompletes) {
    asio::io_context io;
    Backend backend(io, Backend::Script::close);
    const auto check = check_with(config::TcpProbe{});
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_TRUE(result.passed) << result.detail;
    EXPECT_EQ(result.detail, "TCP connect ok");
}

TEST(ProbeTcp, RefusedPortFails) {
    asio::io_context io;
    tcp::endpoint closed_port;
    {
        tcp::acceptor taken(io, loopback());
        closed_port = taken.local_endpoint();
    }
    const auto check = check_with(config::TcpProbe{});
    const auto result = probe(io, closed_port, check);
    EXPECT_FALSE(result.passed);
    EXPECT_EQ(result.detail, "connection refused");
}

TEST(ProbeTcp, OutOfDescriptorsIsNoVerdictOnTheHost) {
    // The process may open no more descriptors: the probe cannot even make its socket. That is Drover's
    // shortage, not the host's failure (the cluster then keeps the host's state).
#if defined(__SANITIZE_ADDRESS__)
    // The sanitizers' own checks open descriptors (a pipe to test memory): with none left they report
    // a false error instead of letting the probe fail as it would.
    GTEST_SKIP() << "needs a process that may run out of descriptors; the sanitizer runtime may not";
#endif
    asio::io_context io;
    Backend backend(io, Backend::Script::close);
    const auto check = check_with(config::TcpProbe{});
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    const int lowest_free = ::dup(0);
    ASSERT_GE(lowest_free, 0);
    ::close(lowest_free);
    rlimit tight = saved;
    tight.rlim_cur = static_cast<rlim_t>(lowest_free);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
    const auto result = probe(io, backend.endpoint(), check);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    EXPECT_FALSE(result.passed);
    EXPECT_TRUE(result.local_failure) << result.detail;
    EXPECT_NE(result.detail.find("on Drover's side"), std::string::npos) << result.detail;
    EXPECT_TRUE(is_local_shortage(asio::error::no_descriptors));
    EXPECT_FALSE(is_local_shortage(asio::error::connection_refused));
}

TEST(ProbeTimeout, SilentBackendTimesOutWithinTheBound) {
    asio::io_context io;
    Backend backend(io, Backend::Script::hang);
    const auto check = check_with(config::HttpProbe{}, 100ms);
    const auto start = std::chrono::steady_clock::now();
    const auto result = probe(io, backend.endpoint(), check);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(result.passed);
    EXPECT_EQ(result.detail, "timed out after 100ms");
    EXPECT_GE(elapsed, 90ms);
    EXPECT_LT(elapsed, 1s);
}

TEST(ProbeTimeout, WholeSecondsAreWrittenInSeconds) {
    asio::io_context io;
    Backend backend(io, Backend::Script::hang);
    const auto check = check_with(config::HttpProbe{}, 1000ms);
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_FALSE(result.passed);
    EXPECT_EQ(result.detail, "timed out after 1s");
}

TEST(ProbeHttp, Status200PassesAndTheRequestUsesTheDefaultHost) {
    asio::io_context io;
    Backend backend(io, Backend::Script::reply, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    config::HttpProbe http;
    http.path = "/healthz";
    const auto check = check_with(http);
    const auto result = probe(io, backend.endpoint(), check, "payments");
    EXPECT_TRUE(result.passed) << result.detail;
    EXPECT_EQ(result.detail, "HTTP 200");
    EXPECT_EQ(backend.request(), http_request("/healthz", "payments"));
}

TEST(ProbeHttp, ExplicitHostOverridesTheDefault) {
    asio::io_context io;
    Backend backend(io, Backend::Script::reply, "HTTP/1.0 204\r\n\r\n");   // no reason phrase, HTTP/1.0
    config::HttpProbe http;
    http.path = "/ready?deep=1";
    http.host = "status.internal";
    const auto check = check_with(http);
    const auto result = probe(io, backend.endpoint(), check, "payments");
    EXPECT_TRUE(result.passed) << result.detail;
    EXPECT_EQ(result.detail, "HTTP 204");
    EXPECT_EQ(backend.request(), http_request("/ready?deep=1", "status.internal"));
}

TEST(ProbeHttp, Status503FailsNamingTheExpectedRanges) {
    asio::io_context io;
    Backend backend(io, Backend::Script::reply, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
    const auto check = check_with(config::HttpProbe{});
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_FALSE(result.passed);
    EXPECT_EQ(result.detail, "HTTP 503 not in 200-399");
}

TEST(ProbeHttp, StatusInAnyConfiguredRangePasses) {
    config::HttpProbe http;
    http.expected_statuses = {config::StatusRange{200, 200}, config::StatusRange{404, 404}};
    const auto check = check_with(http);
    {
        asio::io_context io;
        Backend backend(io, Backend::Script::reply, "HTTP/1.1 404 Not Found\r\n\r\n");
        const auto result = probe(io, backend.endpoint(), check);
        EXPECT_TRUE(result.passed) << result.detail;
        EXPECT_EQ(result.detail, "HTTP 404");
    }
    {
        asio::io_context io;
        Backend backend(io, Backend::Script::reply, "HTTP/1.1 302 Found\r\n\r\n");
        const auto result = probe(io, backend.endpoint(), check);
        EXPECT_FALSE(result.passed);
        EXPECT_EQ(result.detail, "HTTP 302 not in 200, 404");
    }
}

TEST(ProbeHttp, MalformedStatusLinesFail) {
    const auto check = check_with(config::HttpProbe{});
    for (const std::string reply : {"SSH-2.0-OpenSSH_9.6\r\n", "garbage without a line end", "HTTP/1.1 2000 OK\r\n",
                                    "HTTP/2 200\r\n", "HTTP/1.1 20x OK\r\n", "HTTP/1.1  200 OK\r\n"}) {
        asio::io_context io;
        Backend backend(io, Backend::Script::reply, reply);
        const auto result = probe(io, backend.endpoint(), check);
        EXPECT_FALSE(result.passed) << reply;
        EXPECT_EQ(result.detail, "malformed status line") << reply;
    }
}

TEST(ProbeHttp, GarbageFailsOnItsFirstBytesNotAtTheDeadline) {
    asio::io_context io;
    Backend backend(io, Backend::Script::send_at_once, "<html>");   // no line end, no close
    const auto check = check_with(config::HttpProbe{}, 2s);
    const auto start = std::chrono::steady_clock::now();
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_EQ(result.detail, "malformed status line");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(ProbeHttp, CloseBeforeTheStatusLineFails) {
    const auto check = check_with(config::HttpProbe{});
    for (const std::string reply : {"", "HTTP/1.1 20"}) {
        asio::io_context io;
        Backend backend(io, Backend::Script::reply, reply);
        const auto result = probe(io, backend.endpoint(), check);
        EXPECT_FALSE(result.passed) << reply;
        EXPECT_EQ(result.detail, "connection closed before a status line") << reply;
    }
}

TEST(ProbeTls, HandshakeWithASelfSignedServerPassesAndSendsSni) {
    asio::io_context io;
    TlsBackend backend(io);
    ASSERT_TRUE(backend.certificate_ok());
    const auto check = check_with(config::TlsProbe{});
    const auto result = probe(io, backend.endpoint(), check, "backend.example");
    EXPECT_TRUE(result.passed) << result.detail;
    EXPECT_EQ(result.detail, "TLS handshake ok");
    io.restart();
    io.run_for(1s);   // let the server side finish its half of the handshake
    EXPECT_EQ(backend.server_name(), "backend.example");
}

TEST(ProbeTls, NoSniForANameThatIsNotAHostname) {
    asio::io_context io;
    TlsBackend backend(io);
    ASSERT_TRUE(backend.certificate_ok());
    const auto check = check_with(config::TlsProbe{});
    const auto result = probe(io, backend.endpoint(), check, "127.0.0.1");
    EXPECT_TRUE(result.passed) << result.detail;
    io.restart();
    io.run_for(1s);
    EXPECT_EQ(backend.server_name(), "");
}

TEST(ProbeTls, PlainTcpServerThatClosesFails) {
    asio::io_context io;
    Backend backend(io, Backend::Script::close);
    const auto check = check_with(config::TlsProbe{});
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_FALSE(result.passed);
    EXPECT_TRUE(result.detail.starts_with("TLS: ")) << result.detail;
}

TEST(ProbeTls, PlainHttpServerFailsWithTheOpenSslReason) {
    asio::io_context io;
    Backend backend(io, Backend::Script::send_at_once, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    const auto check = check_with(config::TlsProbe{});
    const auto result = probe(io, backend.endpoint(), check);
    EXPECT_FALSE(result.passed);
    EXPECT_EQ(result.detail, "TLS: wrong version number");
}

}  // namespace
}  // namespace drover::health
