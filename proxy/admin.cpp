#include "proxy/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "config/log.hpp"
#include "proxy/spawn.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

// The path with its %XX escapes decoded: clients escape the brackets of IPv6 hosts in
// /clusters/<cluster>/[::1]:9001 as %5B and %5D. A '%' that starts no escape stays as it is.
std::string percent_decoded(std::string_view path) {
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') { return c - '0'; }
        if (c >= 'a' && c <= 'f') { return c - 'a' + 10; }
        if (c >= 'A' && c <= 'F') { return c - 'A' + 10; }
        return -1;
    };
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size() && hex(path[i + 1]) >= 0 && hex(path[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(path[i + 1]) * 16 + hex(path[i + 2])));
            i += 2;
        } else {
            out.push_back(path[i]);
        }
    }
    return out;
}

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kAdminTimeout = std::chrono::seconds(10);
constexpr std::size_t kAdminBodyLimit = 1024 * 1024;
constexpr std::size_t kAdminHeaderLimit = 16 * 1024;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);   // after EMFILE/ENFILE/ENOBUFS, as the listeners

asio::awaitable<void> serve_admin(const Admin& admin, tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(kAdminBodyLimit);
        parser.header_limit(kAdminHeaderLimit);
        stream.expires_after(kAdminTimeout);
        auto [read_ec, read_n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (read_ec) {
            if (read_ec != http::error::end_of_stream && read_ec != asio::error::eof &&
                read_ec != beast::error::timeout && read_ec != asio::error::connection_reset) {
                http::response<http::string_body> bad{http::status::bad_request, 11};
                bad.set(http::field::content_type, "text/plain; charset=utf-8");
                bad.set(http::field::connection, "close");
                bad.body() = "bad request: " + read_ec.message() + "\n";
                bad.prepare_payload();
                co_await http::async_write(stream, bad, use_tuple);
            }
            break;
        }
        auto& req = parser.get();
        AdminRequest request;
        request.method = std::string(req.method_string());
        const std::string_view target = req.target();
        const auto q = target.find('?');
        request.path = percent_decoded(target.substr(0, q));
        if (q != std::string_view::npos) { request.query = std::string(target.substr(q + 1)); }
        request.body = std::move(req.body());
        if (const auto origin = req.find(http::field::origin); origin != req.end()) { request.origin = std::string(origin->value()); }

        const AdminResponse result = admin.handle(request);
        http::response<http::string_body> res{static_cast<http::status>(result.status), req.version()};
        res.set(http::field::server, "drover");
        res.set(http::field::content_type, result.content_type);
        res.set(http::field::cache_control, "no-store");
        if (!result.allow.empty()) { res.set(http::field::allow, result.allow); }
        res.keep_alive(req.keep_alive());
        res.body() = result.body;
        res.prepare_payload();
        if (request.method == "HEAD") { res.body().clear(); }   // its Content-Length stays what a GET gets
        stream.expires_after(kAdminTimeout);
        auto [write_ec, written] = co_await http::async_write(stream, res, use_tuple);
        if (write_ec || !res.keep_alive()) { break; }
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_admin(const Admin& admin, tcp::acceptor& acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec) {
            if (!acceptor.is_open() || ec == asio::error::operation_aborted) { co_return; }
            // Out of descriptors (or buffers): the connection stays in the accept queue, so accepting
            // again at once fails again. Back off, as the listeners do, instead of spinning the control
            // loop (and its log) at full speed.
            log::warn("admin: accept failed: {}; trying again in {} ms", ec.message(), kAcceptBackoff.count());
            asio::steady_timer pause(acceptor.get_executor(), kAcceptBackoff);
            co_await pause.async_wait(use_tuple);
            continue;
        }
        spawn(acceptor.get_executor(), serve_admin(admin, std::move(socket)), "admin session");
    }
}

bool path_matches(const std::string& pattern, const std::string& path) {
    if (!pattern.empty() && pattern.back() == '*') {
        return path.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
    }
    return pattern == path;
}

}  // namespace

Admin::Admin(asio::io_context& control, config::Address address)
    : control_(control), address_(std::move(address)) {}

Admin::~Admin() { stop(); }

void Admin::route(std::string method, std::string path, Handler handler) {
    routes_.push_back({std::move(method), std::move(path), std::move(handler)});
}

void Admin::start() {
    const tcp::endpoint endpoint(asio::ip::make_address(address_.host), address_.port);
    acceptor_ = std::make_unique<tcp::acceptor>(control_);
    acceptor_->open(endpoint.protocol());
    acceptor_->set_option(asio::socket_base::reuse_address(true));
    acceptor_->bind(endpoint);
    acceptor_->listen();
    spawn(control_.get_executor(), accept_admin(*this, *acceptor_), "admin accept loop");
}

void Admin::stop() {
    if (acceptor_) {
        boost::system::error_code ignored;
        acceptor_->close(ignored);
    }
}

tcp::endpoint Admin::local_endpoint() const { return acceptor_->local_endpoint(); }

AdminResponse Admin::handle(const AdminRequest& request) const {
    std::string allow;
    const std::string method = request.method == "HEAD" ? "GET" : request.method;
    // A web page the operator has open could make the browser POST here (a form needs no CORS
    // preflight): /drain would stop the proxy. Browsers name the page's origin on every POST; curl,
    // scripts and orchestrators send none. So a change that comes with an Origin is refused.
    if (method != "GET" && request.origin) {
        return AdminResponse::text(403, "forbidden: the admin endpoint takes no requests from web pages (Origin: " +
                                            *request.origin + ")\n");
    }
    for (const auto& route : routes_) {
        if (!path_matches(route.path, request.path)) { continue; }
        if (route.method == method) { return route.handler(request); }
        allow += (allow.empty() ? "" : ", ") + route.method;
    }
    if (!allow.empty()) {
        auto response = AdminResponse::text(405, "method not allowed; use " + allow + "\n");
        response.allow = std::move(allow);
        return response;
    }
    return AdminResponse::text(404, "not found: " + request.path + "\n");
}

}  // namespace drover::proxy
