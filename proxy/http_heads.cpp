#include "proxy/http_heads.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <ctime>
#include <cstring>

namespace drover::proxy::http_heads {

void append_field(std::string& out, std::string_view name, std::string_view value) {
    // One growth step and two copies: this runs for every forwarded field, and four appends (each with
    // its own checks and copy call) were ~110 instructions a field (benchmarks/profile).
    const std::size_t at = out.size();
    out.resize(at + name.size() + value.size() + 4);
    char* p = out.data() + at;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    if (!value.empty()) { std::memcpy(p, value.data(), value.size()); }   // an empty view may hold null
    p += value.size();
    *p++ = '\r';
    *p = '\n';
}

namespace {

// Forwarded field lines, appended as received: lines that lie next to each other in the received head
// go out in one copy (a typical head is one or two runs; a copy per field was ~40 instructions each,
// benchmarks/profile). Fields without their line (line_size 0) are written from name and value.
class LineRuns {
public:
    explicit LineRuns(std::string& out) : out_(out) {}
    ~LineRuns() { flush(); }
    LineRuns(const LineRuns&) = delete;
    LineRuns& operator=(const LineRuns&) = delete;

    void add(const http_rules::Field& field) {
        const char* line = field.name.data();
        if (field.line_size == 0) {
            flush();
            append_field(out_, field.name, field.value);
        } else if (begin_ != nullptr && line == end_) {
            end_ += field.line_size;
        } else {
            flush();
            begin_ = line;
            end_ = line + field.line_size;
        }
    }

