#pragma once
// The pseudo-random source of the randomized policies: SplitMix64 (one word of state, a handful of
// instructions, passes BigCrush). Per policy instance, hence per worker: no sharing, no locks.
// Not for anything security-relevant; a load balancer only needs spread, not secrecy. Workers also
// draw X-Request-Id values and retry backoff jitter from one: ids need to be distinct, not secret
// (two mt19937_64 draws were 88 instructions a request, benchmarks/profile).

#include <cstdint>

namespace drover::proxy {

class Rng {
public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}

    // A UniformRandomBitGenerator, for <random>'s distributions.
    using result_type = std::uint64_t;
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return ~result_type{0}; }
    result_type operator()() { return next(); }

    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    // Uniform in [0, n) for 0 < n < 2^32, by multiply-and-shift instead of a division (Lemire); the
    // bias, at most n / 2^32, is far below anything a balancer could notice.
    std::uint32_t below(std::uint32_t n) {
        return static_cast<std::uint32_t>(((next() >> 32) * n) >> 32);
    }

    // Uniform in [0, n) for any n > 0 (weight totals): the high half of a 64x64-bit product, no
    // division; bias at most n / 2^64.
    std::uint64_t below64(std::uint64_t n) {
        __extension__ typedef unsigned __int128 Wide;
        return static_cast<std::uint64_t>((Wide{next()} * n) >> 64);
    }

private:
    std::uint64_t state_;
};

}  // namespace drover::proxy
