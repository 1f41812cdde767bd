#include "proxy/early_signals.hpp"

#include <csignal>

namespace drover::proxy {

namespace {

constexpr int kCaught[] = {SIGHUP, SIGUSR1, SIGUSR2};
volatile std::sig_atomic_t g_pending[sizeof kCaught / sizeof kCaught[0]] = {};

extern "C" void remember(int signal) {
    for (std::size_t i = 0; i < sizeof kCaught / sizeof kCaught[0]; ++i) {
        if (kCaught[i] == signal) { g_pending[i] = 1; }
    }
}

}  // namespace

void catch_early_signals() {
    for (const int signal : kCaught) { std::signal(signal, &remember); }
}

namespace {
void catch_at_load(int, char**, char**) { catch_early_signals(); }
}  // namespace

}  // namespace drover::proxy

// Before main, the process spends ~15 ms in static initialisation, when a signal would still kill it:
// the executable's .preinit_array runs before any of its constructors (and only the shared libraries'
// are before it). Linked into the drover executable with main.cpp, which calls catch_early_signals too.
extern "C" {
__attribute__((section(".preinit_array"), used)) void (*const drover_catch_early_signals)(int, char**, char**) =
    &drover::proxy::catch_at_load;
}

namespace drover::proxy {

void replay_early_signals() {
    for (std::size_t i = 0; i < sizeof kCaught / sizeof kCaught[0]; ++i) {
        if (g_pending[i] != 0) {
            g_pending[i] = 0;
            std::raise(kCaught[i]);
        }
    }
}

}  // namespace drover::proxy
