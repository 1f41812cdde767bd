#include "proxy/router.hpp"

#include <gtest/gtest.h>

namespace drover::proxy {
namespace {

Router make_router() {
    Router r;
    r.add({"api.example.com", "/v1/"}, 0);
    r.add({"*.example.com", ""}, 1);
    r.add({"", "/static/"}, 2);
    r.add({"", "/"}, 3);
    return r;
}

TEST(Router, FirstMatchWins) {
    const auto r = make_router();
    EXPECT_EQ(r.match("api.example.com", "/v1/users"), 0u);
    EXPECT_EQ(r.match("api.example.com", "/v2/users"), 1u);   // host matches the wildcard next
    EXPECT_EQ(r.match("other.org", "/static/a.css"), 2u);
    EXPECT_EQ(r.match("other.org", "/"), 3u);
}

TEST(Router, HostIsCaseInsensitiveAndIgnoresPort) {
    const auto r = make_router();
    EXPECT_EQ(r.match("API.Example.COM:8080", "/v1/x"), 0u);
    EXPECT_EQ(r.match("api.example.com.", "/v1/x"), 0u);
}

TEST(Router, WildcardNeedsASubdomain) {
    Router r;
    r.add({"*.example.com", ""}, 7);
    EXPECT_EQ(r.match("a.example.com", "/"), 7u);
    EXPECT_EQ(r.match("a.b.example.com", "/"), 7u);
    EXPECT_FALSE(r.match("example.com", "/"));
    EXPECT_FALSE(r.match("badexample.com", "/"));
}

TEST(Router, NoMatch) {
    Router r;
    r.add({"a.com", "/x"}, 0);
    EXPECT_FALSE(r.match("a.com", "/y"));
    EXPECT_FALSE(r.match("b.com", "/x"));
}

TEST(Router, NormalizeHost) {
    EXPECT_EQ(Router::normalize_host("Example.COM:80"), "example.com");
    EXPECT_EQ(Router::normalize_host("[::1]:8080"), "[::1]");
    EXPECT_EQ(Router::normalize_host("127.0.0.1"), "127.0.0.1");
}

}  // namespace
}  // namespace drover::proxy
