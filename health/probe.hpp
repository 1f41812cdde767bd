#pragma once
// run_probe: one active health check of one host, as an asio coroutine. Owns nothing between calls: each
// call opens its own socket, does one exchange (TCP connect, HTTP GET and status line, or TLS
// handshake), closes it, and turns whatever happened into a ProbeResult. Decides only pass or fail of
// this one probe; rise/fall across probes is HealthState's job. Runs on the executor it is given (the
// control loop); OpenSSL stays inside probe.cpp and tls_client.cpp.

#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config/config.hpp"
#include "health/tls_client.hpp"

namespace drover::health {

struct ProbeResult {
    bool passed = false;
    // Short, for logs and the admin view: "HTTP 200", "connection refused", "timed out after 500ms",
    // "HTTP 503 not in 200-399", "TLS handshake ok", "TLS: <openssl reason>".
    std::string detail;
    // The check could not run on Drover's side (out of descriptors or buffers): no verdict on the host.
    bool local_failure = false;
};

// Whether `ec`, from opening or connecting a socket, is Drover's own shortage rather than the host's
// answer: out of descriptors (per process or system-wide), of buffer space or of memory.
bool is_local_shortage(const boost::system::error_code& ec);

// One probe of `check` against `address`, bounded as a whole (connect + exchange) by check.timeout.
// Never throws; every socket and timer it uses is created on `executor` and all their operations have
// completed when it returns. `default_host` is the Host header when HttpProbe::host is empty, and the
// TLS SNI when it looks like a hostname (the caller passes the cluster name).
// `tls`: the cluster's TLS to its hosts (null: none). With it, a TLS probe handshakes as traffic does
// (verification, SNI, client certificate) and an HTTP probe goes over TLS; without it a TLS probe only
// proves that a TLS stack answers, and verifies nothing.
//
// Lifetime: `check` is read across suspension points, so the caller must keep that HealthCheck (the
// loaded config) alive until the returned awaitable completes.
boost::asio::awaitable<ProbeResult> run_probe(boost::asio::any_io_executor executor,
                                              boost::asio::ip::tcp::endpoint address,
                                              const config::HealthCheck& check,
                                              std::string default_host,
                                              std::shared_ptr<const TlsClient> tls = nullptr);

}  // namespace drover::health
