// The drover executable: parses the command line, loads the config, runs the Server.
// Exit codes: 0 clean stop, 1 startup failure (e.g. a port in use), 2 invalid config or usage.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "config/loader.hpp"
#include "config/log.hpp"
#include "discovery/endpoint.hpp"
#include "proxy/access_log.hpp"
#include "proxy/early_signals.hpp"
#include "proxy/demo.hpp"
#include "proxy/server.hpp"
#include "proxy/tls_server.hpp"

namespace {

constexpr int kExitStartup = 1;
constexpr int kExitConfig = 2;

constexpr std::string_view kUsage = R"(usage: drover -c FILE            run with the config FILE
       drover --check -c FILE    validate FILE: exit 0, or 2 printing every problem as file:line:col
       drover --demo             run the embedded demo (no file needed)
       drover --reload [--admin ADDR]
                                 ask the running Drover to reload its config (POST /reload): exit 0
                                 if it did, 1 printing why not (every problem as file:line:col)
options:
  -c, --config FILE      the YAML config (see docs/configuration.md); also --config=FILE
      --check            validate only, do not start
      --demo             three demo replicas behind an HTTP listener, with admin controls
      --demo-listen ADDR demo listener address (default 127.0.0.1:8080)
      --demo-admin ADDR  demo admin address (default 127.0.0.1:9901)
      --admin ADDR       with --reload: the running Drover's admin.address (default 127.0.0.1:9901)
  -v, --version          print the version
  -h, --help             print this help
)";

struct Options {
    std::string config_path;
    bool check = false;
    bool demo = false;
    std::string demo_listen = "127.0.0.1:8080";
    std::string demo_admin = "127.0.0.1:9901";
    bool demo_address_given = false;
    bool reload = false;
    std::string admin = "127.0.0.1:9901";
    bool admin_given = false;
};

int usage_error(const std::string& message);

// drover --reload: POST /reload to a running Drover's admin endpoint, its answer on stdout (reloaded)
// or stderr (refused). Unlike SIGHUP, the caller learns whether the new config was taken:
// `systemctl reload` fails when it was refused.
int request_reload(const std::string& admin_text) {
    const auto admin = drover::config::parse_address(admin_text);
    if (!admin) { return usage_error("--admin must look like 127.0.0.1:9901 or [::1]:9901"); }
    sockaddr_storage address{};
    socklen_t length = 0;
    const bool v6 = admin->host.find(':') != std::string::npos;
    if (v6) {
        auto& a = reinterpret_cast<sockaddr_in6&>(address);
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(admin->port);
        if (::inet_pton(AF_INET6, admin->host.c_str(), &a.sin6_addr) != 1) { return usage_error("--admin: bad address"); }
        length = sizeof a;
    } else {
        auto& a = reinterpret_cast<sockaddr_in&>(address);
        a.sin_family = AF_INET;
        a.sin_port = htons(admin->port);
        if (::inet_pton(AF_INET, admin->host.c_str(), &a.sin_addr) != 1) { return usage_error("--admin: bad address"); }
        length = sizeof a;
    }
    const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        std::fprintf(stderr, "drover: --reload: socket: %s\n", std::strerror(errno));
        return kExitStartup;
    }
    // A reload reads every file the config names (TLS included): seconds at most.
    const timeval timeout{30, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
        std::fprintf(stderr, "drover: --reload: cannot reach the admin endpoint at %s: %s (is Drover running, with this admin.address?)\n",
                     admin_text.c_str(), std::strerror(errno));
        ::close(fd);
        return kExitStartup;
    }
    constexpr std::string_view kRequest = "POST /reload HTTP/1.1\r\nHost: drover\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    std::string answer;
    bool sent = ::send(fd, kRequest.data(), kRequest.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(kRequest.size());
    char buffer[4096];
    for (ssize_t n = 0; sent && (n = ::recv(fd, buffer, sizeof buffer, 0)) != 0;) {
        if (n < 0) {
            if (errno == EINTR) { continue; }
            sent = false;
            break;
        }
        answer.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    const auto body_at = answer.find("\r\n\r\n");
    if (!sent || body_at == std::string::npos || answer.size() < 12) {
        std::fprintf(stderr, "drover: --reload: no answer from the admin endpoint at %s\n", admin_text.c_str());
        return kExitStartup;
    }
    const std::string body = answer.substr(body_at + 4);
    if (answer.compare(9, 3, "200") == 0) {
        std::fputs(body.c_str(), stdout);
        return 0;
    }
    std::fputs(body.c_str(), stderr);
    return kExitStartup;
}

int usage_error(const std::string& message) {
    std::fprintf(stderr, "drover: %s\n%s", message.c_str(), kUsage.data());
    return kExitConfig;
}

int print_errors(const drover::config::LoadResult& result) {
    for (const auto& e : result.errors) { std::fprintf(stderr, "%s\n", e.str().c_str()); }
    std::fprintf(stderr, "drover: %zu problem%s in the config; nothing was started\n", result.errors.size(),
                 result.errors.size() == 1 ? "" : "s");
    return kExitConfig;
}

int serve(drover::config::Config config, drover::proxy::Demo* demo) {
    try {
        drover::proxy::Server server(std::move(config));
        if (demo != nullptr) { demo->register_routes(server.admin()); }
        server.start();
        if (demo != nullptr) {
            demo->print_tour(drover::discovery::to_string(server.listeners().front()->state().bound),
                             drover::discovery::to_string(server.admin().local_endpoint()));
        }
        return server.run();
    } catch (const std::system_error& e) {
        drover::log::error("cannot start: {}", e.what());
        return kExitStartup;
    } catch (const std::exception& e) {
        drover::log::error("cannot start: {}", e.what());
        return kExitStartup;
    }
}

}  // namespace

