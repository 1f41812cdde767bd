#pragma once
// TLS termination for a listener (listeners[].tls): one context per certificate, the first being where
// every handshake starts and the default when SNI names no certificate; SNI switches to the
// certificate whose names (subjectAltName DNS entries, else the subject CN; "*.example.com" covers one
// label) match. TLS 1.2 and 1.3, ALPN (http/1.1 on http listeners), session resumption by tickets and
// a server-side cache. Built on the control loop and shared read-only by the workers; a reload builds
// a new one when the settings or the files change. OpenSSL stays in tls_server.cpp.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/loader.hpp"

namespace boost::asio::ssl {
class context;
}

namespace drover::proxy {

class TlsServer {
public:
    // Reads every certificate and key now. On failure `server` is null and `errors` holds one entry
    // per bad certificate, pointing at it in the config.
    struct Built {
        std::shared_ptr<const TlsServer> server;
        std::vector<config::ConfigError> errors;
        std::vector<config::ConfigError> warnings;   // a certificate expired or expiring within 14 days
    };
    // `path`: the key path of this tls block for errors ("listeners[0].tls"); `http`: offer ALPN http/1.1.
    static Built build(const config::ListenerTls& settings, const std::string& path, bool http);

    ~TlsServer();
    TlsServer(const TlsServer&) = delete;
    TlsServer& operator=(const TlsServer&) = delete;

    // The context new connections start their handshake with.
    boost::asio::ssl::context& context() const;
    const config::ListenerTls& settings() const;
    // The names each certificate answers for, in config order (for logs and /config).
    std::vector<std::vector<std::string>> names() const;
    // When each certificate expires (its notAfter, Unix seconds; 0 if unknown), in config order.
    struct Expiry {
        std::string file;
        std::int64_t not_after = 0;
    };
    std::vector<Expiry> expiries() const;
    // Whether a certificate or key file changed since it was built.
    bool files_changed() const;

private:
    struct Impl;
    explicit TlsServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Every TLS context the config asks for, built once to find the problems `--check` and a reload must
// report (unreadable files, a key that does not match its certificate, bad PEM), at the config line;
// and the warnings (ConfigError::warning: certificates expired or about to).
std::vector<config::ConfigError> check_tls(const config::Config& config);

}  // namespace drover::proxy
