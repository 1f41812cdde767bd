// libFuzzer target for the request path's parsing front: Drover's raw-head scan, Beast's parser and
// Drover's request rules, fed the same bytes in the same order as HttpSession feeds them. Crashes,
// sanitizer reports and broken invariants (asserted below) are findings.
#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/http_rules.hpp"

namespace http = boost::beast::http;
using namespace drover::proxy;

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
    if (whole_bad) { return 0; }

    http::request_parser<http::buffer_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(boost::none);
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(data, size), ec);
    if (!parser.is_header_done()) { return 0; }

    http_rules::RequestInfo info;
    const auto rejection = http_rules::check_request(parser.get().base(), {}, info);
    if (!rejection) {
        // What passes must be unambiguous: never both framings, and a 1.1 request always has a host.
        if (info.chunked && info.content_length) { std::abort(); }
        if (parser.get().version() == 11 && info.host.empty()) { std::abort(); }
        if (info.path.empty()) { std::abort(); }
    }
    return 0;
}