int main(int argc, char** argv) {
    drover::proxy::catch_early_signals();   // a reload or log signal while Drover starts (early_signals.hpp)
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        // "--option=value" as well as "--option value".
        std::optional<std::string_view> inline_value;
        if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            inline_value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        }
        auto value = [&](std::string& out) {
            if (inline_value) {
                out = *inline_value;
                return !out.empty();
            }
            if (i + 1 >= argc) { return false; }
            out = argv[++i];
            return true;
        };
        const bool takes_value =
            arg == "-c" || arg == "--config" || arg == "--demo-listen" || arg == "--demo-admin" || arg == "--admin";
        if (inline_value && !takes_value) { return usage_error("'" + std::string(arg) + "' takes no value"); }
        if (arg == "-c" || arg == "--config") {
            if (!options.config_path.empty()) { return usage_error("more than one config file: Drover reads one"); }
            if (!value(options.config_path)) { return usage_error("-c needs a file"); }
        } else if (arg == "--check") {
            options.check = true;
        } else if (arg == "--reload") {
            options.reload = true;
        } else if (arg == "--admin") {
            if (!value(options.admin)) { return usage_error("--admin needs an address"); }
            options.admin_given = true;
        } else if (arg == "--demo") {
            options.demo = true;
        } else if (arg == "--demo-listen") {
            if (!value(options.demo_listen)) { return usage_error("--demo-listen needs an address"); }
            options.demo_address_given = true;
        } else if (arg == "--demo-admin") {
            if (!value(options.demo_admin)) { return usage_error("--demo-admin needs an address"); }
            options.demo_address_given = true;
        } else if (arg == "-v" || arg == "--version") {
            std::printf("drover %s\n", DROVER_VERSION);
            return 0;
        } else if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage.data(), stdout);
            return 0;
        } else {
            return usage_error("unknown argument '" + std::string(arg) + "'");
        }
    }

    if (options.reload) {
        if (options.check || options.demo || !options.config_path.empty()) {
            return usage_error("--reload asks the running Drover, which rereads its own file: it takes only --admin");
        }
        return request_reload(options.admin);
    }
    if (options.admin_given) { return usage_error("--admin goes with --reload"); }
    if (options.demo) {
        if (options.check || !options.config_path.empty()) { return usage_error("--demo takes no config file"); }
        const auto listen = drover::config::parse_address(options.demo_listen);
        const auto admin = drover::config::parse_address(options.demo_admin);
        if (!listen || !admin) { return usage_error("demo addresses must look like 127.0.0.1:8080"); }
        drover::proxy::Demo demo;
        try {
            demo.start();
        } catch (const std::exception& e) {
            drover::log::error("demo: cannot start replicas: {}", e.what());
            return kExitStartup;
        }
        auto result = drover::config::load_string(demo.config_yaml(*listen, *admin), "<demo>");
        if (!result.ok()) { return print_errors(result); }   // a bug in the embedded config
        return serve(std::move(*result.config), &demo);
    }

    if (options.demo_address_given) { return usage_error("--demo-listen and --demo-admin go with --demo"); }
    if (options.config_path.empty()) { return usage_error("no config: use -c FILE (or --demo)"); }
    auto result = drover::config::load_file(options.config_path);
    if (!result.ok()) { return print_errors(result); }
    // The files the config names (certificates, keys, CAs, the access log) are opened now, so --check
    // catches them too.
    result.errors = drover::config::check_runnable(*result.config);
    for (auto& e : drover::proxy::check_tls(*result.config)) { (e.warning ? result.warnings : result.errors).push_back(std::move(e)); }
    if (const auto& log = result.config->access_log) {
        if (auto why = drover::proxy::AccessLog::problem(log->path); !why.empty()) {
            result.errors.push_back(drover::config::ConfigError{
                log->mark, "access_log.path", fmt::format("cannot open {} for appending: {}", log->path, why)});
        }
    }
    if (!result.ok()) { return print_errors(result); }
    if (options.check) {
        for (const auto& w : result.warnings) { std::fprintf(stderr, "%s\n", w.str().c_str()); }
        std::printf("%s: ok\n", options.config_path.c_str());
        return 0;
    }
    for (const auto& w : result.warnings) { drover::log::warn("config: {}", w.str()); }
    return serve(std::move(*result.config), nullptr);
}
