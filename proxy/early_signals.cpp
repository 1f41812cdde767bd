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

void replay_early_signals() {
    for (std::size_t i = 0; i < sizeof kCaught / sizeof kCaught[0]; ++i) {
        if (g_pending[i] != 0) {
            g_pending[i] = 0;
            std::raise(kCaught[i]);
        }
    }
}

}  // namespace drover::proxy
