"""A chaos-test HTTP/1.1 keep-alive backend in its own process (so a test can SIGKILL/SIGSTOP/SIGCONT it).

    python3 chaos_backend.py --port 0 --id a --mode normal|sick|midclose [--log FILE]
                             [--capacity N] [--service-time S]

Prints `port N` on stdout once listening (SO_REUSEADDR, so a restart re-binds the same port).
Modes:
  normal    GET /healthz -> 200 "ok"; anything else -> 200 "<id> <path>".
  sick      503 to everything, /healthz included.
  midclose  /healthz -> 200 "ok" (the host looks alive to active checks); anything else: headers with
            Content-Length: 1000, then 100 bytes, then the connection is closed.
--capacity N --service-time S: a fixed-capacity replica. Every request except /healthz (health checks are
answered at once, so they never wait behind traffic) takes S seconds (a sleep) while holding one of N
slots; a request beyond N in flight waits inside the replica for a free slot, first come first served
(so it takes ~2*S, 3*S, ...).
Default: no slot limit (0) and 0 s, the plain replica. In sick mode everything is answered at once.
SIGUSR1 switches a running replica to sick, SIGUSR2 back to its starting mode (normal if it started sick).
Every response carries `x-backend: <id>`. With --log, one line per request: `<time.time()> <method> <path>`
(flushed at once), written before the response, so a test knows when a replica took a request.
Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import http.server
import signal
import socket
import sys
import threading
import time


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True       # SO_REUSEADDR: a restarted replica re-binds its port at once
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        # A peer gone mid-exchange (drover gave up on a stopped replica, a cut response) is expected
        # here; anything else is printed (to the stderr file the test keeps).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FifoSlots:
    """A counting semaphore that hands freed slots to the waiters in arrival order (threading.Semaphore
    lets a newcomer barge ahead of waiting threads): the replica serves its backlog first come, first
    served, like a worker pool behind an accept queue."""

    def __init__(self, n: int):
        self.free = n
        self.lock = threading.Lock()
        self.waiters: collections.deque = collections.deque()

    def __enter__(self) -> None:
        with self.lock:
            if self.free > 0 and not self.waiters:
                self.free -= 1
                return
            ready = threading.Event()
            self.waiters.append(ready)
        ready.wait()       # release() handed its slot to us

    def __exit__(self, *exc) -> None:
        with self.lock:
            if self.waiters:
                self.waiters.popleft().set()
            else:
                self.free += 1


def make_handler(backend_id: str, state: dict, log, capacity: int = 0, service_time: float = 0.0) -> type:
    log_lock = threading.Lock()
    ident = backend_id.encode()
    slots = FifoSlots(capacity) if capacity > 0 else None

    def serve_time() -> None:
        """Holds one of the `capacity` slots (waiting for one if all are taken) for `service_time`."""
        if slots is None:
            if service_time > 0:
                time.sleep(service_time)
            return
        with slots:
            if service_time > 0:
                time.sleep(service_time)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "chaos-backend"
        sys_version = ""
        disable_nagle_algorithm = True   # no 40 ms delayed-ACK stalls
        # Head and body leave in one write at flush(), as a real server sends a small response: a SIGKILL
        # then lands between responses, never between a head and its body (which no proxy could repair:
        # the head is already on its way to the client).
        wbufsize = 64 * 1024

        def log_message(self, fmt: str, *args) -> None:  # no per-request stderr noise
            pass

        def _log(self) -> None:
            if log is not None:
                with log_lock:
                    log.write(f"{time.time():.6f} {self.command} {self.path}\n")
                    log.flush()

        def _drain_body(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            if n > 0:
                self.rfile.read(n)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("x-backend", backend_id)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _handle(self) -> None:
            self._drain_body()
            self._log()
            path = self.path.split("?", 1)[0]
            mode = state["mode"]
            if mode == "sick":
                self._send(503, b"sick " + ident + b"\n")
            elif path == "/healthz":
                self._send(200, b"ok")
            elif mode == "midclose":
                self.send_response(200)
                self.send_header("x-backend", backend_id)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"x" * 100)
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                serve_time()
                self._send(200, ident + b" " + self.path.encode("latin-1", "replace") + b"\n")

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def do_HEAD(self) -> None:
            self._log()
            self.send_response(503 if state["mode"] == "sick" else 200)
            self.send_header("x-backend", backend_id)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--id", required=True)
    p.add_argument("--mode", choices=("normal", "sick", "midclose"), default="normal")
    p.add_argument("--log")
    p.add_argument("--capacity", type=int, default=0, help="requests served at once (0: no limit)")
    p.add_argument("--service-time", type=float, default=0.0, help="seconds each request takes")
    args = p.parse_args(argv)
    log = open(args.log, "a", encoding="utf-8") if args.log else None
    state = {"mode": args.mode}
    # Mode switches on a running replica: SIGUSR1 -> sick, SIGUSR2 -> back to the starting mode.
    signal.signal(signal.SIGUSR1, lambda *_: state.update(mode="sick"))
    signal.signal(signal.SIGUSR2, lambda *_: state.update(mode=args.mode if args.mode != "sick" else "normal"))
    server = Server(("127.0.0.1", args.port), make_handler(args.id, state, log, args.capacity, args.service_time))
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
