#pragma once
// `drover --demo`: three small HTTP replicas on loopback, on their own thread (they stand in for
// separate machines), a config that puts Drover in front of them, and admin routes to take a replica
// down and bring it back so a user can watch traffic move.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"

namespace drover::proxy {

class Admin;

class Demo {
public:
    static constexpr int kReplicas = 3;

    Demo();
    ~Demo();
    Demo(const Demo&) = delete;
    Demo& operator=(const Demo&) = delete;

    // Binds the replicas on 127.0.0.1 (ephemeral ports) and starts their thread. Throws on failure.
    void start();
    // The embedded config: a listener on `listen`, admin on `admin`, a cluster of the replicas.
    std::string config_yaml(const config::Address& listen, const config::Address& admin) const;
    // GET /demo, POST /demo/replicas/<n>/stop|start.
    void register_routes(Admin& admin);
    void print_tour(const std::string& listen, const std::string& admin) const;

    struct Replica;

private:
    bool set_running(int id, bool running);

    boost::asio::io_context context_{1};
    // Keeps the replicas' thread running while every replica is stopped, so a start still gets through.
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{context_.get_executor()};
    std::vector<std::shared_ptr<Replica>> replicas_;
    std::thread thread_;
};

}  // namespace drover::proxy
