#include "proxy/tls_server.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "health/tls_client.hpp"

namespace drover::proxy {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;

namespace {

// ALPN wire format: length-prefixed protocol names.
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// The DNS names a certificate answers for: its subjectAltName DNS entries, else its subject CN.
std::vector<std::string> certificate_names(X509* certificate) {
    std::vector<std::string> names;
    if (certificate == nullptr) { return names; }
    auto* alt = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr));
    if (alt != nullptr) {
        for (int i = 0; i < sk_GENERAL_NAME_num(alt); ++i) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt, i);
            if (name->type != GEN_DNS) { continue; }
            const auto* data = ASN1_STRING_get0_data(name->d.dNSName);
            names.push_back(lower({reinterpret_cast<const char*>(data), static_cast<std::size_t>(ASN1_STRING_length(name->d.dNSName))}));
        }
        GENERAL_NAMES_free(alt);
    }
    if (names.empty()) {
        X509_NAME* subject = X509_get_subject_name(certificate);
        const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
        if (at >= 0) {
            const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
            const auto* data = ASN1_STRING_get0_data(cn);
            names.push_back(lower({reinterpret_cast<const char*>(data), static_cast<std::size_t>(ASN1_STRING_length(cn))}));
        }
    }
    return names;
}

// A time of a certificate in Unix seconds; 0 if it cannot say.
std::int64_t unix_time(const ASN1_TIME* time) {
    std::tm when{};
    if (time == nullptr || ASN1_TIME_to_tm(time, &when) != 1) { return 0; }
    return static_cast<std::int64_t>(::timegm(&when));
}

// When what a context serves is valid: from the latest notBefore to the earliest notAfter of the
// leaf and the chain sent with it (clients refuse a chain with an expired intermediate too).
struct Validity {
    std::int64_t not_before = 0;
    std::int64_t not_after = 0;   // 0: unknown
};

Validity validity(SSL_CTX* context) {
    Validity v;
    const auto add = [&v](X509* certificate) {
        const std::int64_t before = unix_time(X509_get0_notBefore(certificate));
        const std::int64_t after = unix_time(X509_get0_notAfter(certificate));
        v.not_before = std::max(v.not_before, before);
        if (after != 0 && (v.not_after == 0 || after < v.not_after)) { v.not_after = after; }
    };
    if (X509* leaf = SSL_CTX_get0_certificate(context)) { add(leaf); }
    STACK_OF(X509)* chain = nullptr;
    if (SSL_CTX_get0_chain_certs(context, &chain) == 1 && chain != nullptr) {
        for (int i = 0; i < sk_X509_num(chain); ++i) { add(sk_X509_value(chain, i)); }
    }
    return v;
}

// Loading an expired certificate (or one about to expire) is allowed, since a renewal may be on its
// way, but said: clients will refuse it. Empty when there is nothing to say.
constexpr std::int64_t kExpiryWarningSeconds = 14 * 24 * 3600;

std::string expiry_warning(std::string_view what, const Validity& valid,
                           std::string_view refused = "clients will refuse it") {
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    if (valid.not_before > now) {
        return fmt::format("{} is not valid for {:.1f} more days: {}", what,
                           static_cast<double>(valid.not_before - now) / 86400, refused);
    }
    if (valid.not_after == 0) { return {}; }
    const std::int64_t left = valid.not_after - now;
    if (left <= 0) {
        return fmt::format("{} expired {:.1f} days ago: {}", what, static_cast<double>(-left) / 86400, refused);
    }
    if (left < kExpiryWarningSeconds) {
        return fmt::format("{} expires in {:.1f} days", what, static_cast<double>(left) / 86400);
    }
    return {};
}

