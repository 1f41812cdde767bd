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

TEST(Router, OptionsStarTakesTheCatchAllRoute) {
    const auto r = make_router();
    EXPECT_EQ(r.match("api.example.com", "*"), 1u);   // the wildcard host route has no path_prefix
    EXPECT_EQ(r.match("other.org", "*"), 3u);         // "/" catches it; "/static/" does not
    Router narrow;
    narrow.add({"", "/v1/"}, 0);
    EXPECT_FALSE(narrow.match("a", "*"));
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
    EXPECT_EQ(r.match("A.Example.COM.:443", "/"), 7u);   // any case, port and trailing dot ignored
    EXPECT_FALSE(r.match("BadExample.COM", "/"));
}

TEST(Router, NormalizePath) {
    EXPECT_EQ(Router::normalize_path("/"), "/");
    EXPECT_EQ(Router::normalize_path("/a/b"), "/a/b");
    EXPECT_EQ(Router::normalize_path("/a/b/"), "/a/b/");
    EXPECT_EQ(Router::normalize_path("/a/./b/../c//d?x=/../y"), "/a/c/d?x=/../y");
    EXPECT_EQ(Router::normalize_path("/public/../admin/x"), "/admin/x");
    EXPECT_EQ(Router::normalize_path("/public/%2e%2E/admin"), "/admin");
    EXPECT_EQ(Router::normalize_path("/../../etc"), "/etc");
    EXPECT_EQ(Router::normalize_path("/a/.."), "/");
    EXPECT_EQ(Router::normalize_path("/a/b/.."), "/a/");
    EXPECT_EQ(Router::normalize_path("//admin"), "/admin");
    EXPECT_EQ(Router::normalize_path("/a/..b/.c"), "/a/..b/.c");   // dots inside names are names
    EXPECT_EQ(Router::normalize_path("/%41%2f"), "/%41%2f");         // other escapes stay as they are
}

// A path that a backend resolves to another prefix goes where that prefix goes.
TEST(Router, PathPrefixesMatchTheResolvedPath) {
    Router r;
    r.add({"", "/admin/"}, 0);
    r.add({"", "/public/"}, 1);
    r.add({"", "/"}, 2);
    EXPECT_EQ(r.match("a", "/public/../admin/users"), 0u);
    EXPECT_EQ(r.match("a", "/public/%2e%2e/admin/users"), 0u);
    EXPECT_EQ(r.match("a", "//admin/users"), 0u);
    EXPECT_EQ(r.match("a", "/public/./x"), 1u);
    EXPECT_EQ(r.match("a", "/admin/../public/x?a=/admin/"), 1u);
    EXPECT_EQ(r.match("a", "/public/x"), 1u);
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
    EXPECT_EQ(Router::host_name("Example.COM.:80"), "Example.COM");
    EXPECT_EQ(Router::host_name("[::1]:8080"), "[::1]");
}

TEST(Router, Ipv6LiteralsMatchAsAddresses) {
    Router r;
    r.add({"[0:0::1]", ""}, 1);
    r.add({"", ""}, 2);
    for (const char* host : {"[::1]", "[::1]:8080", "[0::1]", "[0:0:0:0:0:0:0:1]", "[::0001]"}) {
        EXPECT_EQ(r.match(host, "/"), 1u) << host;
    }
    EXPECT_EQ(r.match("[::2]", "/"), 2u);
    Router upper;
    upper.add({"[::ABCD]", ""}, 3);
    EXPECT_EQ(upper.match("[0::abcd]:80", "/"), 3u);
}

}  // namespace
}  // namespace drover::proxy
