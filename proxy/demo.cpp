#include "proxy/demo.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include <atomic>
#include <future>

#include "config/log.hpp"
#include "discovery/endpoint.hpp"
#include "proxy/admin.hpp"
#include "proxy/spawn.hpp"
#include "proxy/text_writers.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kReplicaReadTimeout = std::chrono::seconds(5);
constexpr std::size_t kMaxRequestHead = 16 * 1024;
}  // namespace

struct Demo::Replica {
    int id = 0;
    tcp::endpoint address;
    std::unique_ptr<tcp::acceptor> acceptor;
    std::atomic<bool> running{false};
    std::atomic<std::uint64_t> requests{0};
};

namespace {

// Answers one HTTP request per connection: enough for curl and browsers, nothing more.
asio::awaitable<void> serve_replica_connection(std::shared_ptr<Demo::Replica> replica, tcp::socket socket) {
    asio::streambuf head(kMaxRequestHead);
    asio::steady_timer timer(socket.get_executor(), kReplicaReadTimeout);
    auto result = co_await (asio::async_read_until(socket, head, "\r\n\r\n", use_tuple) || timer.async_wait(use_tuple));
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) { co_return; }
    // Drover's health checks are answered but not counted: the count is what the tour's curl sees.
    const std::string_view request_line(static_cast<const char*>(head.data().data()),
                                        std::min<std::size_t>(head.size(), 32));
    if (request_line.starts_with("GET /healthz ")) {
        static constexpr std::string_view kHealthy =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
        co_await asio::async_write(socket, asio::buffer(kHealthy), use_tuple);
        co_return;
    }
    const auto n = replica->requests.fetch_add(1) + 1;
    const std::string body = fmt::format("hello from demo replica {} ({}), request #{} it served\n", replica->id,
                                         discovery::to_string(replica->address), n);
    const std::string response = fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Demo-Replica: {}\r\n"
        "Connection: close\r\n\r\n{}",
        body.size(), replica->id, body);
    co_await asio::async_write(socket, asio::buffer(response), use_tuple);
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_replica(std::shared_ptr<Demo::Replica> replica) {
    for (;;) {
        auto [ec, socket] = co_await replica->acceptor->async_accept(use_tuple);
        if (ec) {
            if (!replica->acceptor->is_open()) { co_return; }
            continue;
        }
        spawn(replica->acceptor->get_executor(), serve_replica_connection(replica, std::move(socket)),
              "demo replica");
    }
}

void open_replica(asio::io_context& context, Demo::Replica& replica) {
    replica.acceptor = std::make_unique<tcp::acceptor>(context);
    replica.acceptor->open(replica.address.protocol());
    replica.acceptor->set_option(asio::socket_base::reuse_address(true));
    replica.acceptor->bind(replica.address);
    replica.acceptor->listen();
    replica.address = replica.acceptor->local_endpoint();
    replica.running = true;
}

}  // namespace

Demo::Demo() = default;

Demo::~Demo() {
    context_.stop();
    if (thread_.joinable()) { thread_.join(); }
}

void Demo::start() {
    for (int id = 1; id <= kReplicas; ++id) {
        auto replica = std::make_shared<Replica>();
        replica->id = id;
        replica->address = tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
        open_replica(context_, *replica);
        spawn(context_.get_executor(), accept_replica(replica), "demo replica accept");
        log::info("demo replica {} listening on {}", id, discovery::to_string(replica->address));
        replicas_.push_back(std::move(replica));
    }
    thread_ = std::thread([this] { context_.run(); });
}

std::string Demo::config_yaml(const config::Address& listen, const config::Address& admin) const {
    std::string hosts;
    for (const auto& r : replicas_) {
        hosts += fmt::format("{}{}", hosts.empty() ? "" : ", ", discovery::to_string(r->address));
    }
    return fmt::format(R"(# The embedded demo: Drover in front of three replicas that live in this process.
admin:
  address: "{}"
listeners:
  - name: demo
    address: "{}"
    protocol: http
    routes:
      - match: {{ path_prefix: / }}
        cluster: demo
clusters:
  - name: demo
    discovery:
      static: [{}]
    load_balancing: round_robin   # replicas visibly take turns
    timeouts: {{ connect: 250ms }}
    # Self-healing is on without these lines (a TCP check, outlier detection, retries, slow start);
    # an HTTP check and a short ramp make it easy to watch in /clusters.
    health_check: {{ http: {{ path: /healthz }} }}
    slow_start: 3s
)",
                       admin.str(), listen.str(), hosts);
}

