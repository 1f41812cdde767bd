// libFuzzer target for the request path's parsing front, fed the same bytes in the same order as
// HttpSession feeds them: Drover's raw-head scan, Drover's head parser and request rules, then the
// body reader on the bytes after the head. Beast's parser is the reference: a head Drover accepts
// must be one Beast accepts, read the same way (a request two parsers read differently is how
// requests are smuggled). Crashes, sanitizer reports and broken invariants (asserted below) are
// findings.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/fuzz_support.hpp"

namespace http = boost::beast::http;
using namespace drover::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Message message;
    if (!scan_and_parse(data, size, http_rules::parse_request_head, message)) { return 0; }
    const auto& head = message.head;
    require(!head.method.empty() && !head.target.empty());
    require(inside(head.method, message.head_bytes) && inside(head.target, message.head_bytes));

    http_rules::RequestInfo info;
    if (http_rules::check_request(head, {}, info)) { return 0; }
    // What passes must be unambiguous: never both framings, and a 1.1 request always has a host.
    require(!(info.chunked && info.content_length));
    require(head.version != 11 || !info.host.empty());
    require(!info.path.empty());

    // Differential: Beast must accept the same head and read the same request line and fields.
    {
        http::request_parser<http::buffer_body> parser;   // buffer_body: no allocation for any length
        require(beast_reads(parser, message.head_bytes));
        const auto& header = parser.get().base();
        require(sv(header.method_string()) == head.method);
        require(sv(header.target()) == head.target);
        require(header.version() == head.version);
        require_same_fields(header, head);
        require_same_framing(parser, info.chunked, info.content_length);
    }

    // The body that follows, read whole and arriving in two pieces: the same bytes, the same end.
    if (!info.chunked && !info.content_length) { return 0; }
    const auto body = read_whole_and_split(
        [&] {
            return info.chunked ? http_body::BodyReader::chunked() : http_body::BodyReader::length(*info.content_length);
        },
        message.body());
    if (!info.chunked && !body.error) {
        // A Content-Length body is exactly that many bytes, all of them data.
        require(body.data.size() == body.consumed);
        require(body.consumed <= *info.content_length);
        require(body.done == (body.consumed == *info.content_length));
    }
    return 0;
}
