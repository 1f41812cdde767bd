#pragma once
// What the HTTP fuzz targets share: the head scan run whole and split, the invariants every parsed
// head keeps, the field-by-field comparison with Beast, and a body read whole and in two pieces.
// Every broken invariant is std::abort(): libFuzzer reports it with the input that broke it.
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http_body.hpp"
#include "proxy/http_rules.hpp"
#include "tests/support/beast_reference.hpp"

namespace drover::fuzz {

namespace http_rules = proxy::http_rules;
namespace http_body = proxy::http_body;

// The line of the broken invariant goes to stderr first: the stack trace does not show it once
// require() is inlined. (Default arguments take the caller's line.)
inline void require(bool ok, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    if (!ok) {
        std::fprintf(stderr, "invariant broken at %s:%d\n", file, line);
        std::abort();
    }
}

// Beast's string_view is boost's here (the targets do not define BOOST_BEAST_USE_STD_STRING_VIEW).
template <class View>
std::string_view sv(const View& v) {
    return std::string_view(v.data(), v.size());
}

// RFC 9110 §5.6.2 tchar.
inline bool is_tchar(char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) { return true; }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

inline bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// The length of the head at the start of `bytes`, or nullopt if the scan refused it or wants more.
// Arrival in two pieces exercises the scan's resume logic: it must agree with one-shot scanning.
inline std::optional<std::size_t> scan_whole_and_split(std::string_view bytes) {
    http_rules::HeadScan whole;
    const bool whole_bad = http_rules::scan_head(bytes, whole).has_value();
    http_rules::HeadScan split;
    bool split_bad = http_rules::scan_head(bytes.substr(0, bytes.size() / 2), split).has_value();
    if (!split_bad) { split_bad = http_rules::scan_head(bytes, split).has_value(); }
    require(whole_bad == split_bad);
    if (whole_bad || !whole.complete) { return std::nullopt; }
    require(split.complete && split.scanned == whole.scanned);
    require(whole.scanned <= bytes.size());
    return whole.scanned;
}

// What the parser hands on is well-formed: it views the head, names are tokens, values trimmed.
inline void check_fields(const http_rules::Head& head, std::string_view head_bytes) {
    require(head.version == 10 || head.version == 11);
    for (const auto& field : head.fields) {
        require(!field.name.empty());
        for (char c : field.name) { require(is_tchar(c)); }
        require(field.value.empty() || (!is_ows(field.value.front()) && !is_ows(field.value.back())));
        require(inside(field.name, head_bytes) && inside(field.value, head_bytes));
        // The id is the name's class, or a lookalike (refused by the checks) where the name has '_'.
        const auto id = http_rules::classify_field(field.name);
        require(field.id == id || (field.id == http_rules::FieldId::lookalike && id == http_rules::FieldId::other &&
                                   field.name.find('_') != std::string_view::npos));
    }
}

// One fuzz input read as a message: the head at its start, and what follows it.
struct Message {
    std::string_view bytes;        // the whole input
    std::string_view head_bytes;   // the head, start line through the blank line
    http_rules::Head head;         // parsed from head_bytes

    std::string_view body() const { return bytes.substr(head_bytes.size()); }
};

// The input's head scanned, then parsed alone as the session parses its copy of it (`parse`:
// parse_request_head or parse_response_head), its fields checked. False where the scan or the parser
// refused it or the head is incomplete.
template <class Parse>
bool scan_and_parse(const std::uint8_t* data, std::size_t size, Parse parse, Message& message) {
    message.bytes = std::string_view(reinterpret_cast<const char*>(data), size);
    const auto scanned = scan_whole_and_split(message.bytes);
    if (!scanned) { return false; }
    message.head_bytes = message.bytes.substr(0, *scanned);
    if (parse(message.head_bytes, message.head)) { return false; }
    check_fields(message.head, message.head_bytes);
    return true;
}

using testing::beast_reads;   // Beast fed the same head (tests/support/beast_reference.hpp)

// Beast read the same framing from the head: the same body follows for both.
template <class Parser>
void require_same_framing(const Parser& parser, bool chunked, const std::optional<std::uint64_t>& length) {
    require(parser.chunked() == chunked);
    const auto beast_length = parser.content_length();
    require(beast_length.has_value() == length.has_value());
    require(!length || *beast_length == *length);
}

// Beast files a field right after the last one of the same name (case-insensitively): its order is
// ours with same-name fields gathered where the first of them arrived. Names and values must match.
template <class Fields>
void require_same_fields(const Fields& beast, const http_rules::Head& head) {
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
    for (const auto& field : beast) {
        require(i < order.size());
        require(sv(field.name_string()) == order[i]->name);
        require(sv(field.value()) == order[i]->value);
        ++i;
    }
    require(i == order.size());
}

// A body read as the session reads it: next() until the input is used up, the body ends or breaks.
struct BodyRun {
    std::string data;
    std::size_t consumed = 0;
    bool done = false;
    bool error = false;
};

inline void run(http_body::BodyReader& reader, std::string_view input, BodyRun& out) {
    while (!input.empty() && !reader.done() && !out.error) {
        http_body::Step step;
        if (reader.next(input, step)) {
            out.error = true;
            break;
        }
        // Progress always, within the input; the data is among the bytes it says it used.
        require(step.consumed != 0 && step.consumed <= input.size());
        require(inside(step.data, input.substr(0, step.consumed)));
        out.data.append(step.data);
        out.consumed += step.consumed;
        input.remove_prefix(step.consumed);
    }
    out.done = reader.done();
}

// The body read whole and arriving in two pieces: the same bytes, the same end, the same verdict
// when the connection then closes. `make` returns a fresh reader of the body's framing.
template <class Make>
BodyRun read_whole_and_split(Make make, std::string_view body) {
    BodyRun one;
    auto reader_one = make();
    run(reader_one, body, one);

    BodyRun two;
    auto reader_two = make();
    run(reader_two, body.substr(0, body.size() / 2), two);
    // The session keeps unused bytes buffered: the second read starts where the first stopped.
    if (!two.done && !two.error) { run(reader_two, body.substr(two.consumed), two); }

    require(one.error == two.error && one.done == two.done && one.data == two.data);
    require(one.error || one.consumed == two.consumed);
    require(!(one.done && one.error));
    if (!one.error && !one.done) { require(reader_one.on_close() == reader_two.on_close()); }
    return one;
}

}  // namespace drover::fuzz