bool Demo::set_running(int id, bool running) {
    if (id < 1 || id > kReplicas) { return false; }
    auto replica = replicas_[static_cast<std::size_t>(id - 1)];
    // Shared: if the wait below gives up, the posted work must not touch a dead promise.
    auto done = std::make_shared<std::promise<bool>>();
    auto result = done->get_future();
    asio::post(context_, [this, replica, running, done] {
        try {
            if (running && !replica->running) {
                open_replica(context_, *replica);   // same port again: it "comes back"
                spawn(context_.get_executor(), accept_replica(replica), "demo replica accept");
            } else if (!running && replica->running) {
                replica->acceptor->close();   // new connections are refused from now on
                replica->running = false;
            }
            done->set_value(true);
        } catch (const std::exception& e) {
            log::warn("demo replica {}: {}", replica->id, e.what());
            done->set_value(false);
        }
    });
    return result.wait_for(std::chrono::seconds(2)) == std::future_status::ready && result.get();
}

void Demo::register_routes(Admin& admin) {
    admin.route("GET", "/demo", [this](const AdminRequest&) {
        JsonWriter j;
        j.begin_object().key("replicas").begin_array();
        for (const auto& r : replicas_) {
            j.begin_object();
            j.key("id").value(std::int64_t{r->id});
            j.key("address").value(discovery::to_string(r->address));
            j.key("state").value(r->running ? "up" : "down");
            j.key("requests").value(r->requests.load());
            j.end_object();
        }
        j.end_array().end_object();
        return AdminResponse::json(j.take());
    });
    admin.route("POST", "/demo/replicas/*", [this](const AdminRequest& request) {
        // /demo/replicas/<id>/stop | /demo/replicas/<id>/start
        int id = 0;
        char action[8] = {};
        if (std::sscanf(request.path.c_str(), "/demo/replicas/%d/%7s", &id, action) != 2 ||
            (std::string_view(action) != "stop" && std::string_view(action) != "start")) {
            return AdminResponse::text(404, "use /demo/replicas/<1-3>/stop or /start\n");
        }
        const bool running = std::string_view(action) == "start";
        if (!set_running(id, running)) {
            return AdminResponse::text(404, fmt::format("no demo replica {}\n", id));
        }
        log::info("demo replica {} {}", id, running ? "started" : "stopped");
        return AdminResponse::text(200, fmt::format("demo replica {} {}\n", id, running ? "started" : "stopped"));
    });
}

void Demo::print_tour(const std::string& listen, const std::string& admin) const {
    const std::string tour = fmt::format(R"(
Drover demo is running: an HTTP load balancer on {0} in front of {2} replicas.
Try, in another terminal:
  curl -s http://{0}/                                  # run it a few times: replicas share the requests
  curl -s http://{1}/clusters                          # each host: its state, and why
  curl -s -X POST http://{1}/demo/replicas/2/stop      # take replica 2 down ...
  for i in 1 2 3 4; do curl -s http://{0}/; done       # ... traffic moves to 1 and 3, no errors
  sleep 2; curl -s http://{1}/clusters                 # replica 2 out of rotation (unhealthy or ejected): why says so
  curl -s -X POST http://{1}/demo/replicas/2/start     # it passes its checks and ramps back up
  curl -s http://{1}/metrics | grep -E 'drover_(http|outlier|health)'   # Prometheus metrics
  curl -si http://{0}/ -H 'Content-Length: 1' -H 'Content-Length: 1'  # ambiguous framing: 400, drover-error
Ctrl-C drains and stops.
)",
                                         listen, admin, kReplicas);
    std::fputs(tour.c_str(), stdout);
    std::fflush(stdout);
}

}  // namespace drover::proxy
