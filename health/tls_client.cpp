#include "health/tls_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace drover::health {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;

namespace {

// Where each SSL object keeps its peer key (for the new-session callback) and each SSL_CTX its owner.
int peer_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
int owner_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

bool is_ip_literal(const std::string& name) {
    error_code ec;
    (void)asio::ip::make_address(name, ec);
    return !ec;
}

}  // namespace

// The reason OpenSSL put on its error queue, or the system's.
std::string tls_error_reason(const error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category()) {
        if (const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) { return reason; }
    }
    return ec.message();
}

// A file OpenSSL is about to read: a missing or unreadable one gets the system's reason, which says
// more than OpenSSL's "system lib".
std::string unreadable_file(const std::string& path) {
    if (::access(path.c_str(), R_OK) == 0) { return {}; }
    return std::strerror(errno);
}

struct TlsClient::Impl {
    explicit Impl(const config::UpstreamTls& s) : context(ssl::context::tls_client), settings(s) {}
    ~Impl() {
        for (auto& [peer, session] : sessions) { SSL_SESSION_free(session); }
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    // Keeps the newest session each peer gave, for the next connection to resume (no full handshake).
    static int on_new_session(SSL* ssl, SSL_SESSION* session) {
        auto* self = static_cast<Impl*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), owner_index()));
        const auto* peer = static_cast<const std::string*>(SSL_get_ex_data(ssl, peer_index()));
        if (self == nullptr || peer == nullptr) { return 0; }
        const std::lock_guard lock(self->mutex);
        auto& slot = self->sessions[*peer];
        if (slot != nullptr) { SSL_SESSION_free(slot); }
        slot = session;
        return 1;   // the reference is ours now
    }

    ssl::context context;
    config::UpstreamTls settings;
    FileStamps stamps;
    mutable std::mutex mutex;   // workers resume sessions concurrently
    std::unordered_map<std::string, SSL_SESSION*> sessions;
};

TlsClient::TlsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsClient::~TlsClient() = default;

TlsClient::Built TlsClient::build(const config::UpstreamTls& settings) {
    auto impl = std::make_unique<Impl>(settings);
    auto& context = impl->context;
    SSL_CTX* native = context.native_handle();
    context.set_options(ssl::context::no_compression | ssl::context::default_workarounds);
    SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    const auto fail = [](std::string what, const std::string& path, const std::string& why) {
        return Built{nullptr, fmt::format("cannot load {} {}: {}", what, path, why)};
    };
    // Every missing or unreadable file at once, so that one run of drover --check names them all.
    std::string unreadable;
    for (const auto& [what, path] : {std::pair{"ca", &settings.ca}, std::pair{"cert", &settings.cert},
                                     std::pair{"key", &settings.key}}) {
        if (path->empty() || (path == &settings.ca && !settings.verify)) { continue; }
        if (auto why = unreadable_file(*path); !why.empty()) {
            unreadable += fmt::format("{}cannot load {} {}: {}", unreadable.empty() ? "" : "; ", what, *path, why);
        }
    }
    if (!unreadable.empty()) { return Built{nullptr, std::move(unreadable)}; }
    error_code ec;
    if (settings.verify) {
        context.set_verify_mode(ssl::verify_peer, ec);
        if (settings.ca.empty()) {
            context.set_default_verify_paths(ec);
            if (ec) { return Built{nullptr, fmt::format("cannot use the system's CA certificates: {}", tls_error_reason(ec))}; }
        } else {
            context.load_verify_file(settings.ca, ec);
            if (ec) { return fail("ca", settings.ca, tls_error_reason(ec)); }
        }
    } else {
        context.set_verify_mode(ssl::verify_none, ec);
    }
    if (!settings.cert.empty()) {
        context.use_certificate_chain_file(settings.cert, ec);
        if (ec) { return fail("cert", settings.cert, tls_error_reason(ec)); }
        if (auto why = use_key(context, settings.key, settings.cert); !why.empty()) { return Built{nullptr, std::move(why)}; }
    }
    for (const auto* path : {&settings.ca, &settings.cert, &settings.key}) {
        if (!path->empty()) { impl->stamps.add(*path); }
    }
    // Client-side session cache kept by us, per peer: OpenSSL's internal store never resumes for a client.
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(native, &Impl::on_new_session);
    SSL_CTX_set_ex_data(native, owner_index(), impl.get());
    return Built{std::shared_ptr<const TlsClient>(new TlsClient(std::move(impl))), {}};
}