// What the CAs of a client_ca bundle say about their dates: a CA that has expired (or is not valid
// yet) makes every client certificate it issued fail verification. One line per such CA, with the
// near-expiry ones too.
std::vector<std::string> client_ca_warnings(const std::string& file) {
    std::vector<std::string> out;
    std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new_file(file.c_str(), "r"), &BIO_free};
    if (bio == nullptr) {
        ERR_clear_error();
        return out;
    }
    while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        std::unique_ptr<X509, decltype(&X509_free)> ca{raw, &X509_free};
        Validity valid;
        valid.not_before = unix_time(X509_get0_notBefore(ca.get()));
        valid.not_after = unix_time(X509_get0_notAfter(ca.get()));
        char subject[256] = {};
        X509_NAME_oneline(X509_get_subject_name(ca.get()), subject, sizeof subject);
        if (auto warning = expiry_warning(fmt::format("client_ca {}: CA {}", file, subject), valid,
                                          "client certificates it issued fail verification");
            !warning.empty()) {
            out.push_back(std::move(warning));
        }
    }
    ERR_clear_error();   // the end of the file reads as an error
    return out;
}

int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void* /*arg*/) {
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, outlen, kAlpnHttp11, sizeof kAlpnHttp11, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;   // nothing in common: go on without ALPN, speaking HTTP/1.1
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

struct TlsServer::Impl {
    struct Certificate {
        std::unique_ptr<ssl::context> context;
        std::vector<std::string> names;
        std::string file;
        std::int64_t not_after = 0;   // Unix seconds
    };

    // The certificate for a client's SNI: an exact name, else a wildcard covering its first label, else
    // the first certificate. A final dot (a fully qualified name) is not part of the name.
    std::size_t select(std::string_view server_name) const {
        if (server_name.ends_with('.')) { server_name.remove_suffix(1); }
        const std::string name = lower(server_name);
        if (const auto it = exact.find(name); it != exact.end()) { return it->second; }
        if (const auto dot = name.find('.'); dot != std::string::npos && dot > 0) {
            if (const auto it = wildcard.find(name.substr(dot)); it != wildcard.end()) { return it->second; }
        }
        return 0;
    }

    // The certificate is chosen as the ClientHello arrives, before a session is looked for: a session
    // may only resume under the certificate it was made with (RFC 6066 section 3: not under another
    // name), and each certificate's context has a session id context of its own, which OpenSSL checks
    // for cached sessions; tickets carry the certificate (on_new_ticket, on_ticket).
    static int on_client_hello(SSL* ssl, int* /*alert*/, void* arg) {
        const auto* self = static_cast<const Impl*>(arg);
        const unsigned char* data = nullptr;
        std::size_t length = 0;
        if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &data, &length) != 1) {
            return SSL_CLIENT_HELLO_SUCCESS;   // no SNI: the default certificate
        }
        const std::size_t chosen = self->select(host_name(data, length));
        if (chosen != 0) { SSL_set_SSL_CTX(ssl, self->certificates[chosen].context->native_handle()); }
        return SSL_CLIENT_HELLO_SUCCESS;
    }

    // The host_name of a server_name extension (RFC 6066 section 3); empty if there is none.
    static std::string_view host_name(const unsigned char* data, std::size_t length) {
        if (length < 2) { return {}; }
        const std::size_t list = (std::size_t{data[0]} << 8) | data[1];
        const unsigned char* p = data + 2;
        const unsigned char* const end = p + std::min(list, length - 2);
        while (end - p >= 3) {
            const unsigned type = p[0];
            const std::size_t size = (std::size_t{p[1]} << 8) | p[2];
            p += 3;
            if (size > static_cast<std::size_t>(end - p)) { break; }
            if (type == TLSEXT_NAMETYPE_host_name) { return {reinterpret_cast<const char*>(p), size}; }
            p += size;
        }
        return {};
    }

    // Acknowledges the SNI (the certificate was chosen already).
    static int on_servername(SSL* /*ssl*/, int* /*alert*/, void* /*arg*/) { return SSL_TLSEXT_ERR_OK; }

    std::uint32_t index_of(const SSL_CTX* context) const {
        for (std::size_t i = 0; i < certificates.size(); ++i) {
            if (certificates[i].context->native_handle() == context) { return static_cast<std::uint32_t>(i); }
        }
        return 0;
    }

    // A ticket records the certificate its session was made under...
    static int on_new_ticket(SSL* ssl, void* arg) {
        const auto* self = static_cast<const Impl*>(arg);
        const std::uint32_t index = self->index_of(SSL_get_SSL_CTX(ssl));
        SSL_SESSION* session = SSL_get_session(ssl);
        return session != nullptr && SSL_SESSION_set1_ticket_appdata(session, &index, sizeof index) == 1 ? 1 : 0;
    }

    // ...and resumes only under that one (else a full handshake, and a new ticket).
    static SSL_TICKET_RETURN on_ticket(SSL* ssl, SSL_SESSION* session, const unsigned char* /*name*/,
                                       std::size_t /*name_length*/, SSL_TICKET_STATUS status, void* arg) {
        if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) { return SSL_TICKET_RETURN_IGNORE_RENEW; }
        const auto* self = static_cast<const Impl*>(arg);
        const std::uint32_t index = self->index_of(SSL_get_SSL_CTX(ssl));
        void* data = nullptr;
        std::size_t length = 0;
        if (SSL_SESSION_get0_ticket_appdata(session, &data, &length) != 1 || length != sizeof index ||
            std::memcmp(data, &index, sizeof index) != 0) {
            return SSL_TICKET_RETURN_IGNORE_RENEW;
        }
        return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
    }

    config::ListenerTls settings;
    std::vector<Certificate> certificates;
    std::unordered_map<std::string, std::size_t> exact;      // lower-case name -> certificate
    std::unordered_map<std::string, std::size_t> wildcard;   // ".example.com" (from "*.example.com") -> certificate
    health::FileStamps stamps;
};

