#include "proxy/http_rules.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstring>
#include <utility>

#include "config/host_syntax.hpp"

namespace drover::proxy::http_rules {

namespace {

Rejection bad(std::string detail) { return {400, "bad_request", std::move(detail)}; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) { s.remove_prefix(1); }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) { s.remove_suffix(1); }
    return s;
}

// Calls `fn` with each trimmed element of a comma-separated list; stops when it returns false.
template <class Fn>
void for_each_token(std::string_view list, Fn fn) {
    while (!list.empty()) {
        const auto comma = list.find(',');
        const auto token = trim(list.substr(0, comma));
        if (!fn(token)) { return; }
        if (comma == std::string_view::npos) { return; }
        list.remove_prefix(comma + 1);
    }
}

bool all_digits(std::string_view s) {
    return !s.empty() && s.size() <= 19 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// tchar (RFC 9110 §5.6.2): what a method or a field name is made of. A field name's '_' is marked
// apart (kUnderscore), so the parser learns whether a name has one while it reads it.
constexpr std::uint8_t kToken = 1;
constexpr std::uint8_t kUnderscore = 2;
constexpr std::array<std::uint8_t, 256> kNameByte = [] {
    std::array<std::uint8_t, 256> table{};
    for (int c = '0'; c <= '9'; ++c) { table[static_cast<std::size_t>(c)] = kToken; }
    for (int c = 'a'; c <= 'z'; ++c) { table[static_cast<std::size_t>(c)] = kToken; }
    for (int c = 'A'; c <= 'Z'; ++c) { table[static_cast<std::size_t>(c)] = kToken; }
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) { table[static_cast<unsigned char>(c)] = kToken; }
    table[static_cast<std::size_t>('_')] = kToken | kUnderscore;
    return table;
}();

// Names a backend may fold to a framing or forwarding header by mapping '_' to '-' (CGI does).
bool is_smuggling_lookalike(std::string_view name) {
    if (name.size() > 23) { return false; }   // longer than every sensitive name
    std::array<char, 23> folded{};
    std::replace_copy(name.begin(), name.end(), folded.begin(), '_', '-');
    switch (classify_field({folded.data(), name.size()})) {
        case FieldId::content_length:
        case FieldId::transfer_encoding:
        case FieldId::host:
        case FieldId::connection:
        case FieldId::upgrade:
        case FieldId::x_forwarded_for:
        case FieldId::x_forwarded_proto:
        case FieldId::x_forwarded_host:
        case FieldId::x_forwarded_client_cert:
        case FieldId::x_request_id: return true;
        default: return false;
    }
}

}  // namespace

bool is_token_char(unsigned char c) { return kNameByte[c] != 0; }

namespace {

// The length of the token at the start of `s`.
std::size_t token_length(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size() && kNameByte[static_cast<unsigned char>(s[i])] != 0) { ++i; }
    return i;
}

// A comma-separated list whose elements are tokens or empty (RFC 9110 §5.6.1), as Connection and
// Transfer-Encoding must be: anything else (spaces inside an element, quotes, parameters, non-ASCII)
// is refused, as other parsers refuse it; reading such a list differently is how smuggling starts.
bool token_list(std::string_view list) {
    bool ok = true;
    for_each_token(list, [&](std::string_view token) {
        ok = token_length(token) == token.size();
        return ok;
    });
    return ok;
}

// A Connection or Proxy-Connection field (both must be token lists); the first Connection is noted.
std::optional<Rejection> take_connection(const Field& field, FirstField& connection) {
    const bool is_connection = field.id == FieldId::connection;
    if (!token_list(field.value)) {
        return bad(is_connection ? "Connection is not a list of tokens" : "Proxy-Connection is not a list of tokens");
    }
    if (is_connection) { connection.take(field.value); }
    return std::nullopt;
}

// Content-Length / Transfer-Encoding rules shared by requests and responses, fed the framing fields
// during the caller's walk over the fields.
struct Framing {
    std::size_t cl_count = 0;
    std::size_t te_count = 0;
    std::size_t chunked_seen = 0;
    std::size_t other_codings = 0;   // gzip, deflate, ...: Drover frames bodies but decodes no coding
    std::string_view te_last;
    bool te_bad = false;
    std::string_view problem;   // the first Content-Length problem
    std::optional<std::uint64_t> content_length;

