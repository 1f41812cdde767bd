#pragma once
// L7 proxying: one coroutine per client connection on its worker while it has a request to serve.
// Reads each request with Drover's own parser and rules (proxy/http_rules), routes it, sends
// it over a pooled keep-alive connection, and streams both bodies re-framed by Drover, so a backend
// never has to guess where a message ends. Requests on one connection are answered in order
// (pipelining). Between requests a plain connection is parked without a session (a socket and a
// deadline); a TLS one keeps its session, which holds the TLS state.

#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace drover::proxy {

class Worker;
struct ListenerState;

// Takes a newly accepted client connection of an HTTP listener.
void accept_http(Worker& worker, std::shared_ptr<ListenerState> listener, boost::asio::ip::tcp::socket client);

}  // namespace drover::proxy