TlsServer::TlsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsServer::~TlsServer() = default;

TlsServer::Built TlsServer::build(const config::ListenerTls& settings, const std::string& path, bool http) {
    auto impl = std::make_unique<Impl>();
    impl->settings = settings;
    Built built;
    // Client certificates: the CAs that may issue them, read once (every certificate's context gets
    // them: SNI may switch contexts, and verification uses the one in use).
    std::unique_ptr<STACK_OF(X509_NAME), void (*)(STACK_OF(X509_NAME)*)> client_cas{
        nullptr, [](STACK_OF(X509_NAME)* names) { sk_X509_NAME_pop_free(names, X509_NAME_free); }};
    if (!settings.client_ca.empty()) {
        const auto fail_ca = [&](std::string why) {
            built.errors.push_back(config::ConfigError{settings.mark, path + ".client_ca",
                                                       fmt::format("cannot load client_ca {}: {}", settings.client_ca, why)});
        };
        if (auto why = health::unreadable_file(settings.client_ca); !why.empty()) {
            fail_ca(why);
        } else {
            client_cas.reset(SSL_load_client_CA_file(settings.client_ca.c_str()));
            if (client_cas == nullptr || sk_X509_NAME_num(client_cas.get()) == 0) {
                ERR_clear_error();
                fail_ca("no PEM certificate in it");
            }
        }
        if (!built.errors.empty()) { return built; }
        for (auto& warning : client_ca_warnings(settings.client_ca)) {
            built.warnings.push_back(config::ConfigError{settings.mark, path + ".client_ca", std::move(warning), true});
        }
        impl->stamps.add(settings.client_ca);
    }
    for (std::size_t i = 0; i < settings.certificates.size(); ++i) {
        const auto& entry = settings.certificates[i];
        const auto fail = [&](std::string message) {
            built.errors.push_back(config::ConfigError{entry.mark, fmt::format("{}.certificates[{}]", path, i), std::move(message)});
        };
        auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
        SSL_CTX* native = context->native_handle();
        context->set_options(ssl::context::default_workarounds | ssl::context::no_compression | ssl::context::single_dh_use);
        SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_min_proto_version(native, settings.min_version == config::ListenerTls::Version::tls1_3 ? TLS1_3_VERSION
                                                                                                       : TLS1_2_VERSION);
        if (client_cas) {
            error_code ca_ec;
            context->load_verify_file(settings.client_ca, ca_ec);   // read and checked above
            SSL_CTX_set_client_CA_list(native, SSL_dup_CA_list(client_cas.get()));   // named in the request
            SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        }
        bool ok = true;
        for (const auto& [what, file] : {std::pair{"cert", &entry.cert}, std::pair{"key", &entry.key}}) {
            if (auto why = health::unreadable_file(*file); !why.empty()) {
                fail(fmt::format("cannot load {} {}: {}", what, *file, why));
                ok = false;
            }
        }
        if (!ok) { continue; }
        error_code ec;
        context->use_certificate_chain_file(entry.cert, ec);
        if (ec) {
            fail(fmt::format("cannot load cert {}: {}", entry.cert, health::tls_error_reason(ec)));
            continue;
        }
        if (auto why = health::use_key(*context, entry.key, entry.cert); !why.empty()) {
            fail(std::move(why));
            continue;
        }
        const std::string session_context = fmt::format("drover-{}", i);   // one per certificate (on_client_hello)
        SSL_CTX_set_session_id_context(native, reinterpret_cast<const unsigned char*>(session_context.data()),
                                       static_cast<unsigned>(session_context.size()));
        SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_SERVER);
        if (http) { SSL_CTX_set_alpn_select_cb(native, &select_alpn, nullptr); }
        impl->stamps.add(entry.cert);
        impl->stamps.add(entry.key);
        auto names = certificate_names(SSL_CTX_get0_certificate(native));
        for (const auto& name : names) {
            auto& index = name.starts_with("*.") ? impl->wildcard : impl->exact;
            index.emplace(name.starts_with("*.") ? name.substr(1) : name, impl->certificates.size());   // first one wins
        }
        const Validity valid = validity(native);
        const std::int64_t not_after = valid.not_after;
        if (auto warning = expiry_warning(fmt::format("certificate {} (or its chain)", entry.cert), valid); !warning.empty()) {
            built.warnings.push_back(config::ConfigError{entry.mark, fmt::format("{}.certificates[{}]", path, i),
                                                         std::move(warning), true});
        }
        impl->certificates.push_back({std::move(context), std::move(names), entry.cert, not_after});
    }
    if (!built.errors.empty()) { return built; }
    // Every handshake starts on the first certificate's context, where SNI may switch it.
    SSL_CTX* first = impl->certificates.front().context->native_handle();
    SSL_CTX_callback_ctrl(first, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                          reinterpret_cast<void (*)()>(&Impl::on_servername));
    SSL_CTX_ctrl(first, SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG, 0, impl.get());
    SSL_CTX_set_client_hello_cb(first, &Impl::on_client_hello, impl.get());
    // Tickets are made and opened with the first context's keys, whichever certificate serves.
    SSL_CTX_set_session_ticket_cb(first, &Impl::on_new_ticket, &Impl::on_ticket, impl.get());
    built.server = std::shared_ptr<const TlsServer>(new TlsServer(std::move(impl)));
    return built;
}

