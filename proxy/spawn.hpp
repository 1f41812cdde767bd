#pragma once
// co_spawn with the completion handler every spawned flow must have: an exception that escapes a
// coroutine is logged with what it was doing and counted, never silently dropped.

#include <boost/asio/co_spawn.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <string_view>

#include "config/log.hpp"

namespace drover::proxy {

inline std::atomic<std::uint64_t> g_escaped_exceptions{0};

template <class Executor, class Awaitable>
void spawn(Executor executor, Awaitable&& flow, std::string_view what) {
    boost::asio::co_spawn(executor, std::forward<Awaitable>(flow), [what](std::exception_ptr e) {
        if (!e) { return; }
        g_escaped_exceptions.fetch_add(1, std::memory_order_relaxed);
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log::error("{}: unexpected exception: {}", what, ex.what());
        } catch (...) {
            log::error("{}: unexpected exception", what);
        }
    });
}

}  // namespace drover::proxy
