#include "proxy/pressure.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>

namespace drover::proxy {

int descriptor_ceiling() {
    static const int ceiling = [] {
        constexpr rlim_t kReservedFds = 256;
        rlimit limit{};
        if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) { return INT_MAX; }
        const rlim_t reserve = std::min<rlim_t>(kReservedFds, limit.rlim_cur / 4);
        return static_cast<int>(std::min<rlim_t>(limit.rlim_cur - reserve, INT_MAX));
    }();
    return ceiling;
}

std::uint64_t resident_memory_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) { return 0; }
    unsigned long size = 0;
    unsigned long resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    if (n != 2) { return 0; }
    return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace drover::proxy
