// libFuzzer target for the response path's parsing front, fed as HttpSession feeds a backend's
// bytes: the raw-head scan, the status-line and field parser, the response framing rules, then the
// body reader (Content-Length, chunked, or until the backend closes) on the bytes after the head.
// A backend is not trusted to be well-formed: whatever it sends, Drover must neither crash nor read
// a body's end differently from a conforming parser, or the next response on that connection would
// be read from the middle of this one. Where Beast also accepts the head, it must read the same
// status, fields and framing. (Where Drover is the stricter one, the client gets a 502.)
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/fuzz_support.hpp"

namespace http = boost::beast::http;
using namespace drover::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Message message;
    if (!scan_and_parse(data, size, http_rules::parse_response_head, message)) { return 0; }
    const auto& head = message.head;
    require(head.status <= 999 && inside(head.reason, message.head_bytes));
    require(head.method.empty() && head.target.empty());

    http_rules::ResponseInfo info;
    if (http_rules::check_response(head, info)) { return 0; }
    require(head.status >= 100 && head.status <= 599);
    require(!(info.chunked && info.content_length));
    require(info.keep_alive == http_rules::keep_alive(head.version, info.connection));

    // Differential where Beast accepts the head too: the same status line, fields and framing.
    {
        http::response_parser<http::buffer_body> parser;   // buffer_body: no allocation for any length
        if (beast_reads(parser, message.head_bytes)) {
            const auto& header = parser.get().base();
            require(header.result_int() == head.status);
            // An empty reason reads back from Beast as the status's standard phrase.
            require(head.reason.empty() || sv(header.reason()) == head.reason);
            require(header.version() == head.version);
            require_same_fields(header, head);
            require_same_framing(parser, info.chunked, info.content_length);
        }
    }

    // The body, read whole and arriving in two pieces, whatever the status (the session skips it
    // for HEAD, 1xx, 204 and 304 before it gets here; the reader must be sound on any bytes).
    const auto body = read_whole_and_split(
        [&] {
            if (info.chunked) { return http_body::BodyReader::chunked(); }
            if (info.content_length) { return http_body::BodyReader::length(*info.content_length); }
            return http_body::BodyReader::until_close();
        },
        message.body());
    if (!info.chunked && !body.error) {
        // Content-Length: exactly that many bytes, all data. Until close: every byte is data.
        require(body.data.size() == body.consumed);
        if (info.content_length) {
            require(body.done == (body.consumed == *info.content_length));
        } else {
            require(!body.done && body.consumed == message.body().size());
        }
    }
    return 0;
}
