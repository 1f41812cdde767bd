// The HTTP data path's per-request head work, done the way proxy/http_session.cpp does it: taking a
// request head (scan_head, copying the head into the session's raw-head string, Drover's own
// parse_request_head into the session's reused http_rules::Head, then check_request:
// take_request_head and handle_request), building the head forwarded upstream
// (http_heads::upstream_request from the parsed Head), and the same two steps for the backend's
// response (relay_response with parse_response_head and check_response, http_heads::client_response
// from the parsed fields). All of it runs once per proxied request: a large share of a small
// request's instructions (docs/performance.md).
// Bytes processed = the head's size (a browser-like GET of 8 fields and a curl-like one of 3).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "proxy/http_heads.hpp"
#include "proxy/http_rules.hpp"

namespace drover::proxy {
namespace {

// 8 fields, 429 bytes: what a browser sends for a page or an XHR.
constexpr std::string_view kBrowserGet =
    "GET /api/v1/products/12345?ref=home&lang=en HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=3f2a9c1e8b7d4a6f0c5e; theme=dark\r\n"
    "Referer: https://shop.example.com/catalog\r\n"
    "\r\n";

// 3 fields: curl, a health checker, a service client.
constexpr std::string_view kCurlGet =
    "GET /healthz HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: curl/8.5.0\r\n"
    "Accept: */*\r\n"
    "\r\n";

// A small JSON answer from a backend, head and body in one read, as it usually arrives.
constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Date: Mon, 15 Jan 2024 10:00:00 GMT\r\n"
    "Content-Type: application/json; charset=utf-8\r\n"
    "Content-Length: 27\r\n"
    "Connection: keep-alive\r\n"
    "Cache-Control: no-cache\r\n"
    "Server: nginx/1.24.0\r\n"
    "\r\n"
    "{\"id\":12345,\"name\":\"thing\"}";

constexpr std::string_view kClientIp = "203.0.113.7";

// A head already buffered, as the session takes it (take_request_head, relay_response): scan, copy
// the head's bytes into `raw_head` (the session's string, its capacity kept), parse them into `head`
// (the session's Head, its field vector's capacity kept). False (and the benchmark stops) on
// anything the session would refuse.
using ParseHead = std::optional<http_rules::Rejection> (*)(std::string_view, http_rules::Head&);

bool take_head(std::string_view bytes, ParseHead parse, std::string& raw_head, http_rules::Head& head) {
    http_rules::HeadScan scan;
    if (http_rules::scan_head(bytes, scan) || !scan.complete) { return false; }
    raw_head.assign(bytes.substr(0, scan.scanned));
    return !parse(raw_head, head);
}

// take_head plus handle_request's checks.
bool take_request(std::string_view bytes, std::string& raw_head, http_rules::Head& head,
                  http_rules::RequestInfo& info) {
    return take_head(bytes, &http_rules::parse_request_head, raw_head, head) &&
           !http_rules::check_request(head, http_rules::RequestLimits{}, info);
}

// take_head plus relay_response's check (the body follows the head in the same bytes).
bool take_response(std::string_view bytes, std::string& raw_head, http_rules::Head& head,
                   http_rules::ResponseInfo& info) {
    return take_head(bytes, &http_rules::parse_response_head, raw_head, head) &&
           !http_rules::check_response(head, info);
}

void BM_ParseRequestHead(benchmark::State& state, std::string_view bytes) {
    std::string raw_head;     // HttpSession::raw_head_
    http_rules::Head head;    // HttpSession::request_head_: reused from request to request
    for (auto _ : state) {
        http_rules::RequestInfo info;
        if (!take_request(bytes, raw_head, head, info)) {
            state.SkipWithError("request refused: not the measured path");
            break;
        }
        benchmark::DoNotOptimize(info.keep_alive);
        benchmark::DoNotOptimize(head.fields.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}
BENCHMARK_CAPTURE(BM_ParseRequestHead, browser, kBrowserGet);
BENCHMARK_CAPTURE(BM_ParseRequestHead, curl, kCurlGet);

// The request is parsed once; each iteration builds the forwarded head into a buffer kept from one
// iteration to the next, as HttpSession keeps upstream_head_.
void BM_BuildUpstreamHead(benchmark::State& state, std::string_view client_head) {
    std::string raw_head;
    http_rules::Head request;
    http_rules::RequestInfo info;
    if (!take_request(client_head, raw_head, request, info)) {
        state.SkipWithError("request refused: not the measured path");
        return;
    }
    Rng random(42);   // Worker::random()
    std::size_t bytes = 0;
    std::string head;
    for (auto _ : state) {
        http_heads::upstream_request(request, info, {kClientIp, "http", &random}, head);
        bytes = head.size();
        benchmark::DoNotOptimize(head.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}
BENCHMARK_CAPTURE(BM_BuildUpstreamHead, browser, kBrowserGet);
BENCHMARK_CAPTURE(BM_BuildUpstreamHead, curl, kCurlGet);

void BM_ParseResponseHead(benchmark::State& state) {
    std::string raw_head;     // HttpSession::raw_response_head_
    http_rules::Head head;    // HttpSession::response_head_
    for (auto _ : state) {
        http_rules::ResponseInfo info;
        if (!take_response(kResponse, raw_head, head, info)) {
            state.SkipWithError("response refused: not the measured path");
            break;
        }
        benchmark::DoNotOptimize(info.keep_alive);
        benchmark::DoNotOptimize(head.fields.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(raw_head.size()));
}
BENCHMARK(BM_ParseResponseHead);

// The response head for a GET from an HTTP/1.1 client that keeps its connection (stream_response):
// status line, the backend's parsed fields minus hop-by-hop, Content-Length.
void BM_BuildClientResponseHead(benchmark::State& state) {
    std::string raw_head;
    http_rules::Head response;
    http_rules::ResponseInfo info;
    if (!take_response(kResponse, raw_head, response, info) || !info.content_length) {
        state.SkipWithError("response refused: not the measured path");
        return;
    }
    http_heads::ClientResponse head_of;
    head_of.status = response.status;
    head_of.reason = response.reason;
    head_of.fields = &response.fields;
    head_of.connection_tokens = info.connection.value;
    head_of.length = *info.content_length;
    std::size_t bytes = 0;
    std::string head;   // HttpSession::client_head_
    for (auto _ : state) {
        http_heads::client_response(head_of, head);
        bytes = head.size();
        benchmark::DoNotOptimize(head.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_BuildClientResponseHead);

}  // namespace
}  // namespace drover::proxy
