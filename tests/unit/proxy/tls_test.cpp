// Building TLS contexts from config: which names a certificate answers for, and that every unusable
// file is reported at its place in the config. Certificates are made at test time with the openssl CLI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "health/tls_client.hpp"
#include "proxy/tls_server.hpp"

namespace drover::proxy {
namespace {

namespace fs = std::filesystem;

class Tls : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("drover-tls-test-" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        const std::string script =
            "cd '" + dir_.string() +
            "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem"
            " -days 2 -subj '/CN=Test CA'"
            " && for n in a b; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $n.key"
            " -out $n.csr -subj /CN=$n.test && printf \"subjectAltName=DNS:$n.test,DNS:*.$n.test\\n\" > $n.ext"
            " && openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 2"
            " -extfile $n.ext || exit 1; done"
            " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cn.key -out cn.pem"
            " -days 2 -subj /CN=only-cn.test"
            " >/dev/null 2>&1";
        ASSERT_EQ(std::system(script.c_str()), 0) << "openssl CLI failed in " << dir_;
    }
    static void TearDownTestSuite() { fs::remove_all(dir_); }

    static std::string path(const std::string& name) { return (dir_ / name).string(); }

    static config::TlsCertificate certificate(const std::string& cert, const std::string& key, int line) {
        config::TlsCertificate c;
        c.cert = path(cert);
        c.key = path(key);
        c.mark = config::Mark{"drover.yaml", line, 11};
        return c;
    }

