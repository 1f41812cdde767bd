#include "proxy/router.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "proxy/http_rules.hpp"

namespace drover::proxy {

namespace {
std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}
}  // namespace

std::string_view Router::host_name(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        return host.substr(0, close == std::string_view::npos ? host.size() : close + 1);
    }
    const auto colon = host.rfind(':');
    std::string_view name = colon == std::string_view::npos ? host : host.substr(0, colon);
    if (!name.empty() && name.back() == '.') { name.remove_suffix(1); }   // "example.com." is the same name
    return name;
}

std::string Router::normalize_host(std::string_view host) { return lower(host_name(host)); }

std::string_view Router::canonical_ipv6(std::string_view literal, std::array<char, kLiteralSize>& out) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']' || literal.size() - 2 >= text.size()) {
        return literal;
    }
    std::memcpy(text.data(), literal.data() + 1, literal.size() - 2);
    in6_addr address{};
    if (inet_pton(AF_INET6, text.data(), &address) != 1 || inet_ntop(AF_INET6, &address, out.data() + 1, INET6_ADDRSTRLEN) == nullptr) {
        return literal;
    }
    out[0] = '[';
    const std::size_t size = std::strlen(out.data());
    out[size] = ']';
    return {out.data(), size + 1};
}

void Router::add(const config::RouteMatch& match, std::size_t cluster) {
    Route route;
    route.host = lower(match.host);
    if (route.host.starts_with('[')) {
        // An IPv6 literal is compared as an address: "[0::1]" and "[::1]" are one host.
        std::array<char, kLiteralSize> canonical{};
        route.host = std::string(canonical_ipv6(route.host, canonical));
    }
    if (route.host.starts_with("*.")) {
        route.wildcard = true;
        route.host.erase(0, 1);   // keep ".suffix" so "badexample.com" cannot match "*.example.com"
    }
    route.path_prefix = match.path_prefix;
    route.cluster = cluster;
    routes_.push_back(std::move(route));
}

std::string Router::normalize_path(std::string_view target) {
    const auto query_at = target.find('?');
    const std::string_view path = target.substr(0, query_at);
    const std::string_view query = query_at == std::string_view::npos ? std::string_view{} : target.substr(query_at);
    // Segments, with %2e (either case) read as '.': what a backend may take for a dot segment.
    std::vector<std::string> segments;
    std::string segment;
    const auto end_segment = [&] {
        if (segment == "..") {
            if (!segments.empty()) { segments.pop_back(); }
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        segment.clear();
    };
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '/') {
            end_segment();
        } else if (path[i] == '%' && i + 2 < path.size() && path[i + 1] == '2' && (path[i + 2] == 'e' || path[i + 2] == 'E')) {
            segment += '.';
            i += 2;
        } else {
            segment += path[i];
        }
    }
    const bool trailing = !path.empty() && (path.back() == '/' || segment == "." || segment == "..");
    end_segment();
    std::string out;
    for (const auto& s : segments) {
        out += '/';
        out += s;
    }
    if (out.empty() || trailing) { out += '/'; }
    out += query;
    return out;
}

std::optional<std::size_t> Router::match(std::string_view host, std::string_view target) const {
    // Only a path that may hold a dot segment or a repeated slash is rewritten for the match (the
    // usual one is compared as it came, with no allocation).
    bool plain = true;
    for (std::size_t i = 0; i < target.size() && target[i] != '?' && plain; ++i) {
        const char next = i + 1 < target.size() ? target[i + 1] : '\0';
        plain = target[i] != '%' && !(target[i] == '/' && (next == '.' || next == '/'));
    }
    std::string normalized;
    if (!plain) { normalized = normalize_path(target); }
    const std::string_view path = normalized.empty() ? target : std::string_view{normalized};
    // Route hosts are lower case; the request's is compared as sent, case-insensitively, with no
    // copy (a lower-cased copy per request was ~400 instructions, benchmarks/profile).
    std::optional<std::string_view> name_of_host;   // worked out for the first route with a host
    std::array<char, kLiteralSize> literal;          // an IPv6 Host's canonical text
    for (const auto& route : routes_) {
        if (!route.host.empty()) {
            if (!name_of_host) {
                name_of_host = host_name(host);
                if (name_of_host->starts_with('[')) { name_of_host = canonical_ipv6(*name_of_host, literal); }
            }
            const std::string_view name = *name_of_host;
            if (route.wildcard) {
                if (name.size() <= route.host.size() ||
                    !http_rules::iequals(name.substr(name.size() - route.host.size()), route.host)) {
                    continue;
                }
            } else if (!http_rules::iequals(name, route.host)) {
                continue;
            }
        }
        // "OPTIONS *" asks about the server as a whole: the catch-all prefix "/" takes it too.
        if (!path.starts_with(route.path_prefix) && !(path == "*" && route.path_prefix == "/")) { continue; }
        return route.cluster;
    }
    return std::nullopt;
}

}  // namespace drover::proxy
