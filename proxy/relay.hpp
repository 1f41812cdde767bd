#pragma once
// Byte relay between two connected sockets (or streams, TLS ones included), both ways: used by TCP sessions and by HTTP upgrades
// (WebSocket) once the backend agreed. Half-close passes through; an error in either direction, or
// `idle` with no byte either way, closes both. Idle sockets hold no buffer (see BufferPool).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "proxy/buffer_pool.hpp"
#include "proxy/stream.hpp"

namespace drover::proxy {

struct RelayCounters {
    std::atomic<std::uint64_t>& client_to_upstream;
    std::atomic<std::uint64_t>& upstream_to_client;
};

boost::asio::awaitable<void> relay(BufferPool& buffers, boost::asio::ip::tcp::socket& client,
                                   boost::asio::ip::tcp::socket& upstream, std::chrono::milliseconds idle,
                                   RelayCounters counters);

// The same between two streams, either of them TLS (two plain ones take the socket path above).
boost::asio::awaitable<void> relay(BufferPool& buffers, Stream& client, Stream& upstream, std::chrono::milliseconds idle,
                                   RelayCounters counters);

}  // namespace drover::proxy
