#pragma once
// The heads Drover writes: the request head it forwards upstream and the response head it sends the
// client, both built from the raw bytes received (fields keep their order and spelling) minus
// hop-by-hop fields, plus Drover's own framing and X-Forwarded-*. Pure; the HTTP session calls these
// once per request, and benchmarks/micro/http_bench.cpp measures them.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http_rules.hpp"
#include "proxy/load_balancer/rng.hpp"

namespace drover::proxy::http_heads {

// Appends "name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);
// A number as decimal digits in `out`, without a std::string.
std::string_view decimal(std::uint64_t value, std::array<char, 20>& out);
// 128 random bits as 32 lowercase hex digits.
std::string_view request_id(std::uint64_t high, std::uint64_t low, std::array<char, 32>& out);

// What the request head forwarded upstream says about where it came from.
struct Forwarding {
    std::string_view client_ip;   // appended to X-Forwarded-For
    std::string_view proto;       // X-Forwarded-Proto: "http", or "https" on a TLS listener
    Rng* random;                  // draws an X-Request-Id when the client sent none
    // The Host sent for a request that names no authority (HTTP/1.0 without Host): the address the
    // client connected to, as RFC 9112 section 3.3 reconstructs the target URI. Empty otherwise.
    std::string_view authority = {};
    // X-Forwarded-Client-Cert for the backend: the client certificate a mutual-TLS listener verified
    // (`Hash=...;Subject="..."`), empty for none. A client's own is never passed on.
    std::string_view client_cert = {};
};

// The request line in origin-form, the client's fields (as received: order and spelling) minus hop-by-hop
// ones, Expect and the X-Forwarded-Proto/Host it may not set; Host if it had none; X-Forwarded-For
// (the client's list plus its address), -Proto, -Host; X-Request-Id unless present; the WebSocket
// upgrade; the body's framing as Drover will send it. Written into `head`, cleared first: a buffer kept
// from one request to the next keeps its capacity, and the head costs no allocation.
void upstream_request(const http_rules::Head& request, const http_rules::RequestInfo& info,
                      const Forwarding& forwarding, std::string& head);

// What the response head sent to the client needs besides the backend's fields.
struct ClientResponse {
    unsigned status = 200;
    std::string_view reason;
    const std::vector<http_rules::Field>* fields = nullptr;   // the backend's, as received
    std::string_view connection_tokens;    // its Connection field (tokens named there are hop-by-hop)
    bool head_request = false;             // a HEAD answer's Content-Length is passed through as is (a 304's too)
    std::optional<std::uint64_t> length;   // Content-Length to send (none: chunked or close-delimited)
    bool chunked = false;                  // Drover sends the body chunked
    bool close = false;                    // Connection: close
    bool http10_keep_alive = false;        // Connection: keep-alive for an HTTP/1.0 client kept open
};

// The status line, the backend's fields minus hop-by-hop ones, then Drover's framing and Connection.
// A response without Date gets one (RFC 9110 section 6.6.1: a recipient with a clock adds it before
// forwarding). Written into `head`, cleared first (as upstream_request).
void client_response(const ClientResponse& response, std::string& head);

// Now as an HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted once a second per thread.
std::string_view http_date();

}  // namespace drover::proxy::http_heads
