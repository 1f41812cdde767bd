#include "config/host_syntax.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>

namespace drover::config {

namespace {

// A reg-name's bytes (RFC 3986 §3.2.2: unreserved, sub-delims, and '%' of a pct-encoding).
constexpr std::array<bool, 256> kRegNameChar = [] {
    std::array<bool, 256> table{};
    for (int c = '0'; c <= '9'; ++c) { table[static_cast<std::size_t>(c)] = true; }
    for (int c = 'a'; c <= 'z'; ++c) { table[static_cast<std::size_t>(c)] = true; }
    for (int c = 'A'; c <= 'Z'; ++c) { table[static_cast<std::size_t>(c)] = true; }
    for (char c : std::string_view("-._~%!$&'()*+,;=")) { table[static_cast<unsigned char>(c)] = true; }
    return table;
}();

}  // namespace

bool is_ipv6_address(std::string_view text) {
    std::array<char, INET6_ADDRSTRLEN> z{};
    if (text.empty() || text.size() >= z.size()) { return false; }
    std::copy(text.begin(), text.end(), z.begin());
    in6_addr address{};
    return inet_pton(AF_INET6, z.data(), &address) == 1;
}

bool is_valid_host(std::string_view host) {
    if (host.empty()) { return false; }
    std::size_t i = 0;
    if (host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos || !is_ipv6_address(host.substr(1, close - 1))) { return false; }
        i = close + 1;
    } else {
        for (; i < host.size() && host[i] != ':'; ++i) {
            if (!kRegNameChar[static_cast<unsigned char>(host[i])]) { return false; }
        }
        if (i == 0) { return false; }
    }
    if (i == host.size()) { return true; }
    if (host[i] != ':') { return false; }
    const auto port = host.substr(i + 1);
    if (port.empty()) { return true; }
    // from_chars takes digits only (no sign, no space) for an unsigned.
    unsigned number = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    return ec == std::errc{} && end == port.data() + port.size() && port.size() <= 5 && number <= 65535;
}

}  // namespace drover::config