    static fs::path dir_;
};

fs::path Tls::dir_;

TEST_F(Tls, ServerNamesComeFromSubjectAltNamesElseTheCommonName) {
    config::ListenerTls settings;
    settings.certificates = {certificate("a.pem", "a.key", 5), certificate("b.pem", "b.key", 6),
                             certificate("cn.pem", "cn.key", 7)};
    const auto built = TlsServer::build(settings, "listeners[0].tls", true);
    ASSERT_TRUE(built.server) << (built.errors.empty() ? "" : built.errors.front().str());
    const auto names = built.server->names();
    ASSERT_EQ(names.size(), 3u);
    EXPECT_EQ(names[0], (std::vector<std::string>{"a.test", "*.a.test"}));
    EXPECT_EQ(names[1], (std::vector<std::string>{"b.test", "*.b.test"}));
    EXPECT_EQ(names[2], (std::vector<std::string>{"only-cn.test"}));
    EXPECT_FALSE(built.server->files_changed());
}

TEST_F(Tls, ServerReportsEveryBadCertificateAtItsPlace) {
    config::ListenerTls settings;
    settings.certificates = {certificate("a.pem", "a.key", 5), certificate("b.pem", "a.key", 6),
                             certificate("missing.pem", "b.key", 7), certificate("ca.key", "b.key", 8)};
    const auto built = TlsServer::build(settings, "listeners[2].tls", true);
    EXPECT_FALSE(built.server);
    ASSERT_EQ(built.errors.size(), 3u);
    EXPECT_EQ(built.errors[0].path, "listeners[2].tls.certificates[1]");
    EXPECT_EQ(built.errors[0].mark.line, 6);
    EXPECT_EQ(built.errors[0].message, "key " + path("a.key") + " does not match cert " + path("b.pem"));
    EXPECT_EQ(built.errors[1].path, "listeners[2].tls.certificates[2]");
    EXPECT_EQ(built.errors[1].message, "cannot load cert " + path("missing.pem") + ": No such file or directory");
    EXPECT_EQ(built.errors[2].path, "listeners[2].tls.certificates[3]");
    EXPECT_NE(built.errors[2].message.find("cannot load cert " + path("ca.key")), std::string::npos)
        << built.errors[2].message;
    EXPECT_EQ(built.errors[2].str().rfind("drover.yaml:8:11: listeners[2].tls.certificates[3]: ", 0), 0u);
}

TEST_F(Tls, ServerNoticesChangedFiles) {
    config::ListenerTls settings;
    settings.certificates = {certificate("b.pem", "b.key", 5)};
    const auto built = TlsServer::build(settings, "listeners[0].tls", false);
    ASSERT_TRUE(built.server);
    EXPECT_FALSE(built.server->files_changed());
    fs::last_write_time(path("b.pem"), fs::last_write_time(path("b.pem")) + std::chrono::seconds(5));
    EXPECT_TRUE(built.server->files_changed());
}

TEST_F(Tls, ClientBuildsWithCaAndClientCertificate) {
    config::UpstreamTls settings;
    settings.sni = "a.test";
    settings.ca = path("ca.pem");
    settings.cert = path("a.pem");
    settings.key = path("a.key");
    const auto built = health::TlsClient::build(settings);
    ASSERT_TRUE(built.client) << built.error;
    EXPECT_EQ(built.client->settings().sni, "a.test");
    EXPECT_FALSE(built.client->files_changed());
}

TEST_F(Tls, ClientSaysWhichFileIsUnusable) {
    config::UpstreamTls missing_ca;
    missing_ca.ca = path("nope.pem");
    EXPECT_EQ(health::TlsClient::build(missing_ca).error,
              "cannot load ca " + path("nope.pem") + ": No such file or directory");

    // Every missing file at once: one run of drover --check names them all.
    config::UpstreamTls all_missing;
    all_missing.ca = path("nope.pem");
    all_missing.cert = path("gone.pem");
    all_missing.key = path("gone.key");
    EXPECT_EQ(health::TlsClient::build(all_missing).error,
              "cannot load ca " + path("nope.pem") + ": No such file or directory; cannot load cert " +
                  path("gone.pem") + ": No such file or directory; cannot load key " + path("gone.key") +
                  ": No such file or directory");
    // Without verification the ca is not read, so it cannot be missing.
    all_missing.ca.clear();
    all_missing.verify = false;
    EXPECT_EQ(health::TlsClient::build(all_missing).error.rfind("cannot load cert ", 0), 0u);

    config::UpstreamTls mismatched;
    mismatched.ca = path("ca.pem");
    mismatched.cert = path("a.pem");
    mismatched.key = path("b.key");
    EXPECT_EQ(health::TlsClient::build(mismatched).error,
              "key " + path("b.key") + " does not match cert " + path("a.pem"));

    config::UpstreamTls not_pem;
    not_pem.ca = path("a.ext");
    const auto built = health::TlsClient::build(not_pem);
    EXPECT_FALSE(built.client);
    EXPECT_EQ(built.error.rfind("cannot load ca " + path("a.ext") + ": ", 0), 0u) << built.error;
}

TEST_F(Tls, ClientWithoutVerificationNeedsNoTrustAnchors) {
    config::UpstreamTls settings;
    settings.verify = false;
    const auto built = health::TlsClient::build(settings);
    EXPECT_TRUE(built.client) << built.error;
}

TEST_F(Tls, CheckTlsReportsListenersAndClustersWithTheirPaths) {
    config::Config config;
    config::Listener listener;
    listener.name = "edge";
    listener.tls = config::ListenerTls{};
    listener.tls->certificates = {certificate("a.pem", "missing.key", 4)};
    config.listeners.push_back(listener);
    config::Cluster good;
    good.name = "good";
    good.tls = config::UpstreamTls{};
    good.tls->ca = path("ca.pem");
    config::Cluster bad;
    bad.name = "bad";
    bad.tls = config::UpstreamTls{};
    bad.tls->ca = path("nope.pem");
    bad.tls->mark = config::Mark{"drover.yaml", 30, 5};
    config.clusters = {good, bad};
    const auto errors = check_tls(config);
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0].path, "listeners[0].tls.certificates[0]");
    EXPECT_EQ(errors[0].message, "cannot load key " + path("missing.key") + ": No such file or directory");
    EXPECT_EQ(errors[1].str(), "drover.yaml:30:5: clusters[1].tls: cannot load ca " + path("nope.pem") +
                                   ": No such file or directory");
}

}  // namespace
}  // namespace drover::proxy
