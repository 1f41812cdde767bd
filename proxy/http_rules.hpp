#pragma once
// The HTTP/1.1 framing and field rules Drover enforces on top of Beast's parser (RFC 9110/9112), as
// pure functions so they are unit-tested and fuzzed without sockets. Beast accepts some input a proxy
// must not (obs-fold, equal duplicate Content-Length, "5, 5" lists, ...): request smuggling lives in
// exactly those gaps between what two parsers accept.

#include <boost/beast/http/message.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace drover::proxy::http_rules {

struct Rejection {
    int status = 400;          // 400, 414 or 431 for requests; the caller maps responses to 502
    std::string_view reason;   // the drover-error value: "bad_request", "uri_too_long", ...
    std::string detail;        // for the body and the log: what exactly was wrong
};

// Incremental scan of a raw header block (start line + fields) as it arrives. Call with everything
// buffered so far; it resumes where it stopped. Rejects bare LF, obs-fold and control bytes other
// than HTAB. `complete` is set once the blank line ending the header has been seen.
struct HeadScan {
    std::size_t scanned = 0;
    bool complete = false;
};
std::optional<Rejection> scan_head(std::string_view bytes, HeadScan& state);

struct RequestLimits {
    std::size_t max_headers = 100;
    std::size_t max_uri_bytes = 8 * 1024;
};

// What the proxy needs from a request once its header passed the checks.
struct RequestInfo {
    std::string_view host;          // authority to route on (Host, or absolute-form authority)
    std::string_view path;          // origin-form path (absolute-form reduced to its path)
    bool chunked = false;           // body framed by chunked
    std::optional<std::uint64_t> content_length;
    bool expect_continue = false;
    bool upgrade_websocket = false;   // Connection: upgrade + Upgrade: websocket
};

using RequestHeader = boost::beast::http::request_header<>;
using ResponseHeader = boost::beast::http::response_header<>;

std::optional<Rejection> check_request(const RequestHeader& header, const RequestLimits& limits,
                                       RequestInfo& info);

// Framing rules for a response from a backend; a rejection means 502 to the client.
std::optional<Rejection> check_response(const ResponseHeader& header);

// True for headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus any
// header named in a Connection field of the same message (`connection_tokens`).
bool is_hop_by_hop(std::string_view name, std::string_view connection_tokens);

// Calls fn(name, value) for each field line of a raw head (start line skipped), in arrival order and
// with the sender's spelling; values are trimmed of surrounding whitespace. Only for heads that
// scan_head and the parser have already accepted.
template <class Fn>
void for_each_raw_field(std::string_view head, Fn fn) {
    auto eol = head.find("\r\n");
    while (eol != std::string_view::npos) {
        head.remove_prefix(eol + 2);
        eol = head.find("\r\n");
        const auto line = head.substr(0, eol);
        if (line.empty()) { return; }
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) { return; }
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) { value.remove_prefix(1); }
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) { value.remove_suffix(1); }
        fn(line.substr(0, colon), value);
    }
}

// ASCII case-insensitive equality. Used instead of boost::beast::iequals, whose slow path in Boost
// 1.81 reads one byte past both ends after a case mismatch (found by tests/fuzz/http_request_fuzz).
constexpr bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) { return false; }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        if (x >= 'A' && x <= 'Z') { x = static_cast<char>(x - 'A' + 'a'); }
        if (y >= 'A' && y <= 'Z') { y = static_cast<char>(y - 'A' + 'a'); }
        if (x != y) { return false; }
    }
    return true;
}

// True when `list` (a comma-separated header value) contains `token`, case-insensitively.
bool has_token(std::string_view list, std::string_view token);

}  // namespace drover::proxy::http_rules