    void add(const Field& field) {
        if (field.id == FieldId::content_length) {
            ++cl_count;
            if (!all_digits(field.value)) {
                problem = "Content-Length must be plain digits";
                return;
            }
            // At most 19 digits: fits, so from_chars reads it all.
            std::uint64_t length = 0;
            std::from_chars(field.value.data(), field.value.data() + field.value.size(), length);
            content_length = length;
        } else {
            ++te_count;
            // An empty field names no coding; after a chunked one it is a second Transfer-Encoding
            // that Beast (and so a backend built on it) refuses, so it must not pass here either.
            if (field.value.empty() || !token_list(field.value)) {
                te_bad = true;
                return;
            }
            for_each_token(field.value, [&](std::string_view token) {
                if (token.empty()) {
                    te_bad = true;
                    return false;
                }
                if (iequals(token, "chunked")) {
                    ++chunked_seen;
                } else {
                    ++other_codings;
                }
                te_last = token;
                return true;
            });
        }
    }

    // The problem, or empty; `chunked` and `length` say how the body is framed.
    std::string_view finish(bool& chunked, std::optional<std::uint64_t>& length) const {
        if (!problem.empty()) { return problem; }
        if (cl_count > 1) { return "more than one Content-Length"; }
        if (te_count > 0 && cl_count > 0) { return "both Content-Length and Transfer-Encoding"; }
        if (te_count > 0) {
            if (te_bad || !iequals(te_last, "chunked") || chunked_seen != 1) {
                return "Transfer-Encoding must end in chunked, once";
            }
            chunked = true;
        }
        length = content_length;
        return {};
    }
};

// "HTTP/1.0" -> 10, "HTTP/1.1" -> 11; another "HTTP/d.d" -> 0; anything else -> nullopt.
std::optional<unsigned> http_version(std::string_view s) {
    if (s.size() != 8 || s.substr(0, 5) != "HTTP/" || s[6] != '.' || !std::isdigit(static_cast<unsigned char>(s[5])) ||
        !std::isdigit(static_cast<unsigned char>(s[7]))) {
        return std::nullopt;
    }
    if (s[5] == '1' && (s[7] == '0' || s[7] == '1')) { return s[7] == '0' ? 10u : 11u; }
    return 0u;
}

Method method_of(std::string_view m) {
    switch (m.size()) {
        case 3: return m == "GET" ? Method::get : m == "PUT" ? Method::put : Method::other;
        case 4: return m == "HEAD" ? Method::head : m == "POST" ? Method::post : Method::other;
        case 5: return m == "TRACE" ? Method::trace : m == "PATCH" ? Method::patch : Method::other;
        case 6: return m == "DELETE" ? Method::delete_ : Method::other;
        case 7: return m == "OPTIONS" ? Method::options : m == "CONNECT" ? Method::connect : Method::other;
        default: return Method::other;
    }
}

// The line at the start of `rest` (without its CRLF), moving `rest` past it. False if `rest` has no
// CRLF (scan_head guarantees one for every CR; this keeps the parser safe on any input).
bool take_line(std::string_view& rest, std::string_view& line) {
    const void* cr = std::memchr(rest.data(), '\r', rest.size());
    if (cr == nullptr) { return false; }
    const auto at = static_cast<std::size_t>(static_cast<const char*>(cr) - rest.data());
    if (at + 1 >= rest.size() || rest[at + 1] != '\n') { return false; }
    line = rest.substr(0, at);
    rest.remove_prefix(at + 2);
    return true;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

// The field lines after the start line, up to the blank line: one pass over each line (the name's
// token bytes, then the value up to its CR), no line splitting first.
std::optional<Rejection> parse_fields(std::string_view rest, Head& head) {
    head.fields.clear();
    const char* p = rest.data();
    const char* const end = p + rest.size();
    while (end - p >= 2) {
        if (p[0] == '\r') {
            if (p[1] == '\n') { return std::nullopt; }   // the blank line ending the head
            break;
        }
        const char* const line = p;
        std::uint8_t seen = 0;
        for (; p < end; ++p) {
            const std::uint8_t byte = kNameByte[static_cast<unsigned char>(*p)];
            if (byte == 0) { break; }
            seen |= byte;
        }
        if (p == end || *p != ':') {
            if (p < end && is_space(*p)) { return bad("whitespace between a header field name and its colon"); }
            return bad("malformed header field line");
        }
        if (p == line) { return bad("empty header field name"); }
        const std::string_view name(line, static_cast<std::size_t>(p - line));
        ++p;
        while (p < end && is_space(*p)) { ++p; }
        const char* const value = p;
        const auto* cr = static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(end - p)));
        if (cr == nullptr || end - cr < 2 || cr[1] != '\n') { break; }
        const char* value_end = cr;
        while (value_end > value && is_space(value_end[-1])) { --value_end; }
        FieldId id = classify_field(name);
        if (id == FieldId::other && (seen & kUnderscore) != 0 && is_smuggling_lookalike(name)) {
            id = FieldId::lookalike;
        }
        p = cr + 2;
        head.fields.push_back(Field{name, std::string_view(value, static_cast<std::size_t>(value_end - value)), id,
                                    static_cast<std::uint32_t>(p - line)});
    }
    return bad("header not ended by an empty line");
}