ssl::context& TlsServer::context() const { return *impl_->certificates.front().context; }

const config::ListenerTls& TlsServer::settings() const { return impl_->settings; }

std::vector<std::vector<std::string>> TlsServer::names() const {
    std::vector<std::vector<std::string>> out;
    for (const auto& c : impl_->certificates) { out.push_back(c.names); }
    return out;
}

std::vector<TlsServer::Expiry> TlsServer::expiries() const {
    std::vector<Expiry> out;
    for (const auto& c : impl_->certificates) { out.push_back({c.file, c.not_after}); }
    return out;
}

bool TlsServer::files_changed() const { return impl_->stamps.changed(); }

std::vector<config::ConfigError> check_tls(const config::Config& config) {
    std::vector<config::ConfigError> errors;
    for (std::size_t i = 0; i < config.listeners.size(); ++i) {
        const auto& listener = config.listeners[i];
        if (!listener.tls) { continue; }
        auto built = TlsServer::build(*listener.tls, fmt::format("listeners[{}].tls", i),
                                      listener.protocol == config::Protocol::http);
        for (auto& e : built.errors) { errors.push_back(std::move(e)); }
        for (auto& w : built.warnings) { errors.push_back(std::move(w)); }
    }
    for (std::size_t i = 0; i < config.clusters.size(); ++i) {
        const auto& cluster = config.clusters[i];
        if (!cluster.tls) { continue; }
        if (auto built = health::TlsClient::build(*cluster.tls); !built.client) {
            errors.push_back(config::ConfigError{cluster.tls->mark, fmt::format("clusters[{}].tls", i), std::move(built.error)});
        }
    }
    return errors;
}

}  // namespace drover::proxy
