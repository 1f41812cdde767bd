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

// The highest descriptor number new optional work may take: a client connection, or a splice pipe.
// The kernel hands out the lowest free number, so one numbered past this means the process is within
// the reserve (a quarter of RLIMIT_NOFILE, at most 256) kept for what admitted work needs: upstream
// connections, health probes, DNS, the admin endpoint, files.
int descriptor_ceiling();

// Resident set size of this process, from /proc/self/statm; 0 if it cannot be read.
std::uint64_t resident_memory_bytes();

}  // namespace drover::proxy