// Flags the bytes of an 8-byte word that scan_head must look at: controls (CR, LF, HTAB and the
// forbidden ones) and DEL. Never misses one; may flag a byte above a flagged one (a borrow), which
// the byte-wise check then passes, so the lowest flag is where to look next.
constexpr std::uint64_t special_bytes(std::uint64_t word) {
    constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
    constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
    const std::uint64_t below_space = (word - kOnes * 0x20) & ~word & kHigh;
    const std::uint64_t del = word ^ (kOnes * 0x7f);
    return below_space | ((del - kOnes) & ~del & kHigh);
}

}  // namespace

std::optional<Rejection> scan_head(std::string_view bytes, HeadScan& state) {
    if (state.complete) { return std::nullopt; }   // what follows the head is body, not ours to judge
    std::size_t i = state.scanned;
    for (; i < bytes.size(); ++i) {
        // Runs of ordinary bytes are skipped a word at a time: the byte-wise loop was ~20 instructions
        // a byte, a tenth of a small proxied request (benchmarks/profile). Checking every rule on
        // SSE2 masks was tried three times and measured worse: lines are short, and the masks'
        // bookkeeping cost more than the word skip (for an NGINX response head: 1,382 instructions
        // for 16 bytes a step, 945 for 64-byte blocks, 853 for 16 bytes with shifted loads, against
        // 892 here; and short request heads cost more, benchmarks/profile/http_keepalive_callgrind.py).
        if constexpr (std::endian::native == std::endian::little) {
            while (i + 8 <= bytes.size()) {
                std::uint64_t word;
                std::memcpy(&word, bytes.data() + i, sizeof word);
                if (const std::uint64_t flags = special_bytes(word); flags != 0) {
                    i += static_cast<std::size_t>(std::countr_zero(flags)) / 8;
                    break;
                }
                i += 8;
            }
            if (i >= bytes.size()) { break; }
        }
        const unsigned char c = static_cast<unsigned char>(bytes[i]);
        if (c == '\n') {
            if (i == 0 || bytes[i - 1] != '\r') { return bad("bare LF line ending"); }
            // A blank line (CRLF CRLF) ends the header.
            if (i >= 3 && bytes[i - 2] == '\n' && bytes[i - 3] == '\r') {
                state.complete = true;
                state.scanned = i + 1;
                return std::nullopt;
            }
            if (i + 1 >= bytes.size()) { break; }   // need the next byte to rule out obs-fold
            const char next = bytes[i + 1];
            if ((next == ' ' || next == '\t') && i >= 2) { return bad("obs-fold (line folding) is not allowed"); }
        } else if (c == '\r') {
            if (i + 1 >= bytes.size()) { break; }   // resume here once the next byte is in
            if (bytes[i + 1] != '\n') { return bad("CR not followed by LF"); }
            // Its LF is taken with it, as the branch above would (one stop a line, not two:
            // 1,220 -> 892 instructions for an NGINX response head, benchmarks/profile).
            const std::size_t lf = i + 1;
            if (lf >= 3 && bytes[lf - 2] == '\n' && bytes[lf - 3] == '\r') {
                state.complete = true;
                state.scanned = lf + 1;
                return std::nullopt;
            }
            i = lf;
            if (i + 1 >= bytes.size()) { break; }   // need the next byte to rule out obs-fold
            const char next = bytes[i + 1];
            if ((next == ' ' || next == '\t') && i >= 2) { return bad("obs-fold (line folding) is not allowed"); }
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return bad("control character in the header");
        }
    }
    state.scanned = i;
    return std::nullopt;
}

