#include "proxy/stream.hpp"

#include <openssl/ssl.h>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include <new>

#include "health/tls_client.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

struct Stream::Tls {
    Tls(beast::tcp_stream next, asio::ssl::context& context, bool server_side)
        : stream(std::move(next), context), server(server_side) {}
    ~Tls() {
        if (!server) { health::keep_session(stream.native_handle()); }
    }
    Tls(const Tls&) = delete;
    Tls& operator=(const Tls&) = delete;

    asio::ssl::stream<beast::tcp_stream> stream;
    bool server;
    std::shared_ptr<const health::TlsClient> client;   // kept alive: OpenSSL calls back into it
};

Stream::Stream(beast::tcp_stream plain) : plain_(std::move(plain)) {}
Stream::Stream(asio::ip::tcp::socket socket) : plain_(std::in_place, std::move(socket)) {}
Stream::Stream(Stream&&) noexcept = default;
// beast's tcp_stream moves but does not move-assign; the pool's vectors need both.
Stream& Stream::operator=(Stream&& other) noexcept {
    if (this != &other) {
        this->~Stream();
        new (this) Stream(std::move(other));
    }
    return *this;
}
Stream::~Stream() = default;

void Stream::start_tls_server(asio::ssl::context& context) {
    tls_ = std::make_unique<Tls>(std::move(*plain_), context, true);
    plain_.reset();
}

void Stream::start_tls_client(std::shared_ptr<const health::TlsClient> client, const std::string& peer) {
    tls_ = std::make_unique<Tls>(std::move(*plain_), client->context(), false);
    plain_.reset();
    client->prepare(tls_->stream.native_handle(), peer);
    tls_->client = std::move(client);
}

const health::TlsClient* Stream::tls_client() const { return tls_ ? tls_->client.get() : nullptr; }

ssl_st* Stream::native_ssl() const { return tls_ ? tls_->stream.native_handle() : nullptr; }

beast::tcp_stream& Stream::tls_lowest() { return tls_->stream.next_layer(); }

namespace {

// asio 1.81 cannot run an SSL operation under any_completion_handler's own executor type (it requires
// blocking.never of it); the stream's executor is the same worker's, and carries the handler's other
// associations (cancellation slot, allocator) along.
template <class Handler>
auto on_stream_executor(asio::ssl::stream<beast::tcp_stream>& stream, Handler&& handler) {
    return asio::bind_executor(stream.get_executor(), std::forward<Handler>(handler));
}

}  // namespace

void Stream::tls_handshake(ErrorHandler handler) {
    if (!tls_) {
        asio::post(plain_->get_executor(), asio::append(std::move(handler), error_code{}));
        return;
    }
    tls_->stream.async_handshake(tls_->server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                                 on_stream_executor(tls_->stream, std::move(handler)));
}

void Stream::tls_shutdown(ErrorHandler handler) {
    if (!tls_) {
        asio::post(plain_->get_executor(), asio::append(std::move(handler), error_code{}));
        return;
    }
    tls_->stream.async_shutdown(on_stream_executor(tls_->stream, std::move(handler)));
}

void Stream::tls_read(asio::mutable_buffer buffer, IoHandler handler) {
    tls_->stream.async_read_some(buffer, on_stream_executor(tls_->stream, std::move(handler)));
}

void Stream::tls_write(asio::const_buffer buffer, IoHandler handler) {
    tls_->stream.async_write_some(buffer, on_stream_executor(tls_->stream, std::move(handler)));
}

}  // namespace drover::proxy
