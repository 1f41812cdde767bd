#include "proxy/router.hpp"

#include <algorithm>
#include <cctype>

namespace drover::proxy {

namespace {
std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}
}  // namespace

std::string Router::normalize_host(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto close = host.find(']');
        return lower(host.substr(0, close == std::string_view::npos ? host.size() : close + 1));
    }
    const auto colon = host.rfind(':');
    std::string out = lower(colon == std::string_view::npos ? host : host.substr(0, colon));
    if (!out.empty() && out.back() == '.') { out.pop_back(); }   // "example.com." is the same name
    return out;
}

void Router::add(const config::RouteMatch& match, std::size_t cluster) {
    Route route;
    route.host = lower(match.host);
    if (route.host.starts_with("*.")) {
        route.wildcard = true;
        route.host.erase(0, 1);   // keep ".suffix" so "badexample.com" cannot match "*.example.com"
    }
    route.path_prefix = match.path_prefix;
    route.cluster = cluster;
    routes_.push_back(std::move(route));
}

std::optional<std::size_t> Router::match(std::string_view host, std::string_view path) const {
    const std::string name = normalize_host(host);
    for (const auto& route : routes_) {
        if (!route.host.empty()) {
            if (route.wildcard) {
                if (name.size() <= route.host.size() || !name.ends_with(route.host)) { continue; }
            } else if (name != route.host) {
                continue;
            }
        }
        if (!path.starts_with(route.path_prefix)) { continue; }
        return route.cluster;
    }
    return std::nullopt;
}

}  // namespace drover::proxy
