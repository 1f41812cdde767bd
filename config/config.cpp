#include "config/config.hpp"

#include <algorithm>

namespace drover::config {

std::string Address::str() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool Cluster::is_template() const {
    const auto* dns = std::get_if<DnsDiscovery>(&discovery);
    return dns != nullptr && dns->name.find("{host}") != std::string::npos;
}

std::string Cluster::service_name() const {
    if (is_template()) { return "{host}"; }
    const auto slash = name.rfind('/');
    return slash == std::string::npos ? name : name.substr(slash + 1);
}

const Cluster* Config::find_cluster(std::string_view name) const {
    const auto it = std::find_if(clusters.begin(), clusters.end(),
                                 [&](const Cluster& c) { return c.name == name; });
    return it == clusters.end() ? nullptr : &*it;
}

}  // namespace drover::config
