#pragma once
// The client side of TLS as a cluster configures it (clusters[].tls): trust anchors, verification, an
// optional client certificate (mTLS), and the name sent as SNI and checked against the host's
// certificate. Built on the control loop from the config, then shared read-only by every worker's
// upstream connections and by the cluster's health probes (which must see what traffic sees).
// OpenSSL stays in tls_client.cpp; callers get the asio context and hand each new SSL object to
// prepare() before its handshake.

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"

struct ssl_st;
namespace boost::asio::ssl {
class context;
}

namespace drover::health {

class TlsClient {
public:
    // Reads every file now. On failure `client` is null and `error` says which file and why, in
    // OpenSSL's words ("cannot load ca certs/ca.pem: no such file").
    struct Built {
        std::shared_ptr<const TlsClient> client;
        std::string error;
    };
    static Built build(const config::UpstreamTls& settings);

    ~TlsClient();
    TlsClient(const TlsClient&) = delete;
    TlsClient& operator=(const TlsClient&) = delete;

    boost::asio::ssl::context& context() const;
    const config::UpstreamTls& settings() const;

    // Before the handshake of a new connection to `peer` (an "ip:port" that keys session resumption;
    // it must outlive the connection): SNI, the name to verify, and the last session with that peer.
    // Every connection must keep its TlsClient alive: OpenSSL calls back into it for new sessions.
    void prepare(ssl_st* ssl, const std::string& peer) const;

    // Whether a file it was built from has changed since (a reload then builds a new one).
    bool files_changed() const;

private:
    struct Impl;
    explicit TlsClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Before closing a client connection without a TLS shutdown (pooled ones time out, probes hang up):
// marks the shutdown as done, or OpenSSL would drop the session as if the connection had been cut,
// and the next connection to that peer would need a full handshake.
void keep_session(ssl_st* ssl);

// OpenSSL's reason for a failed TLS call ("no start line"), else the system's message.
std::string tls_error_reason(const boost::system::error_code& ec);

// Why `path` can't be read (the system's reason: "No such file or directory"), or empty if it can.
std::string unreadable_file(const std::string& path);

// Loads the private key `key` into `context`, after its certificate `cert`: empty when it is in, else
// why not (it does not match `cert`; it is encrypted, and Drover never asks for a passphrase, where
// OpenSSL would prompt on a terminal and a reload would hang; OpenSSL's reason).
std::string use_key(boost::asio::ssl::context& context, const std::string& key, const std::string& cert);

// A failed handshake in words an operator can search for: OpenSSL's reason, and for a certificate
// that did not verify, why ("certificate verify failed: self-signed certificate in certificate chain").
std::string describe_handshake_error(const boost::system::error_code& ec, ssl_st* ssl);

// The modification time of each file, to tell when a reload must read them again. Missing files
// count as a change.
class FileStamps {
public:
    void add(const std::string& path);
    bool changed() const;

private:
    struct Stamp {
        std::string path;
        std::int64_t mtime_ns = -1;
        std::int64_t size = -1;
    };
    static Stamp stamp(const std::string& path);
    std::vector<Stamp> stamps_;
};

}  // namespace drover::health
