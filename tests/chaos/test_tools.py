"""Self-test of the chaos tools without drover: backend modes, the load client, and fault injection
(SIGKILL + restart on the same port, SIGSTOP/SIGCONT, mode switches) against a backend directly."""

import http.client
import time
import unittest

from chaos import ChaosTestCase, harness  # chaos puts tests/integration on the path


def get(backend, path="/x", timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-backend"), resp.read()
    finally:
        conn.close()


class ToolsTest(ChaosTestCase):
    def test_modes(self):
        normal = self.chaos_backend("n")
        sick = self.chaos_backend("s", "sick")
        mid = self.chaos_backend("m", "midclose")
        self.assertEqual(get(normal, "/healthz"), (200, "n", b"ok"))
        self.assertEqual(get(normal, "/a/b"), (200, "n", b"n /a/b\n"))
        self.assertEqual(get(sick, "/healthz")[:2], (503, "s"))
        self.assertEqual(get(sick, "/a")[:2], (503, "s"))
        self.assertEqual(get(mid, "/healthz"), (200, "m", b"ok"))
        with self.assertRaises(http.client.IncompleteRead) as cm:
            get(mid, "/cut")
        self.assertEqual((len(cm.exception.partial), cm.exception.expected), (100, 900))
        # mode switches on a running replica
        normal.set_mode("sick")
        wait = time.monotonic() + 2
        while get(normal, "/healthz")[0] != 503 and time.monotonic() < wait:
            time.sleep(0.01)
        self.assertEqual(get(normal, "/healthz")[0], 503)
        normal.set_mode("normal")
        while get(normal, "/healthz")[0] != 200 and time.monotonic() < wait + 2:
            time.sleep(0.01)
        self.assertEqual(get(normal, "/healthz"), (200, "n", b"ok"))
        # the log: one line per request, health checks included, with wall timestamps
        paths = [r[2] for r in normal.requests(include_health=True)]
        self.assertEqual(paths[:2], ["/healthz", "/a/b"])
        self.assertEqual([r[2] for r in normal.requests()], ["/a/b"])

    def test_restartable_ports_are_outside_the_ephemeral_range(self):
        # While a killed backend (or dnsmasq) is down, the kernel must not give its port to another
        # socket; it only hands out ports from ip_local_port_range, so the port must lie outside it.
        lo, hi = harness.ephemeral_port_range()
        ports = [self.chaos_backend(f"p{i}").port for i in range(3)]
        ports += [harness.restartable_port(udp=True) for _ in range(20)]
        for port in ports:
            self.assertFalse(lo <= port <= hi, f"port {port} is in the ephemeral range {lo}-{hi}")

    def test_load_kill_restart_same_port(self):
        b = self.chaos_backend("k")
        port = b.port
        load = self.load_direct(b, rate=200)
        load.run_for(1.0)
        killed = b.kill()
        load.run_for(0.5)
        b.restart()
        restarted = time.time()
        self.assertEqual(b.port, port)
        load.run_for(1.0)
        load.stop()
        results = load.snapshot()
        self.assertGreater(len(results), 400, load.summary(self.t0))
        fails = load.failures()
        self.assertTrue(fails, "killing the only backend must show as failures")
        self.assertTrue(all(killed - 0.05 <= r.end and r.start <= restarted + 0.2 for r in fails),
                        load.summary(self.t0))
        self.assertTrue(all(r.error for r in fails))
        # every thread reconnected: traffic after the restart, all fine
        after = [r for r in results if r.start > restarted + 0.2]
        self.assertGreater(len(after), 100, load.summary(self.t0))
        self.assertTrue(all(r.ok and r.backend == "k" for r in after), load.summary(self.t0))
        self.assertEqual({r.thread for r in after}, {0, 1, 2, 3})
        # the new incarnation logged its first request right after the restart
        first = b.first_request(restarted)
        self.assertIsNotNone(first)
        self.assertLess(first - restarted, 0.2)
        # pacing: about 200 req/s
        span = load.stopped_at - load.started_at
        self.assertLess(abs(len(results) / span - 200) / 200, 0.15, f"{len(results)} in {span:.2f}s")

    def test_stop_is_slowness_not_errors(self):
        b = self.chaos_backend("z")
        load = self.load_direct(b, rate=100)
        load.run_for(0.5)
        stopped = b.stop()
        load.run_for(1.0)
        b.cont()
        load.run_for(0.5)
        load.stop()
        self.assertEqual(load.failures(), [], load.summary(self.t0))
        self.assertGreater(load.max_latency(), 0.8, load.summary(self.t0))
        slow = [r for r in load.snapshot() if r.latency > 0.5]
        self.assertTrue(all(stopped - 0.1 <= r.start for r in slow), load.summary(self.t0))

    def test_midclose_and_sick_are_errors(self):
        mid = self.chaos_backend("m", "midclose")
        load = self.load_direct(mid, rate=100)
        load.run_for(0.5)
        load.stop()
        res = load.snapshot()
        self.assertGreater(len(res), 20)
        self.assertTrue(all(r.error and r.error.startswith("IncompleteRead(100 bytes read") for r in res),
                        load.summary(self.t0))
        sick = self.chaos_backend("s", "sick")
        load = self.load_direct(sick, rate=100)
        load.run_for(0.3)
        load.stop()
        self.assertTrue(load.snapshot())
        self.assertTrue(all(r.status == 503 and r.backend == "s" and not r.ok for r in load.snapshot()))

    def load_direct(self, backend, **kw):
        from chaos import LoadClient
        client = LoadClient(("127.0.0.1", backend.port), **kw)
        self.loads.append(client)
        self.addCleanup(client.stop)
        return client.start()


if __name__ == "__main__":
    unittest.main()
