#pragma once
// Beast's HTTP/1 parser as the reference that Drover's parser is held to. Shared by tests/unit
// (proxy/http_rules_test.cpp) and tests/fuzz.

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <string_view>

namespace drover::testing {

// Feeds Beast's `parser` exactly `head_bytes`: true if it read a whole head from them. Not eager, so
// nothing past the head is taken as body; buffer_body never allocates for a length it is told.
template <class Parser>
bool beast_reads(Parser& parser, std::string_view head_bytes) {
    parser.eager(false);
    parser.header_limit(64 * 1024);
    parser.body_limit(boost::none);
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(head_bytes.data(), head_bytes.size()), ec);
    return !ec && parser.is_header_done();
}

}  // namespace drover::testing
