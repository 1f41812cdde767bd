"""The HTTP keep-alive path makes no heap allocation per request.

drover runs with tests/support/alloc_count.c preloaded, which counts every malloc, calloc, realloc and
aligned allocation of the process into a shared file. After a warm-up (caches and buffers reach their
size), requests on keep-alive connections must leave the count where it was, up to a little slack for
timers and the like that run meanwhile. Before this was made so, a request cost six allocations (three
coroutine frames larger than Asio recycles, the two serialized heads, the parked connection) on one
connection, and again six with many connections interleaved (Asio's frame cache mixing sizes, replaced
by proxy/block_pool.hpp)."""

import os
import signal
import tempfile
import threading
import unittest

from harness import HttpTestCase, RawHttpBackend, http_listener, make_config, route, static_cluster

ALLOC_LIB = os.environ.get("DROVER_ALLOC_COUNT_LIB", "")
WARM_UP = 100
MEASURED = 500
SLACK = MEASURED // 20   # one allocation per request would be 500
CONNECTIONS = 16         # the interleaved case: this many keep-alive connections at once


@unittest.skipUnless(ALLOC_LIB, "DROVER_ALLOC_COUNT_LIB unset (the sanitizer build does not preload it)")
class KeepAliveAllocationTest(HttpTestCase):

    def setUp(self):
        super().setUp()
        handle = tempfile.NamedTemporaryFile(prefix="drover-allocs-", delete=False)
        handle.close()
        self.count_file = handle.name
        self.addCleanup(os.unlink, self.count_file)

    def allocations(self) -> int:
        with open(self.count_file, "rb") as f:
            return int.from_bytes(f.read(8), "little")

    def proxy(self):
        # Backend connections answering every request with the same bytes, in one write each: the
        # measured requests take milliseconds, and little else runs in drover meanwhile. Each answers
        # more requests than a test makes in all, however drover spreads them over its connections.
        response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello there\n"
        backend = self.raw_backend([[RawHttpBackend.READ, response] * (CONNECTIONS * (WARM_UP + MEASURED))],
                                   backlog=CONNECTIONS * 2)
        config = make_config([http_listener("web", [route("back")])], [static_cluster("back", [backend])])
        drover = self.start_drover(config, env={"LD_PRELOAD": ALLOC_LIB, "ALLOC_COUNT_FILE": self.count_file})
        return drover, drover.listener_addr("web")

    def requests(self, conn, n, method="GET", **kw):
        for i in range(n):
            resp = conn.request(method, f"/item/{i}", **kw)
            self.assertEqual(resp.status, 200, resp)

    def assert_no_allocation_per_request(self, **kw):
        drover, addr = self.proxy()
        self.assertGreater(self.allocations(), 0, "the counting library is not loaded")
        conn = self.client(addr)
        self.requests(conn, WARM_UP, **kw)
        before = self.allocations()
        self.requests(conn, MEASURED, **kw)
        made = self.allocations() - before
        self.assertLessEqual(made, SLACK, f"{made} allocations in {MEASURED} keep-alive requests")

    def test_a_get_allocates_nothing(self):
        self.assert_no_allocation_per_request()

    def test_a_post_with_a_small_body_allocates_nothing(self):
        self.assert_no_allocation_per_request(method="POST", body=b"x" * 300)

    def burst(self, drover, conns) -> None:
        """One request on every connection, all in drover's sockets before it runs again (stopped
        meanwhile): its worker takes them in one turn of its loop, before any answer can come back, so
        it holds a session, coroutine frames and an upstream connection for each at once. The most
        the measured requests can ever need together."""
        drover.send_signal(signal.SIGSTOP)
        try:
            for i, conn in enumerate(conns):
                conn.send_request("GET", f"/burst/{i}")
        finally:
            drover.send_signal(signal.SIGCONT)
        for conn in conns:
            resp = conn.read_response()
            self.assertEqual(resp.status, 200, resp)

    def test_interleaved_connections_allocate_nothing(self):
        # Requests of many connections in flight together on the one worker: their coroutine frames are
        # allocated and freed interleaved, in bursts, in every order. Growing to a new peak of requests
        # in flight allocates (sessions, frames, upstream connections are kept for reuse, not made per
        # request), and how high the peak goes depends on scheduling: under a loaded machine the
        # measured requests could reach a peak their warm-up did not (120 allocations once, in CI).
        # So the warm-up reaches the highest peak there can be (burst), and then only requests count.
        drover, addr = self.proxy()
        conns = [self.client(addr) for _ in range(CONNECTIONS)]
        for _ in range(3):
            self.burst(drover, conns)
        per_connection = MEASURED // CONNECTIONS * 4
        errors: list[BaseException] = []

        def client(conn, measure: threading.Barrier, n: int) -> None:
            try:
                measure.wait(timeout=30)
                self.requests(conn, n)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        def interleaved(n: int) -> None:
            measure = threading.Barrier(CONNECTIONS + 1)
            threads = [threading.Thread(target=client, args=(conn, measure, n), daemon=True) for conn in conns]
            for t in threads:
                t.start()
            measure.wait(timeout=30)
            for t in threads:
                t.join(timeout=60)
            # A client that failed or hung made fewer requests than counted: that must not pass.
            self.assertFalse(errors, errors[:1])
            self.assertFalse([t for t in threads if t.is_alive()], "a client's requests did not finish in 60 s")

        interleaved(WARM_UP // 4)
        before = self.allocations()
        interleaved(per_connection)
        made = self.allocations() - before
        total = per_connection * CONNECTIONS
        self.assertLessEqual(made, total // 20, f"{made} allocations in {total} requests on {CONNECTIONS} "
                                                f"interleaved keep-alive connections")


if __name__ == "__main__":
    unittest.main()
