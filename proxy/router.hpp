#pragma once
// HTTP routing: the first route whose host and path prefix match wins. Pure; built once per listener
// at startup and read by every worker.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace drover::proxy {

class Router {
public:
    // A route's target with this bit set names a cluster template (by index), not a cluster.
    static constexpr std::size_t kTemplate = std::size_t{1} << (sizeof(std::size_t) * 8 - 1);

    struct Route {
        std::string host;          // lower-case; exact, "*.suffix" (suffix kept with its dot), or empty
        bool wildcard = false;
        std::string path_prefix;   // empty = any
        std::size_t cluster = 0;
    };

    void add(const config::RouteMatch& match, std::size_t cluster);

    // `host` as the client sent it (any case, optional :port); `path` the request path.
    std::optional<std::size_t> match(std::string_view host, std::string_view path) const;

    // "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]".
    static std::string normalize_host(std::string_view host);

private:
    std::vector<Route> routes_;
};

}  // namespace drover::proxy
