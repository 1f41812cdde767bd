#pragma once
// The admin views of a running Server: /live, /ready, /metrics, /clusters, /listeners.
// Rendered on the control loop from snapshots and relaxed counters; never blocks a worker.

namespace drover::proxy {

class Admin;
class Server;

void register_status_routes(Admin& admin, const Server& server);

}  // namespace drover::proxy
