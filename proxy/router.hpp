#pragma once
// HTTP routing: the first route whose host and path prefix match wins. Pure; built once per listener
// at startup and read by every worker.

#include <array>
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

    // `host` as the client sent it (any case, optional :port); `target` the request path (and query).
    // Path prefixes are matched against normalize_path(target): "/public/../admin" is "/admin" to a
    // backend that resolves it, so it must be "/admin" to the routes too. The request is forwarded as
    // it came.
    std::optional<std::size_t> match(std::string_view host, std::string_view target) const;

    // The path with its dot segments resolved (RFC 3986 section 5.2.4; "%2e" counts as "."), repeated
    // slashes merged, and the query kept: "/a/./b/../c//d?x" -> "/a/c/d?x". Above the root ".." stays
    // at the root.
    static std::string normalize_path(std::string_view target);

    // "Example.COM:8080" -> "example.com"; "[::1]:80" -> "[::1]".
    static std::string normalize_host(std::string_view host);
    // The same without lower-casing (a view of `host`): "Example.COM.:8080" -> "Example.COM".
    static std::string_view host_name(std::string_view host);
    // "[0:0::0001]" -> "[::1]" (in `out`); what is no IPv6 literal comes back as it is.
    static constexpr std::size_t kLiteralSize = 48;   // INET6_ADDRSTRLEN and the brackets
    static std::string_view canonical_ipv6(std::string_view literal, std::array<char, kLiteralSize>& out);

private:
    std::vector<Route> routes_;
};

}  // namespace drover::proxy
