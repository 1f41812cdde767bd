#pragma once
// Drover's HTTP/1.1 head parser and the framing and field rules it enforces (RFC 9110/9112), as pure
// functions so they are unit-tested and fuzzed without sockets. The parser is Drover's own: heads are
// split in place into views of the bytes received (no per-field allocation, no tree of fields) and each
// field name is classified once, so the rules, the forwarded heads and the session look at a small
// enum instead of comparing names again. Request smuggling lives in the gaps between what two parsers
// accept: what is refused here (obs-fold, bare LF, whitespace before a colon, duplicate or listed
// Content-Length, Transfer-Encoding not ending in chunked, ...) is refused for both directions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drover::proxy::http_rules {

struct Rejection {
    int status = 400;          // 400, 414, 431 or 501 for requests; the caller maps responses to 502
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

// A field name Drover acts on, classified once when the head is parsed (case-insensitively).
// `lookalike` is a name with '_' that folds to a framing or forwarding header by mapping '_' to '-'
// (as CGI does): refused, since a backend might read it as the real one. The parsers set it;
// classify_field alone says `other` for such a name.
enum class FieldId : std::uint8_t {
    other,
    host,
    content_length,
    transfer_encoding,
    connection,
    keep_alive,
    proxy_connection,
    te,
    trailer,
    upgrade,
    expect,
    cookie,
    retry_after,
    x_forwarded_for,
    x_forwarded_proto,
    x_forwarded_host,
    x_request_id,
    x_forwarded_client_cert,
    x_drover_priority,
    date,
    lookalike,
};
FieldId classify_field(std::string_view name);   // `name`: a token (RFC 9110 §5.6.2)

// One field line: its name as sent, its value without surrounding whitespace, what the name is, and
// the length of the whole line from the name through its CRLF (name.data() + line_size is where the
// next line starts: runs of forwarded lines are copied as they came, benchmarks/profile).
struct Field {
    std::string_view name;
    std::string_view value;
    FieldId id = FieldId::other;
    std::uint32_t line_size = 0;
};

// The methods Drover treats specially (retries, HEAD answers, CONNECT refusal); the rest are `other`.
enum class Method : std::uint8_t { other, get, head, post, put, delete_, options, trace, connect, patch };

// A parsed request or response head: views into the bytes it was parsed from, which must outlive it.
// The session keeps one of each and reuses the field vector's capacity from request to request.
struct Head {
    unsigned version = 11;        // 10 or 11
    std::string_view method;      // request: as sent
    Method verb = Method::other;  // request
    std::string_view target;      // request
    unsigned status = 0;          // response
    std::string_view reason;      // response
    std::vector<Field> fields;    // in arrival order

    // The first field with this id or name, as Beast's header[name] finds it; empty if none.
    std::string_view operator[](FieldId id) const;
    std::string_view find(std::string_view name) const;
};

// Parse a complete head (start line to the blank line, inclusive) that scan_head accepted: every CR
// is followed by LF and there are no control bytes but HTAB. The request line must be
// `method SP request-target SP HTTP/1.x`; a status line `HTTP/1.x SP 3DIGIT [SP reason]`; a field
// line `token ":" OWS value OWS` (no whitespace before the colon). On success `head` views `bytes`.
std::optional<Rejection> parse_request_head(std::string_view bytes, Head& head);
std::optional<Rejection> parse_response_head(std::string_view bytes, Head& head);

struct RequestLimits {
    std::size_t max_headers = 100;
    std::size_t max_uri_bytes = 8 * 1024;
};

// The first field of a name as header[name] finds it (`present` tells an empty value from none).
// check_request and check_response note them during their walk over the fields.
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

// Whether the connection stays open after this message, from its first Connection field: HTTP/1.1
// unless it lists close, HTTP/1.0 only if it lists keep-alive.
bool keep_alive(unsigned version, const FirstField& connection);

// Requests that say `x-drover-priority: low` are shed first: they never wait for a slot.
inline constexpr std::string_view kPriorityHeader = "x-drover-priority";

// tchar (RFC 9110 section 5.6.2): a byte of a method or a field name.
bool is_token_char(unsigned char c);

// What the proxy needs from a request once its header passed the checks.
struct RequestInfo {
    std::string_view host;          // authority to route on (Host, or absolute-form authority)
    std::string_view path;          // origin-form path (absolute-form reduced to its path)
    bool path_lacks_slash = false;  // absolute-form with an empty path and a query: "/" goes before `path`
    bool chunked = false;           // body framed by chunked
    std::optional<std::uint64_t> content_length;
    bool expect_continue = false;
    bool upgrade_websocket = false;   // Connection: upgrade + Upgrade: websocket
    FirstField connection;
    FirstField priority;              // kPriorityHeader
    bool keep_alive = false;          // see keep_alive()
};

std::optional<Rejection> check_request(const Head& head, const RequestLimits& limits, RequestInfo& info);

// What the proxy needs from a response head that passed check_response.
struct ResponseInfo {
    FirstField connection;
    FirstField retry_after;
    bool chunked = false;                          // body framed by chunked
    std::optional<std::uint64_t> content_length;   // body framed by Content-Length
    bool keep_alive = false;                       // see keep_alive()
};

// Framing rules for a response from a backend; a rejection means 502 to the client.
std::optional<Rejection> check_response(const Head& head);
std::optional<Rejection> check_response(const Head& head, ResponseInfo& info);

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
// The same for a parsed field: its id tells the standard ones without comparing names.
bool is_hop_by_hop(const Field& field, const ConnectionTokens& connection);

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
