// Router::match on the HTTP data path: once per request, before admission and choose(). Routes are
// tried in order, so the cost grows with the number of routes tried: the match is timed when found
// first, last, and not at all (a 404), for 1, 10 and 100 routes. Routes are a mix as configs have
// them: exact hosts, "*.suffix" wildcards, path prefixes on a shared host, and a catch-all.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/router.hpp"

namespace drover::proxy {
namespace {

// n routes; every third a "*.tenantI.example.net" wildcard, every third an exact "svcI.example.com",
// every third a path prefix "/apiI/" on "api.example.com". Route 0 is what the "first" request hits.
std::vector<config::RouteMatch> routes(std::size_t n) {
    std::vector<config::RouteMatch> out;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string id = std::to_string(i);
        switch (i % 3) {
            case 0: out.push_back({"svc" + id + ".example.com", ""}); break;
            case 1: out.push_back({"*.tenant" + id + ".example.net", ""}); break;
            default: out.push_back({"api.example.com", "/api" + id + "/"}); break;
        }
    }
    return out;
}

// A request (Host as a client sends it: mixed case and a port) for what route `i` of routes(n) matches.
struct Request {
    std::string host;
    std::string path;
};
Request request_for(std::size_t i) {
    const std::string id = std::to_string(i);
    switch (i % 3) {
        case 0: return {"SVC" + id + ".Example.com:8080", "/index.html"};
        case 1: return {"www.Tenant" + id + ".example.net", "/static/app.js"};
        default: return {"api.example.com", "/api" + id + "/v1/users/42"};
    }
}

enum class Where { first, last, none };

void match_loop(benchmark::State& state, Where where) {
    const auto n = static_cast<std::size_t>(state.range(0));
    Router router;
    const auto matches = routes(n);
    for (std::size_t i = 0; i < n; ++i) { router.add(matches[i], i); }
    const Request request = where == Where::first  ? request_for(0)
                            : where == Where::last ? request_for(n - 1)
                                                   : Request{"unknown.example.org", "/"};
    const auto expected = where == Where::first ? std::optional<std::size_t>(0)
                          : where == Where::last ? std::optional<std::size_t>(n - 1)
                                                 : std::nullopt;
    if (router.match(request.host, request.path) != expected) {
        state.SkipWithError("the request does not match where intended: not the measured path");
        return;
    }
    for (auto _ : state) { benchmark::DoNotOptimize(router.match(request.host, request.path)); }
}

void BM_RouterMatchFirst(benchmark::State& state) { match_loop(state, Where::first); }
BENCHMARK(BM_RouterMatchFirst)->Arg(1)->Arg(10)->Arg(100);

void BM_RouterMatchLast(benchmark::State& state) { match_loop(state, Where::last); }
BENCHMARK(BM_RouterMatchLast)->Arg(1)->Arg(10)->Arg(100);

void BM_RouterMatchNone(benchmark::State& state) { match_loop(state, Where::none); }
BENCHMARK(BM_RouterMatchNone)->Arg(1)->Arg(10)->Arg(100);

}  // namespace
}  // namespace drover::proxy