FieldId classify_field(std::string_view name) {
    // By length, then one compare: most names a request carries are none of these (benchmarks/profile).
    // A token's bytes OR 0x20 equal a lowercase name's exactly when they match it case-insensitively
    // (only letters change; no other token byte becomes a letter, digit or '-').
    const auto is = [name](std::string_view lower) {
        for (std::size_t i = 0; i < lower.size(); ++i) {
            if (static_cast<char>(name[i] | 0x20) != lower[i]) { return false; }
        }
        return true;
    };
    switch (name.size()) {
        case 2: return is("te") ? FieldId::te : FieldId::other;
        case 4:
            return is("host")   ? FieldId::host
                   : is("date") ? FieldId::date
                                : FieldId::other;
        case 6:
            return is("cookie")   ? FieldId::cookie
                   : is("expect") ? FieldId::expect
                                  : FieldId::other;
        case 7:
            return is("upgrade")   ? FieldId::upgrade
                   : is("trailer") ? FieldId::trailer
                                   : FieldId::other;
        case 10:
            return is("connection")   ? FieldId::connection
                   : is("keep-alive") ? FieldId::keep_alive
                                      : FieldId::other;
        case 11: return is("retry-after") ? FieldId::retry_after : FieldId::other;
        case 12: return is("x-request-id") ? FieldId::x_request_id : FieldId::other;
        case 14: return is("content-length") ? FieldId::content_length : FieldId::other;
        case 15: return is("x-forwarded-for") ? FieldId::x_forwarded_for : FieldId::other;
        case 16:
            return is("x-forwarded-host")   ? FieldId::x_forwarded_host
                   : is("proxy-connection") ? FieldId::proxy_connection
                                            : FieldId::other;
        case 17:
            return is("transfer-encoding")   ? FieldId::transfer_encoding
                   : is("x-forwarded-proto") ? FieldId::x_forwarded_proto
                   : is(kPriorityHeader)     ? FieldId::x_drover_priority
                                             : FieldId::other;
        case 23: return is("x-forwarded-client-cert") ? FieldId::x_forwarded_client_cert : FieldId::other;
        default: return FieldId::other;
    }
}

std::string_view Head::operator[](FieldId id) const {
    for (const auto& field : fields) {
        if (field.id == id) { return field.value; }
    }
    return {};
}

std::string_view Head::find(std::string_view name) const {
    for (const auto& field : fields) {
        if (iequals(field.name, name)) { return field.value; }
    }
    return {};
}

std::optional<Rejection> parse_request_head(std::string_view bytes, Head& head) {
    std::string_view rest = bytes;
    std::string_view line;
    if (!take_line(rest, line)) { return bad("request line not ended by CRLF"); }
    const std::size_t method_end = token_length(line);
    if (method_end == 0 || method_end == line.size() || line[method_end] != ' ') { return bad("malformed request line"); }
    head.method = line.substr(0, method_end);
    head.verb = method_of(head.method);
    auto after = line.substr(method_end + 1);
    const auto space = after.find(' ');
    if (space == 0 || space == std::string_view::npos) { return bad("malformed request line"); }
    head.target = after.substr(0, space);
    const auto version = http_version(after.substr(space + 1));
    if (!version) { return bad("malformed request line"); }
    if (*version == 0) { return bad("only HTTP/1.0 and HTTP/1.1 are served here"); }
    head.version = *version;
    head.status = 0;
    head.reason = {};
    return parse_fields(rest, head);
}

std::optional<Rejection> parse_response_head(std::string_view bytes, Head& head) {
    std::string_view rest = bytes;
    std::string_view line;
    if (!take_line(rest, line)) { return bad("status line not ended by CRLF"); }
    const auto version = http_version(line.substr(0, 8));
    if (!version || line.size() < 12 || line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
        return bad("malformed status line");
    }
    if (*version == 0) { return bad("backend spoke neither HTTP/1.0 nor 1.1"); }
    unsigned status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(line[i]))) { return bad("malformed status code"); }
        status = status * 10 + static_cast<unsigned>(line[i] - '0');
    }
    head.version = *version;
    head.status = status;
    head.reason = line.size() > 12 ? line.substr(13) : std::string_view();
    head.method = head.target = {};
    head.verb = Method::other;
    return parse_fields(rest, head);
}

