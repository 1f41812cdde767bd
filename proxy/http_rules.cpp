#include "proxy/http_rules.hpp"

#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cstring>
#include <utility>

namespace drover::proxy::http_rules {

namespace http = boost::beast::http;

namespace {

Rejection bad(std::string detail) { return {400, "bad_request", std::move(detail)}; }

// fields_allocate's blocks: sizes in steps of kBlockStep up to kBlockClasses steps, each size's free
// blocks a list of at most kKeepPerClass. Trivially destructible, so it stays usable while the
// thread exits; FieldBlocksDrain gives the blocks back then (and later frees go to operator delete).
constexpr std::size_t kBlockStep = 64;
constexpr std::size_t kBlockClasses = 8;
constexpr std::size_t kKeepPerClass = 64;
struct FreeBlock {
    FreeBlock* next;
};
struct FieldBlocks {
    std::array<FreeBlock*, kBlockClasses> free{};
    std::array<std::size_t, kBlockClasses> count{};
    bool closed = false;
};
thread_local FieldBlocks t_field_blocks;
struct FieldBlocksDrain {
    ~FieldBlocksDrain() {
        auto& blocks = t_field_blocks;
        blocks.closed = true;
        for (auto& head : blocks.free) {
            while (head != nullptr) { ::operator delete(std::exchange(head, head->next)); }
        }
    }
};
thread_local FieldBlocksDrain t_field_blocks_drain;

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

// reg-name / IPv4 / [IPv6] with an optional :port; no userinfo, path, spaces or controls.
bool valid_host(std::string_view host) {
    if (host.empty()) { return false; }
    std::size_t i = 0;
    if (host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos || close < 3) { return false; }
        for (i = 1; i < close; ++i) {
            const unsigned char c = static_cast<unsigned char>(host[i]);
            if (!std::isxdigit(c) && c != ':' && c != '.') { return false; }
        }
        i = close + 1;
    } else {
        for (; i < host.size() && host[i] != ':'; ++i) {
            const unsigned char c = static_cast<unsigned char>(host[i]);
            const bool ok = std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' ||
                            c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' ||
                            c == '+' || c == ',' || c == ';' || c == '=';
            if (!ok) { return false; }
        }
        if (i == 0) { return false; }
    }
    if (i == host.size()) { return true; }
    if (host[i] != ':') { return false; }
    const auto port = host.substr(i + 1);
    return port.empty() || (port.size() <= 5 && all_digits(port));
}

// Names a backend may fold to a framing or forwarding header by mapping '_' to '-' (CGI does).
bool is_smuggling_lookalike(std::string_view name) {
    if (name.find('_') == std::string_view::npos) { return false; }
    static constexpr std::array<std::string_view, 9> kSensitive = {
        "content-length",   "transfer-encoding", "host",         "connection",        "upgrade",
        "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"};
    std::string folded(name);
    std::replace(folded.begin(), folded.end(), '_', '-');
    return std::any_of(kSensitive.begin(), kSensitive.end(), [&](std::string_view s) { return iequals(s, folded); });
}

// Shared Content-Length / Transfer-Encoding rules. Returns the problem text, or empty.
template <bool isRequest, class Fields>
std::string check_framing(const http::header<isRequest, Fields>& header, bool& chunked,
                          std::optional<std::uint64_t>& content_length) {
    std::size_t cl_count = 0;
    std::size_t te_count = 0;
    std::string te_last;
    bool te_bad = false;
    std::size_t chunked_seen = 0;
    for (const auto& field : header) {
        const auto name = field.name_string();
        if (iequals(name, "content-length")) {
            ++cl_count;
            const auto value = trim(field.value());
            if (!all_digits(value)) { return "Content-Length must be plain digits"; }
            // At most 19 digits: fits, so from_chars reads it all (what stoull did, minus a string).
            std::uint64_t length = 0;
            std::from_chars(value.data(), value.data() + value.size(), length);
            content_length = length;
        } else if (iequals(name, "transfer-encoding")) {
            ++te_count;
            for_each_token(field.value(), [&](std::string_view token) {
                if (token.empty()) {
                    te_bad = true;
                    return false;
                }
                if (iequals(token, "chunked")) { ++chunked_seen; }
                te_last = std::string(token);
                return true;
            });
        }
    }
    if (cl_count > 1) { return "more than one Content-Length"; }
    if (te_count > 0 && cl_count > 0) { return "both Content-Length and Transfer-Encoding"; }
    if (te_count > 0) {
        if (te_bad || !iequals(te_last, "chunked") || chunked_seen != 1) {
            return "Transfer-Encoding must end in chunked, once";
        }
        chunked = true;
    }
    return {};
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
        // a byte, a tenth of a small proxied request (benchmarks/profile).
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
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return bad("control character in the header");
        }
    }
    state.scanned = i;
    return std::nullopt;
}

