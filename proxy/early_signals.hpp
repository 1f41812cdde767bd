#pragma once
// Signals that come while Drover starts, before the server takes them (Server::Server). Their default
// action would kill the process: SIGHUP (a reload asked for too early), SIGUSR1 and SIGUSR2 (log
// rotation) are caught from before main (the executable's .preinit_array, ahead of its static
// constructors; only the dynamic loader's few milliseconds after exec are left) instead, and the server replays them once it handles
// signals itself: a SIGHUP then reloads, a SIGUSR1 reopens the logs. SIGTERM and SIGINT keep their
// default until then: before the server is up there is nothing to drain, and a start stuck on
// reading its config (a FIFO with no writer) must still be stoppable.

namespace drover::proxy {

// From the .preinit_array (early_signals.cpp), and main's first line.
void catch_early_signals();

// Raises again each signal caught so far (once each), for handlers installed since; the early
// catching ends.
void replay_early_signals();

}  // namespace drover::proxy