std::optional<Rejection> check_request(const Head& head, const RequestLimits& limits, RequestInfo& info) {
    const unsigned version = head.version;
    if (version != 10 && version != 11) { return bad("only HTTP/1.0 and HTTP/1.1 are served here"); }
    if (head.fields.size() > limits.max_headers) { return Rejection{431, "headers_too_large", "too many header fields"}; }

    std::size_t hosts = 0;
    std::string_view host;
    FirstField upgrade;
    Framing framing;
    for (const auto& field : head.fields) {
        switch (field.id) {
            case FieldId::lookalike:
                return bad("header name '" + std::string(field.name) + "' imitates a framing or forwarding header");
            case FieldId::host:
                ++hosts;
                host = field.value;
                break;
            case FieldId::expect: info.expect_continue = iequals(field.value, "100-continue"); break;
            case FieldId::connection:
            case FieldId::proxy_connection:
                if (auto rejection = take_connection(field, info.connection)) { return rejection; }
                break;
            case FieldId::x_drover_priority: info.priority.take(field.value); break;
            case FieldId::upgrade: upgrade.take(field.value); break;
            case FieldId::content_length:
            case FieldId::transfer_encoding: framing.add(field); break;
            default: break;
        }
    }

    const std::string_view target = head.target;
    if (target.size() > limits.max_uri_bytes) { return Rejection{414, "uri_too_long", "request-target too long"}; }
    if (target.empty()) { return bad("empty request-target"); }
    for (unsigned char c : target) {
        if (c <= 0x20 || c >= 0x7f) { return bad("invalid byte in the request-target"); }
    }
    if (target.find('#') != std::string_view::npos) { return bad("fragment in the request-target"); }

    if (hosts > 1) { return bad("more than one Host"); }
    if (version == 11 && hosts == 0) { return bad("HTTP/1.1 request without Host"); }
    if (hosts == 1 && !config::is_valid_host(host)) { return bad("invalid Host"); }

    // A method Drover does not implement (RFC 9110 section 9.1: 501): it proxies requests, not tunnels.
    if (head.verb == Method::connect) { return Rejection{501, "not_implemented", "CONNECT is not supported"}; }
    if (target == "*") {
        if (head.verb != Method::options) { return bad("'*' target is only valid with OPTIONS"); }
        info.path = target;
    } else if (target.front() == '/') {
        info.path = target;
    } else if (target.size() > 7 && (iequals(target.substr(0, 7), "http://") || (target.size() > 8 && iequals(target.substr(0, 8), "https://")))) {
        // absolute-form: route on its authority, which must agree with Host when both are present.
        auto rest = target.substr(target.find("//") + 2);
        const auto slash = rest.find_first_of("/?");
        const auto authority = rest.substr(0, slash);
        if (!config::is_valid_host(authority) || authority.find('@') != std::string_view::npos) { return bad("invalid authority in the request-target"); }
        // The scheme's default port may be written or left out (RFC 9110 section 4.2.3): http://h:80/
        // and Host: h name the same authority.
        const std::string_view default_port = iequals(target.substr(0, 5), "https") ? "443" : "80";
        const auto bare = [default_port](std::string_view name) {
            const std::size_t n = name.size();
            const bool ported = n > default_port.size() + 1 && name.ends_with(default_port) &&
                                name[n - default_port.size() - 1] == ':';
            return ported ? name.substr(0, n - default_port.size() - 1) : name;
        };
        if (hosts == 1 && !iequals(bare(authority), bare(host))) { return bad("absolute-form authority does not match Host"); }
        host = authority;
        info.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
        // "http://h?q" has an empty path: in origin-form it is "/?q" (RFC 9112 section 3.2.1).
        info.path_lacks_slash = info.path.front() == '?';
    } else {
        return bad("request-target must be origin-form, absolute-form or '*'");
    }
    info.host = host;

    const auto problem = framing.finish(info.chunked, info.content_length);
    if (!problem.empty()) { return bad(std::string(problem)); }
    if (info.chunked && version == 10) { return bad("Transfer-Encoding in an HTTP/1.0 request"); }
    // "gzip, chunked" frames fine, but forwarding it as "chunked" would hand the backend coded bytes
    // as the body, and few backends decode transfer codings: refused, as RFC 9112 section 6.1 advises.
    if (framing.other_codings > 0) {
        return Rejection{501, "not_implemented", "transfer codings other than chunked are not supported"};
    }

    info.upgrade_websocket = version == 11 && has_token(info.connection.value, "upgrade") && has_token(upgrade.value, "websocket");
    info.keep_alive = keep_alive(version, info.connection);
    return std::nullopt;
}

