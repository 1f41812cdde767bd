#pragma once
// The syntax of a Host value, shared by the request checks (proxy/http_rules) and the loader (a
// health check's `host`, a route's `match.host`): one rule for what a backend may be sent.

#include <string_view>

namespace drover::config {

// An IPv6 address as inet_pton reads one, without brackets: "::1", "fe80::1". No zone id.
bool is_ipv6_address(std::string_view text);

// A Host value (or an absolute-form authority): a reg-name, an IPv4 address or a bracketed IPv6
// address, and an optional port of at most 65535. No userinfo, path, spaces or controls: "[1::2::3]"
// or "a:99999" would be read differently by different backends.
bool is_valid_host(std::string_view host);

}  // namespace drover::config
