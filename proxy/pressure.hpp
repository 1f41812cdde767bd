#pragma once
// Process-wide resource pressure, set by the control loop and read on the data path (one relaxed
// load per new connection or request). While memory is past its mark, new connections are refused and
// new requests shed, so what is already admitted can finish instead of the process being killed.

#include <atomic>
#include <cstdint>

namespace drover::proxy {

struct Pressure {
    std::atomic<bool> memory{false};
    std::atomic<std::uint64_t> resident_bytes{0};   // last sample
};

inline Pressure g_pressure;

// Resident set size of this process, from /proc/self/statm; 0 if it cannot be read.
std::uint64_t resident_memory_bytes();

}  // namespace drover::proxy
