#pragma once
// systemd's readiness protocol (sd_notify), without libsystemd: one datagram to $NOTIFY_SOCKET.
// Under `Type=notify`, systemd considers the unit started on READY=1 and stopping on STOPPING=1.
// Outside systemd (no NOTIFY_SOCKET) it does nothing.

#include <string_view>

namespace drover::proxy {

// Sends `state` (e.g. "READY=1", "STOPPING=1"); returns whether a datagram was sent.
bool notify_systemd(std::string_view state);

}  // namespace drover::proxy
