// libFuzzer target for the request path's parsing front, fed the same bytes in the same order as
// HttpSession feeds them: Drover's raw-head scan, Drover's head parser and request rules, then the
// body reader on the bytes after the head. Beast's parser is the reference: a head Drover accepts
// must be one Beast accepts, read the same way (a request two parsers read differently is how
// requests are smuggled). Crashes, sanitizer reports and broken invariants (asserted below) are
// findings.
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http_body.hpp"
#include "proxy/http_rules.hpp"

namespace http = boost::beast::http;
using namespace drover::proxy;

namespace {

// Beast's string_view is boost's here (this target does not define BOOST_BEAST_USE_STD_STRING_VIEW).
template <class View>
std::string_view sv(const View& v) {
    return std::string_view(v.data(), v.size());
}

// RFC 9110 §5.6.2 tchar.
bool is_tchar(char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) { return true; }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// A body read as the session reads it: next() until the input is used up, the body ends or breaks.
struct BodyRun {
    std::string data;
    std::size_t consumed = 0;
    bool done = false;
    bool error = false;
};

void run(http_body::BodyReader& reader, std::string_view input, BodyRun& out) {
    while (!input.empty() && !reader.done() && !out.error) {
        http_body::Step step;
        if (reader.next(input, step)) {
            out.error = true;
            break;
        }
        // Progress always, within the input; the data is among the bytes it says it used.
        if (step.consumed == 0 || step.consumed > input.size()) { std::abort(); }
        if (!inside(step.data, input.substr(0, step.consumed))) { std::abort(); }
        out.data.append(step.data);
        out.consumed += step.consumed;
        input.remove_prefix(step.consumed);
    }
    out.done = reader.done();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    // Arrival in two pieces exercises the scan's resume logic: it must agree with one-shot scanning.
    http_rules::HeadScan whole;
    const bool whole_bad = http_rules::scan_head(bytes, whole).has_value();
    http_rules::HeadScan split;
    const std::size_t cut = size / 2;
    bool split_bad = http_rules::scan_head(bytes.substr(0, cut), split).has_value();
    if (!split_bad) { split_bad = http_rules::scan_head(bytes, split).has_value(); }
    if (whole_bad != split_bad) { std::abort(); }
    if (whole_bad || !whole.complete) { return 0; }
    if (!split.complete || split.scanned != whole.scanned) { std::abort(); }
    if (whole.scanned > size) { std::abort(); }

    // The session parses the head alone (its copy of it); what follows is the body.
    const std::string_view head_bytes = bytes.substr(0, whole.scanned);
    http_rules::Head head;
    if (http_rules::parse_request_head(head_bytes, head)) { return 0; }

    // What the parser hands on is well-formed: it views the head, names are tokens, values trimmed.
    if (head.version != 10 && head.version != 11) { std::abort(); }
    if (head.method.empty() || head.target.empty()) { std::abort(); }
    if (!inside(head.method, head_bytes) || !inside(head.target, head_bytes)) { std::abort(); }
    for (const auto& field : head.fields) {
        if (field.name.empty()) { std::abort(); }
        for (char c : field.name) {
            if (!is_tchar(c)) { std::abort(); }
        }
        if (!field.value.empty() && (is_ows(field.value.front()) || is_ows(field.value.back()))) { std::abort(); }
        if (!inside(field.name, head_bytes) || !inside(field.value, head_bytes)) { std::abort(); }
        // The id is the name's class, or a lookalike (refused by check_request) where the name has '_'.
        const auto id = http_rules::classify_field(field.name);
        if (field.id != id && !(field.id == http_rules::FieldId::lookalike && id == http_rules::FieldId::other &&
                                field.name.find('_') != std::string_view::npos)) {
            std::abort();
        }
    }

    http_rules::RequestInfo info;
    if (http_rules::check_request(head, {}, info)) { return 0; }
    // What passes must be unambiguous: never both framings, and a 1.1 request always has a host.
    if (info.chunked && info.content_length) { std::abort(); }
    if (head.version == 11 && info.host.empty()) { std::abort(); }
    if (info.path.empty()) { std::abort(); }

    // Differential: Beast must accept the same head and read the same request line and fields.
    {
        http::request_parser<http::buffer_body> parser;   // buffer_body: no allocation for any length
        parser.eager(false);
        parser.header_limit(64 * 1024);
        parser.body_limit(boost::none);
        boost::beast::error_code ec;
        parser.put(boost::asio::buffer(head_bytes.data(), head_bytes.size()), ec);
        if (ec || !parser.is_header_done()) { std::abort(); }
        const auto& header = parser.get().base();
        if (sv(header.method_string()) != head.method) { std::abort(); }
        if (sv(header.target()) != head.target) { std::abort(); }
        if (header.version() != head.version) { std::abort(); }
        // Beast files a field right after the last one of the same name (case-insensitively): its
        // order is ours with same-name fields gathered where the first of them arrived.
        std::vector<const http_rules::Field*> order;
        std::vector<bool> taken(head.fields.size());
        for (std::size_t i = 0; i < head.fields.size(); ++i) {
            if (taken[i]) { continue; }
            for (std::size_t j = i; j < head.fields.size(); ++j) {
                if (!taken[j] && http_rules::iequals(head.fields[j].name, head.fields[i].name)) {
                    taken[j] = true;
                    order.push_back(&head.fields[j]);
                }
            }
        }
        std::size_t i = 0;
        for (const auto& field : header) {
            if (i >= order.size()) { std::abort(); }
            if (sv(field.name_string()) != order[i]->name) { std::abort(); }
            if (sv(field.value()) != order[i]->value) { std::abort(); }
            ++i;
        }
        if (i != order.size()) { std::abort(); }
        // The framing both read from it: the same body follows.
        if (parser.chunked() != info.chunked) { std::abort(); }
        const auto length = parser.content_length();
        if (length.has_value() != info.content_length.has_value()) { std::abort(); }
        if (length && *length != *info.content_length) { std::abort(); }
    }

    // The body that follows, read whole and arriving in two pieces: the same bytes, the same end.
    if (!info.chunked && !info.content_length) { return 0; }
    const auto reader = [&] {
        return info.chunked ? http_body::BodyReader::chunked() : http_body::BodyReader::length(*info.content_length);
    };
    const std::string_view body = bytes.substr(whole.scanned);
    BodyRun one;
    auto reader_one = reader();
    run(reader_one, body, one);

    BodyRun two;
    auto reader_two = reader();
    const std::size_t body_cut = body.size() / 2;
    run(reader_two, body.substr(0, body_cut), two);
    // The session keeps unused bytes buffered: the second read starts where the first stopped.
    if (!two.done && !two.error) { run(reader_two, body.substr(two.consumed), two); }

    if (one.error != two.error || one.done != two.done || one.data != two.data) { std::abort(); }
    if (!one.error && one.consumed != two.consumed) { std::abort(); }
    if (one.done && one.error) { std::abort(); }
    if (!info.chunked && !one.error) {
        // A Content-Length body is exactly that many bytes, all of them data.
        if (one.data.size() != one.consumed) { std::abort(); }
        if (one.consumed > *info.content_length) { std::abort(); }
        if (one.done != (one.consumed == *info.content_length)) { std::abort(); }
    }
    return 0;
}
