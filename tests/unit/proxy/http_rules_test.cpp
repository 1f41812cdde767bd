#include "proxy/http_rules.hpp"

#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

namespace drover::proxy::http_rules {
namespace {

namespace http = boost::beast::http;

std::optional<Rejection> scan(std::string_view bytes) {
    HeadScan state;
    return scan_head(bytes, state);
}

TEST(ScanHead, AcceptsAWellFormedHead) {
    HeadScan state;
    EXPECT_FALSE(scan_head("GET / HTTP/1.1\r\nHost: a\r\nX: b\tc\r\n\r\nbody\n", state));
    EXPECT_TRUE(state.complete);
}

TEST(ScanHead, RejectsBareLf) { EXPECT_TRUE(scan("GET / HTTP/1.1\nHost: a\r\n\r\n")); }
TEST(ScanHead, RejectsObsFold) { EXPECT_TRUE(scan("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n")); }
TEST(ScanHead, RejectsObsFoldWithTab) { EXPECT_TRUE(scan("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n")); }
TEST(ScanHead, RejectsNul) { EXPECT_TRUE(scan(std::string_view("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 28))); }
TEST(ScanHead, RejectsLoneCr) { EXPECT_TRUE(scan("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n")); }

TEST(ScanHead, ResumesAcrossPartialReads) {
    // Split right after a CR and right after an LF: the check must wait for the next byte.
    const std::string head = "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n";
    for (std::size_t cut = 1; cut < head.size(); ++cut) {
        HeadScan state;
        auto first = scan_head(std::string_view(head).substr(0, cut), state);
        auto second = first ? first : scan_head(head, state);
        EXPECT_TRUE(second) << "cut at " << cut;
    }
}

// RequestInfo views the parsed header; tests keep copies, since the parser dies with check().
struct Info {
    std::string host;
    std::string path;
    bool chunked = false;
    bool upgrade_websocket = false;
};

// Beast parses; the rules judge what Beast let through.
std::optional<Rejection> check(std::string_view text, Info* out = nullptr, RequestLimits limits = {}) {
    http::request_parser<http::empty_body> parser;
    parser.eager(false);
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(text.data(), text.size()), ec);
    if (ec && ec != http::error::need_more) { return Rejection{400, "beast", ec.message()}; }
    EXPECT_TRUE(parser.is_header_done()) << text;
    RequestInfo info;
    auto r = check_request(parser.get().base(), limits, info);
    if (out) { *out = Info{std::string(info.host), std::string(info.path), info.chunked, info.upgrade_websocket}; }
    return r;
}

TEST(CheckRequest, PlainGetPasses) {
    Info info;
    EXPECT_FALSE(check("GET /a?b HTTP/1.1\r\nHost: example.com:80\r\n\r\n", &info));
    EXPECT_EQ(info.host, "example.com:80");
    EXPECT_EQ(info.path, "/a?b");
}

TEST(CheckRequest, DuplicateContentLengthEvenEqual) {
    EXPECT_TRUE(check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"));
    EXPECT_TRUE(check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n"));
}

TEST(CheckRequest, TransferEncodingMustEndInChunked) {
    EXPECT_TRUE(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"));
    EXPECT_TRUE(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"));
    Info info;
    EXPECT_FALSE(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &info));
    EXPECT_TRUE(info.chunked);
    EXPECT_TRUE(check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"));
}

TEST(CheckRequest, HostRules) {
    EXPECT_TRUE(check("GET / HTTP/1.1\r\n\r\n"));
    EXPECT_TRUE(check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"));
    EXPECT_TRUE(check("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"));
    EXPECT_FALSE(check("GET / HTTP/1.0\r\n\r\n"));
    EXPECT_FALSE(check("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"));
}

TEST(CheckRequest, TargetForms) {
    EXPECT_FALSE(check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(check("GET * HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_TRUE(check("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"));
    Info info;
    EXPECT_FALSE(check("GET http://a.com/x HTTP/1.1\r\nHost: a.com\r\n\r\n", &info));
    EXPECT_EQ(info.host, "a.com");
    EXPECT_EQ(info.path, "/x");
    EXPECT_TRUE(check("GET http://a.com/x HTTP/1.1\r\nHost: b.com\r\n\r\n"));
    EXPECT_TRUE(check("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n"));
}

TEST(CheckRequest, UnderscoreLookalikesOfFramingHeaders) {
    EXPECT_TRUE(check("GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n"));
    EXPECT_TRUE(check("GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n"));
    EXPECT_FALSE(check("GET / HTTP/1.1\r\nHost: a\r\nMy_Header: 5\r\n\r\n"));
}

TEST(CheckRequest, Limits) {
    EXPECT_EQ(check("GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n", nullptr, {100, 5})->status, 414);
    EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", nullptr, {2, 100})->status, 431);
}

TEST(CheckRequest, WebsocketUpgradeIsRecognised) {
    Info info;
    EXPECT_FALSE(check("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", &info));
    EXPECT_TRUE(info.upgrade_websocket);
    EXPECT_FALSE(check("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", &info));
    EXPECT_FALSE(info.upgrade_websocket);
}

TEST(HopByHop, StandardAndConnectionNamed) {
    EXPECT_TRUE(is_hop_by_hop("Keep-Alive", ""));
    EXPECT_TRUE(is_hop_by_hop("transfer-encoding", ""));
    EXPECT_TRUE(is_hop_by_hop("X-Secret", "close, x-secret"));
    EXPECT_FALSE(is_hop_by_hop("X-Other", "close, x-secret"));
}

TEST(HopByHop, ConnectionTokensSplitOnceAgreeWithTheList) {
    // More tokens than ConnectionTokens keeps falls back to scanning the list.
    for (std::string_view list : {"", "close", " a ,b,, X-Secret ", "a, b, c, d, e, x-secret", "a,b,c,d,e,f"}) {
        const ConnectionTokens tokens(list);
        for (std::string_view name : {"x-secret", "X-SECRET", "e", "f", "b", "c", "X-Other", "Server"}) {
            EXPECT_EQ(tokens.contains(name), has_token(list, name)) << list << " / " << name;
            EXPECT_EQ(is_hop_by_hop(name, tokens), is_hop_by_hop(name, list)) << list << " / " << name;
        }
    }
    for (std::string_view name : {"te", "TE", "trailer", "Upgrade", "connection", "keep-alive", "Content-Length",
                                  "proxy-connection", "transfer-encoding"}) {
        EXPECT_TRUE(is_hop_by_hop(name, ConnectionTokens(""))) << name;
    }
    for (std::string_view name : {"tx", "trailor", "connector", "content-lengths", "Date"}) {
        EXPECT_FALSE(is_hop_by_hop(name, ConnectionTokens(""))) << name;
    }
}

// The fields check_request and check_response note on their walk must be what Beast's own lookups say.
TEST(CheckRequest, NotedFieldsAgreeWithBeast) {
    for (std::string_view text :
         {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
          "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", "GET / HTTP/1.0\r\n\r\n",
          "GET / HTTP/1.1\r\nconnection: x\r\nHost: a\r\nConnection: close\r\nX-Drover-Priority: low\r\n"
          "x-drover-priority: high\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: a\r\nConnection:\r\n\r\n"}) {
        http::request_parser<http::empty_body> parser;
        boost::beast::error_code ec;
        parser.put(boost::asio::buffer(text.data(), text.size()), ec);
        ASSERT_TRUE(parser.is_header_done()) << text;
        const auto& header = parser.get().base();
        RequestInfo info;
        ASSERT_FALSE(check_request(header, {}, info)) << text;
        EXPECT_EQ(info.keep_alive, parser.get().keep_alive()) << text;
        EXPECT_EQ(info.connection.value, header[http::field::connection]) << text;
        EXPECT_EQ(info.connection.present, header.find(http::field::connection) != header.end()) << text;
        EXPECT_EQ(info.priority.value, header[kPriorityHeader]) << text;
    }
}

TEST(CheckResponse, NotedFieldsAgreeWithBeast) {
    for (std::string_view text :
         {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
          "HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
          "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
          "HTTP/1.1 200 OK\r\nconnection: a\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"}) {
        http::response_parser<http::empty_body, FieldsAllocator<char>> parser;
        boost::beast::error_code ec;
        parser.put(boost::asio::buffer(text.data(), text.size()), ec);
        ASSERT_TRUE(parser.is_header_done()) << text;
        const auto& header = parser.get().base();
        ResponseInfo info;
        ASSERT_FALSE(check_response(header, info)) << text;
        EXPECT_EQ(info.keep_alive, parser.get().keep_alive()) << text;
        EXPECT_EQ(info.chunked, parser.get().chunked()) << text;
        EXPECT_EQ(info.connection.value, header[http::field::connection]) << text;
        EXPECT_EQ(info.retry_after.value, header[http::field::retry_after]) << text;
    }
}

}  // namespace
}  // namespace drover::proxy::http_rules
