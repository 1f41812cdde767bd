#pragma once
// L4 proxying: a session per client connection on its worker. Picks a host from the cluster's
// snapshot (next host on refusal or timeout, bounded), then relays bytes both ways with back-pressure,
// half-close and an idle timeout.

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace drover::proxy {

class Worker;
struct ListenerState;

// Takes a newly accepted client connection of a TCP listener.
void accept_tcp(Worker& worker, std::shared_ptr<ListenerState> listener, boost::asio::ip::tcp::socket client);

}  // namespace drover::proxy