std::optional<Rejection> check_request(const RequestHeader& header, const RequestLimits& limits, RequestInfo& info) {
    const unsigned version = header.version();
    if (version != 10 && version != 11) { return bad("only HTTP/1.0 and HTTP/1.1 are served here"); }

    std::size_t count = 0;
    std::size_t hosts = 0;
    std::string_view host;
    for (const auto& field : header) {
        ++count;
        const auto name = field.name_string();
        if (is_smuggling_lookalike(name)) {
            return bad("header name '" + std::string(name) + "' imitates a framing or forwarding header");
        }
        if (iequals(name, "host")) {
            ++hosts;
            host = trim(field.value());
        } else if (iequals(name, "expect")) {
            info.expect_continue = iequals(trim(field.value()), "100-continue");
        } else if (field.name() == http::field::connection) {
            info.connection.take(field.value());
        } else if (field.name() == http::field::unknown && iequals(name, kPriorityHeader)) {
            info.priority.take(field.value());
        }
    }
    if (count > limits.max_headers) { return Rejection{431, "headers_too_large", "too many header fields"}; }

    const std::string_view target = header.target();
    if (target.size() > limits.max_uri_bytes) { return Rejection{414, "uri_too_long", "request-target too long"}; }
    for (unsigned char c : target) {
        if (c <= 0x20 || c >= 0x7f) { return bad("invalid byte in the request-target"); }
    }
    if (target.find('#') != std::string_view::npos) { return bad("fragment in the request-target"); }

    if (hosts > 1) { return bad("more than one Host"); }
    if (version == 11 && hosts == 0) { return bad("HTTP/1.1 request without Host"); }
    if (hosts == 1 && !valid_host(host)) { return bad("invalid Host"); }

    if (header.method() == http::verb::connect) { return Rejection{400, "bad_request", "CONNECT is not supported"}; }
    if (target == "*") {
        if (header.method() != http::verb::options) { return bad("'*' target is only valid with OPTIONS"); }
        info.path = target;
    } else if (target.front() == '/') {
        info.path = target;
    } else if (target.size() > 7 && (iequals(target.substr(0, 7), "http://") || (target.size() > 8 && iequals(target.substr(0, 8), "https://")))) {
        // absolute-form: route on its authority, which must agree with Host when both are present.
        auto rest = target.substr(target.find("//") + 2);
        const auto slash = rest.find_first_of("/?");
        const auto authority = rest.substr(0, slash);
        if (!valid_host(authority) || authority.find('@') != std::string_view::npos) { return bad("invalid authority in the request-target"); }
        if (hosts == 1 && !iequals(authority, host)) { return bad("absolute-form authority does not match Host"); }
        host = authority;
        info.path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    } else {
        return bad("request-target must be origin-form, absolute-form or '*'");
    }
    info.host = host;

    const auto problem = check_framing(header, info.chunked, info.content_length);
    if (!problem.empty()) { return bad(problem); }
    if (info.chunked && version == 10) { return bad("Transfer-Encoding in an HTTP/1.0 request"); }

    info.upgrade_websocket = version == 11 && has_token(info.connection.value, "upgrade") &&
                             has_token(header[http::field::upgrade], "websocket");
    info.keep_alive = keep_alive(version, info.connection);
    return std::nullopt;
}

void* fields_allocate(std::size_t bytes) {
    const std::size_t size_class = (bytes + kBlockStep - 1) / kBlockStep;
    if (size_class == 0 || size_class > kBlockClasses) { return ::operator new(bytes); }
    auto& blocks = t_field_blocks;
    if (FreeBlock* block = blocks.free[size_class - 1]) {
        blocks.free[size_class - 1] = block->next;
        --blocks.count[size_class - 1];
        return block;
    }
    return ::operator new(size_class * kBlockStep);
}

void fields_deallocate(void* block, std::size_t bytes) noexcept {
    const std::size_t size_class = (bytes + kBlockStep - 1) / kBlockStep;
    if (size_class == 0 || size_class > kBlockClasses) {
        ::operator delete(block);
        return;
    }
    auto& blocks = t_field_blocks;
    if (blocks.closed || blocks.count[size_class - 1] >= kKeepPerClass) {
        ::operator delete(block);
        return;
    }
    (void)t_field_blocks_drain;   // constructed with the first kept block: drains at thread exit
    auto* free_block = static_cast<FreeBlock*>(block);
    free_block->next = blocks.free[size_class - 1];
    blocks.free[size_class - 1] = free_block;
    ++blocks.count[size_class - 1];
}

bool keep_alive(unsigned version, const FirstField& connection) {
    // basic_fields::get_keep_alive_impl, with the field already found.
    if (version < 11) { return connection.present && http::token_list{connection.value}.exists("keep-alive"); }
    return !connection.present || !http::token_list{connection.value}.exists("close");
}

std::optional<Rejection> check_response(const ResponseHeader& header) {
    ResponseInfo info;
    return check_response(header, info);
}

std::optional<Rejection> check_response(const ResponseHeader& header, ResponseInfo& info) {
    if (header.version() != 10 && header.version() != 11) { return bad("backend spoke neither HTTP/1.0 nor 1.1"); }
    const unsigned status = header.result_int();
    if (status < 100 || status > 599) { return bad("status code out of range"); }
    bool chunked = false;
    std::optional<std::uint64_t> content_length;
    const auto problem = check_framing(header, chunked, content_length);
    if (!problem.empty()) { return bad(problem); }
    FirstField transfer_encoding;
    for (const auto& field : header) {
        if (is_smuggling_lookalike(field.name_string())) { return bad("response header imitates a framing header"); }
        switch (field.name()) {
            case http::field::connection: info.connection.take(field.value()); break;
            case http::field::retry_after: info.retry_after.take(field.value()); break;
            case http::field::transfer_encoding: transfer_encoding.take(field.value()); break;
            default: break;
        }
    }
    // basic_fields::get_chunked_impl: the first Transfer-Encoding field's last coding is chunked.
    const http::token_list te{transfer_encoding.value};
    for (auto it = te.begin(); it != te.end();) {
        const auto next = std::next(it);
        if (next == te.end()) {
            info.chunked = iequals(*it, "chunked");
            break;
        }
        it = next;
    }
    info.keep_alive = keep_alive(header.version(), info.connection);
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

bool is_hop_by_hop(std::string_view name, std::string_view connection_tokens) {
    return is_hop_by_hop(name, ConnectionTokens(connection_tokens));
}

}  // namespace drover::proxy::http_rules
