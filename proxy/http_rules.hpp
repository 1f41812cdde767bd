#pragma once
// The HTTP/1.1 framing and field rules Drover enforces on top of Beast's parser (RFC 9110/9112), as
// pure functions so they are unit-tested and fuzzed without sockets. Beast accepts some input a proxy
// must not (obs-fold, equal duplicate Content-Length, "5, 5" lists, ...): request smuggling lives in
// exactly those gaps between what two parsers accept.

#include <boost/beast/http/message.hpp>

#include <array>
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

// The first field of a name as header[name] finds it (`present` tells an empty value from none).
// check_request and check_response note them during the walk over the fields they already make:
// each basic_fields::find is a tree search with case-insensitive compares (benchmarks/profile).
struct FirstField {
    std::string_view value;
    bool present = false;
    void take(std::string_view v) {
        if (!present) {
            value = v;
            present = true;
        }
    }
};

// What header.keep_alive() says, from the message's first Connection field (Beast's own rule).
bool keep_alive(unsigned version, const FirstField& connection);

// Requests that say `x-drover-priority: low` are shed first: they never wait for a slot.
inline constexpr std::string_view kPriorityHeader = "x-drover-priority";

// What the proxy needs from a request once its header passed the checks.
struct RequestInfo {
    std::string_view host;          // authority to route on (Host, or absolute-form authority)
    std::string_view path;          // origin-form path (absolute-form reduced to its path)
    bool chunked = false;           // body framed by chunked
    std::optional<std::uint64_t> content_length;
    bool expect_continue = false;
    bool upgrade_websocket = false;   // Connection: upgrade + Upgrade: websocket
    FirstField connection;
    FirstField priority;              // kPriorityHeader
    bool keep_alive = false;          // header.keep_alive()
};

// Memory for a response's header fields: Beast allocates a node per field, and their malloc and free
// were ~1,000 instructions of a small proxied request (benchmarks/profile). Small blocks are kept for
// reuse by the thread that freed them (a bounded number per size); others go to operator new.
void* fields_allocate(std::size_t bytes);
void fields_deallocate(void* block, std::size_t bytes) noexcept;

template <class T>
struct FieldsAllocator {
    using value_type = T;
    FieldsAllocator() noexcept = default;
    template <class U>
    FieldsAllocator(const FieldsAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(fields_allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { fields_deallocate(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const FieldsAllocator<U>&) const noexcept {
        return true;
    }
};
using ResponseFields = boost::beast::http::basic_fields<FieldsAllocator<char>>;

using RequestHeader = boost::beast::http::request_header<>;
using ResponseHeader = boost::beast::http::response_header<ResponseFields>;

std::optional<Rejection> check_request(const RequestHeader& header, const RequestLimits& limits,
                                       RequestInfo& info);

// What the proxy needs from a response head that passed check_response.
struct ResponseInfo {
    FirstField connection;
    FirstField retry_after;
    bool chunked = false;      // header.chunked()
    bool keep_alive = false;   // header.keep_alive()
};

// Framing rules for a response from a backend; a rejection means 502 to the client.
std::optional<Rejection> check_response(const ResponseHeader& header);
std::optional<Rejection> check_response(const ResponseHeader& header, ResponseInfo& info);

// A Connection field's tokens, split once per message: is_hop_by_hop runs for every forwarded field,
// and splitting the list again for each was most of its cost (benchmarks/profile).
class ConnectionTokens {
public:
    explicit ConnectionTokens(std::string_view list);
    bool contains(std::string_view name) const;   // has_token(list, name)

private:
    std::string_view list_;
    std::array<std::string_view, 4> tokens_{};
    std::size_t count_ = 0;   // > tokens_.size(): too many to keep, contains() scans list_
};

// True for headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus any
// header named in a Connection field of the same message (`connection_tokens`).
bool is_hop_by_hop(std::string_view name, std::string_view connection_tokens);
bool is_hop_by_hop(std::string_view name, const ConnectionTokens& connection);

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