ssl::context& TlsClient::context() const { return impl_->context; }

const config::UpstreamTls& TlsClient::settings() const { return impl_->settings; }

void TlsClient::prepare(ssl_st* ssl, const std::string& peer) const {
    const std::string& name = impl_->settings.sni;
    if (!name.empty()) {
        const bool ip = is_ip_literal(name);
        // SNI carries DNS names only (RFC 6066). SSL_set_tlsext_host_name is a macro with a C cast.
        if (!ip) {
            SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(name.c_str()));
        }
        if (impl_->settings.verify) {
            if (ip) {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
            } else {
                SSL_set1_host(ssl, name.c_str());
            }
        }
    }
    SSL_set_ex_data(ssl, peer_index(), const_cast<std::string*>(&peer));
    const std::lock_guard lock(impl_->mutex);
    if (const auto it = impl_->sessions.find(peer); it != impl_->sessions.end()) { SSL_set_session(ssl, it->second); }
}

bool TlsClient::files_changed() const { return impl_->stamps.changed(); }

namespace {
// OpenSSL's passphrase callback: none is given. `asked` (the user data) records that one was wanted.
int no_passphrase(char*, int, int, void* asked) {
    if (asked != nullptr) { *static_cast<bool*>(asked) = true; }
    return 0;
}
}  // namespace

std::string use_key(ssl::context& context, const std::string& key, const std::string& cert) {
    SSL_CTX* native = context.native_handle();
    bool asked = false;
    SSL_CTX_set_default_passwd_cb(native, &no_passphrase);   // stays: never a prompt
    SSL_CTX_set_default_passwd_cb_userdata(native, &asked);
    error_code ec;
    context.use_private_key_file(key, ssl::context::pem, ec);
    SSL_CTX_set_default_passwd_cb_userdata(native, nullptr);
    if (ec && asked) {
        ERR_clear_error();
        return fmt::format("cannot load key {}: it is encrypted, and Drover takes no passphrase "
                           "(store it decrypted, readable by Drover only: openssl pkey -in {} -out NEW)", key, key);
    }
    const bool mismatch = ec ? ec.category() == asio::error::get_ssl_category() &&
                                   ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH
                             : SSL_CTX_check_private_key(native) != 1;
    if (mismatch) {
        ERR_clear_error();
        return fmt::format("key {} does not match cert {}", key, cert);
    }
    return ec ? fmt::format("cannot load key {}: {}", key, tls_error_reason(ec)) : std::string();
}

void keep_session(ssl_st* ssl) {
    if (ssl != nullptr && SSL_is_init_finished(ssl) == 1) { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN); }
}

std::string describe_handshake_error(const error_code& ec, ssl_st* ssl) {
    if (ssl != nullptr) {
        const long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
            return fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(verify));
        }
    }
    if (ec == asio::error::eof || ec == ssl::error::stream_truncated) { return "connection closed during the handshake"; }
    if (ec == asio::error::connection_reset) { return "connection reset during the handshake"; }
    return tls_error_reason(ec);
}

void FileStamps::add(const std::string& path) { stamps_.push_back(stamp(path)); }

bool FileStamps::changed() const {
    for (const auto& s : stamps_) {
        const Stamp now = stamp(s.path);
        if (now.mtime_ns != s.mtime_ns || now.size != s.size || now.mtime_ns < 0) { return true; }
    }
    return false;
}

FileStamps::Stamp FileStamps::stamp(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) { return Stamp{path, -1, -1}; }
    return Stamp{path, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                 static_cast<std::int64_t>(st.st_size)};
}

}  // namespace drover::health
