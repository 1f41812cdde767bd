#pragma once
// Request keys for consistent hashing (maglev). The same key must give the same number on every
// worker, in every process and across restarts, so nothing here is seeded at random: two Drover
// instances behind one VIP send a client to the same host.

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <string_view>

namespace drover::proxy {

// The SplitMix64 finalizer: spreads nearby inputs (10.0.0.1, 10.0.0.2) over the whole 64-bit range.
constexpr std::uint64_t mix64(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// FNV-1a over the bytes, then mix64. Keys are short (an address, a header value, a host name).
constexpr std::uint64_t hash_bytes(std::string_view bytes, std::uint64_t seed = 0) {
    std::uint64_t h = 0xcbf29ce484222325ULL ^ mix64(seed);
    for (const char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

// A client address as a hash key. An IPv4-mapped IPv6 address (a dual-stack listener's view of an
// IPv4 client) hashes as the IPv4 address, so a client keeps its host whichever listener it uses.
inline std::uint64_t hash_address(const boost::asio::ip::address& address) {
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return hash_address(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6()));
    }
    if (address.is_v4()) {
        const auto bytes = address.to_v4().to_bytes();
        return hash_bytes({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    }
    const auto bytes = address.to_v6().to_bytes();
    return hash_bytes({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

}  // namespace drover::proxy
