#pragma once
// A connection as the sessions and the upstream pool see it: plain TCP, or TLS over TCP. One type, so
// a session talks to a TLS client and a plain backend (or the other way round) with the same code,
// and the plain path costs one predictable branch per operation.
//
// Timeouts are the TCP layer's (beast::tcp_stream: expires_after on lowest()), and TLS inherits them:
// every TLS operation is a series of TCP ones. Plain writes go straight to the socket (no timer), as
// they always did; plain reads go through the tcp_stream and honour its expiry. A TLS operation runs
// under whatever expiry lowest() has, so set one (or expires_never) before starting it.
//
// OpenSSL stays in stream.cpp: TLS operations are type-erased there (one allocation per TLS
// operation, none on the plain path).

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <memory>
#include <optional>
#include <string>

#include "proxy/connection_budget.hpp"

struct ssl_st;
namespace boost::asio::ssl {
class context;
}
namespace drover::health {
class TlsClient;
}

namespace drover::proxy {

class Stream {
public:
    using executor_type = boost::beast::tcp_stream::executor_type;
    using ErrorHandler = boost::asio::any_completion_handler<void(boost::system::error_code)>;
    using IoHandler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

    explicit Stream(boost::beast::tcp_stream plain);
    explicit Stream(boost::asio::ip::tcp::socket socket);
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) noexcept;
    ~Stream();

    // Wraps the connection in TLS; the handshake comes next. Server side, with a listener's context.
    void start_tls_server(boost::asio::ssl::context& context);
    // Client side, as a cluster configures it; `peer` ("ip:port") must outlive the stream.
    void start_tls_client(std::shared_ptr<const health::TlsClient> client, const std::string& peer);

    bool tls() const { return tls_ != nullptr; }
    // An upstream connection counts against its cluster's limits.max_connections for as long as it lives.
    void count_in(ConnectionToken token) { counted_ = std::move(token); }
    ConnectionBudget* counted_in() const { return counted_.budget(); }
    // The TLS client it was started with (null for plain and server-side streams): pooled connections
    // are only lent to requests of the same cluster TLS settings.
    const health::TlsClient* tls_client() const;
    ssl_st* native_ssl() const;   // null for plain

    boost::beast::tcp_stream& lowest() { return tls_ ? tls_lowest() : *plain_; }
    boost::asio::ip::tcp::socket& socket() { return lowest().socket(); }
    executor_type get_executor() { return lowest().get_executor(); }

    template <class Token>
    auto async_handshake(Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { tls_handshake(ErrorHandler(std::move(handler))); }, token);
    }

    // Sends close_notify and waits for the peer's (bounded by lowest()'s expiry). Plain: completes at once.
    template <class Token>
    auto async_shutdown(Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler) { tls_shutdown(ErrorHandler(std::move(handler))); }, token);
    }

    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        if (!tls_) { return plain_->async_read_some(buffers, std::forward<Token>(token)); }
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, boost::asio::mutable_buffer b) { tls_read(b, IoHandler(std::move(handler))); }, token,
            first_buffer<boost::asio::mutable_buffer>(buffers));
    }

    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        if (!tls_) { return plain_->socket().async_write_some(buffers, std::forward<Token>(token)); }
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, boost::asio::const_buffer b) { tls_write(b, IoHandler(std::move(handler))); }, token,
            first_buffer<boost::asio::const_buffer>(buffers));
    }

private:
    struct Tls;

    // The first non-empty buffer of a sequence: TLS reads and writes one buffer per operation (a
    // composed write loops over the rest).
    template <class Buffer, class Buffers>
    static Buffer first_buffer(const Buffers& buffers) {
        for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers); ++it) {
            Buffer b(*it);
            if (b.size() > 0) { return b; }
        }
        return Buffer();
    }

    boost::beast::tcp_stream& tls_lowest();
    void tls_handshake(ErrorHandler handler);
    void tls_shutdown(ErrorHandler handler);
    void tls_read(boost::asio::mutable_buffer buffer, IoHandler handler);
    void tls_write(boost::asio::const_buffer buffer, IoHandler handler);

    std::optional<boost::beast::tcp_stream> plain_;   // empty once TLS owns the connection
    std::unique_ptr<Tls> tls_;
    ConnectionToken counted_;
};

}  // namespace drover::proxy
