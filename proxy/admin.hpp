#pragma once
// The admin endpoint: a small HTTP/1.1 server on the control loop with a route table. It knows no
// Drover state itself; the server and the demo register the routes that render theirs.
// Loopback by default (config admin.address); every read and write has a deadline.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace drover::proxy {

struct AdminRequest {
    std::string method;   // "GET", "POST", ...
    std::string path;     // without the query string
    std::string query;
    std::string body;
    std::optional<std::string> origin;   // the Origin header (even empty): browsers send one, operators' tools do not
};

struct AdminResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string allow;   // 405 only: the methods the path does take

    static AdminResponse text(int status, std::string body) {
        return {status, "text/plain; charset=utf-8", std::move(body), {}};
    }
    static AdminResponse json(std::string body) { return {200, "application/json", std::move(body), {}}; }
};

class Admin {
public:
    using Handler = std::function<AdminResponse(const AdminRequest&)>;

    Admin(boost::asio::io_context& control, config::Address address);
    ~Admin();

    // `path` is exact unless it ends in '*', which matches any path with that prefix.
    void route(std::string method, std::string path, Handler handler);

    void start();   // binds (throws std::system_error) and starts accepting
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    AdminResponse handle(const AdminRequest& request) const;   // routing, also used by tests

private:
    struct Route {
        std::string method;
        std::string path;
        Handler handler;
    };

    boost::asio::io_context& control_;
    config::Address address_;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
    std::vector<Route> routes_;
};

}  // namespace drover::proxy