bool keep_alive(unsigned version, const FirstField& connection) {
    if (version < 11) { return connection.present && has_token(connection.value, "keep-alive"); }
    return !connection.present || !has_token(connection.value, "close");
}

std::optional<Rejection> check_response(const Head& head) {
    ResponseInfo info;
    return check_response(head, info);
}

std::optional<Rejection> check_response(const Head& head, ResponseInfo& info) {
    if (head.version != 10 && head.version != 11) { return bad("backend spoke neither HTTP/1.0 nor 1.1"); }
    if (head.status < 100 || head.status > 599) { return bad("status code out of range"); }
    Framing framing;
    for (const auto& field : head.fields) {
        switch (field.id) {
            case FieldId::lookalike: return bad("response header imitates a framing header");
            case FieldId::connection:
            case FieldId::proxy_connection:
                if (auto rejection = take_connection(field, info.connection)) { return rejection; }
                break;
            case FieldId::retry_after: info.retry_after.take(field.value); break;
            case FieldId::content_length:
            case FieldId::transfer_encoding: framing.add(field); break;
            default: break;
        }
    }
    const auto problem = framing.finish(info.chunked, info.content_length);
    if (!problem.empty()) { return bad(std::string(problem)); }
    // HTTP/1.0 has no transfer codings: such a message's framing is faulty (RFC 9112 section 6.1).
    if (info.chunked && head.version == 10) { return bad("Transfer-Encoding in an HTTP/1.0 response"); }
    // Passed on as plain "chunked", a gzip-coded body would reach the client as gzip bytes.
    if (framing.other_codings > 0) { return bad("transfer codings other than chunked are not supported"); }
    info.keep_alive = keep_alive(head.version, info.connection);
    return std::nullopt;
}

bool has_token(std::string_view list, std::string_view token) {
    bool found = false;
    for_each_token(list, [&](std::string_view t) {
        found = iequals(t, token);
        return !found;
    });
    return found;
}

ConnectionTokens::ConnectionTokens(std::string_view list) : list_(list) {
    for_each_token(list, [&](std::string_view token) {
        if (count_ < tokens_.size()) { tokens_[count_] = token; }
        return ++count_ <= tokens_.size();
    });
}

bool ConnectionTokens::contains(std::string_view name) const {
    if (count_ > tokens_.size()) { return has_token(list_, name); }
    for (std::size_t i = 0; i < count_; ++i) {
        if (iequals(tokens_[i], name)) { return true; }
    }
    return false;
}

bool is_hop_by_hop(std::string_view name, const ConnectionTokens& connection) {
    // Each listed name is compared only with names of its length: most forwarded names have none of
    // them (this runs for every field). content-length is listed too: Drover always re-frames what it
    // forwards.
    bool listed = false;
    switch (name.size()) {
        case 2: listed = iequals(name, "te"); break;
        case 7: listed = iequals(name, "trailer") || iequals(name, "upgrade"); break;
        case 10: listed = iequals(name, "connection") || iequals(name, "keep-alive"); break;
        case 14: listed = iequals(name, "content-length"); break;
        case 16: listed = iequals(name, "proxy-connection"); break;
        case 17: listed = iequals(name, "transfer-encoding"); break;
        default: break;
    }
    return listed || connection.contains(name);
}

bool is_hop_by_hop(const Field& field, const ConnectionTokens& connection) {
    switch (field.id) {
        case FieldId::te:
        case FieldId::trailer:
        case FieldId::upgrade:
        case FieldId::connection:
        case FieldId::keep_alive:
        case FieldId::content_length:
        case FieldId::proxy_connection:
        case FieldId::transfer_encoding: return true;
        default: return connection.contains(field.name);
    }
}

bool is_hop_by_hop(std::string_view name, std::string_view connection_tokens) {
    return is_hop_by_hop(name, ConnectionTokens(connection_tokens));
}

}  // namespace drover::proxy::http_rules