    // Before anything else is appended.
    void flush() {
        if (begin_ == nullptr) { return; }
        out_.append(begin_, static_cast<std::size_t>(end_ - begin_));
        begin_ = end_ = nullptr;
    }

private:
    std::string& out_;
    const char* begin_ = nullptr;
    const char* end_ = nullptr;
};

}  // namespace

std::string_view decimal(std::uint64_t value, std::array<char, 20>& out) {
    return {out.data(), static_cast<std::size_t>(std::to_chars(out.data(), out.data() + out.size(), value).ptr - out.data())};
}

// What fmt's {:016x}{:016x} gave, without formatting: a byte (two digits) at a time.
std::string_view request_id(std::uint64_t high, std::uint64_t low, std::array<char, 32>& out) {
    static constexpr auto kHexPairs = [] {
        constexpr char kHex[] = "0123456789abcdef";
        std::array<char, 512> pairs{};
        for (std::size_t b = 0; b < 256; ++b) {
            pairs[2 * b] = kHex[b >> 4];
            pairs[2 * b + 1] = kHex[b & 0xf];
        }
        return pairs;
    }();
    for (std::size_t i = 8; i-- > 0; high >>= 8, low >>= 8) {
        std::memcpy(out.data() + 2 * i, kHexPairs.data() + 2 * (high & 0xff), 2);
        std::memcpy(out.data() + 16 + 2 * i, kHexPairs.data() + 2 * (low & 0xff), 2);
    }
    return {out.data(), out.size()};
}

void upstream_request(const http_rules::Head& request, const http_rules::RequestInfo& info,
                      const Forwarding& forwarding, std::string& head) {
    using http_rules::FieldId;
    head.clear();
    head.reserve(512);
    head.append(request.method);
    head.push_back(' ');
    if (info.path_lacks_slash) { head.push_back('/'); }
    head.append(info.path);   // absolute-form goes on in origin-form; Host carries the authority
    head.append(" HTTP/1.1\r\n", 11);
    const http_rules::ConnectionTokens connection(info.connection.value);
    std::string forwarded_for;
    bool has_request_id = false;
    bool has_host = false;
    LineRuns lines(head);
    for (const auto& field : request.fields) {
        if (http_rules::is_hop_by_hop(field, connection)) { continue; }
        switch (field.id) {
            case FieldId::x_forwarded_for:
                forwarded_for += forwarded_for.empty() ? "" : ", ";
                forwarded_for += field.value;
                continue;
            // Set by Drover from what it saw; a client's own values are not trusted.
            case FieldId::x_forwarded_proto:
            case FieldId::x_forwarded_host:
            case FieldId::x_forwarded_client_cert:
            case FieldId::expect: continue;   // Drover answers 100-continue itself
            case FieldId::x_request_id: has_request_id = true; break;
            case FieldId::host: has_host = true; break;
            default: break;
        }
        lines.add(field);
    }
    lines.flush();
    // Absolute-form (Host is its authority), or HTTP/1.0 without Host: a backend may refuse an empty one.
    if (!has_host) { append_field(head, "Host", info.host.empty() ? forwarding.authority : info.host); }
    if (forwarded_for.empty()) {
        append_field(head, "X-Forwarded-For", forwarding.client_ip);
    } else {
        append_field(head, "X-Forwarded-For", fmt::format("{}, {}", forwarded_for, forwarding.client_ip));
    }
    append_field(head, "X-Forwarded-Proto", forwarding.proto);
    if (!info.host.empty()) { append_field(head, "X-Forwarded-Host", info.host); }
    if (!forwarding.client_cert.empty()) { append_field(head, "X-Forwarded-Client-Cert", forwarding.client_cert); }
    if (!has_request_id) {
        auto& random = *forwarding.random;
        const auto high = random();
        std::array<char, 32> id;
        append_field(head, "X-Request-Id", request_id(high, random(), id));
    }
    if (info.upgrade_websocket) {
        append_field(head, "Connection", "Upgrade");
        append_field(head, "Upgrade", request[FieldId::upgrade]);
    }
    if (info.chunked) {
        append_field(head, "Transfer-Encoding", "chunked");
    } else if (info.content_length) {
        std::array<char, 20> digits;
        append_field(head, "Content-Length", decimal(*info.content_length, digits));
    }
    head.append("\r\n", 2);
}

std::string_view http_date() {
    static constexpr std::string_view kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    thread_local std::time_t formatted = -1;
    thread_local std::array<char, 32> text{};
    thread_local std::size_t size = 0;
    const std::time_t now = std::time(nullptr);
    if (now != formatted) {
        std::tm tm{};
        gmtime_r(&now, &tm);
        const auto end = fmt::format_to_n(text.data(), text.size(), "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                                          kDays[tm.tm_wday], tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900,
                                          tm.tm_hour, tm.tm_min, tm.tm_sec);
        size = end.size;
        formatted = now;
    }
    return {text.data(), size};
}

void client_response(const ClientResponse& response, std::string& head) {
    head.clear();
    head.reserve(512);
    head.append("HTTP/1.1 ", 9);
    std::array<char, 20> digits;
    head.append(decimal(response.status, digits));
    head.push_back(' ');
    head.append(response.reason);
    head.append("\r\n", 2);
    const http_rules::ConnectionTokens connection(response.connection_tokens);
    bool dated = false;
    if (response.fields != nullptr) {
        LineRuns lines(head);
        for (const auto& field : *response.fields) {
            dated = dated || field.id == http_rules::FieldId::date;
            // A HEAD answer's Content-Length describes the GET body, and a 304's the body a 200 would
            // have had (RFC 9110 section 8.6): pass it through unchanged.
            if (http_rules::is_hop_by_hop(field, connection) &&
                !((response.head_request || response.status == 304) && field.id == http_rules::FieldId::content_length)) {
                continue;
            }
            lines.add(field);
        }
    }
    if (!dated) { append_field(head, "Date", http_date()); }
    if (response.length) { append_field(head, "Content-Length", decimal(*response.length, digits)); }
    if (response.chunked) { append_field(head, "Transfer-Encoding", "chunked"); }
    if (response.close) {
        append_field(head, "Connection", "close");
    } else if (response.http10_keep_alive) {
        append_field(head, "Connection", "keep-alive");
    }
    head.append("\r\n", 2);
}

}  // namespace drover::proxy::http_heads
