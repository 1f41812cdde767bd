"""File discovery: a watched endpoints file. Atomic replacement (write + rename, the way orchestrators
publish) is followed well within a second; a half-written, malformed or deleted file keeps the last good
set; a file that appears later is loaded.
"""

import collections
import os
import socket
import tempfile
import time
import unittest

from harness import (DroverTestCase, HttpTestCase, endpoints_yaml, http_listener, route, write_endpoints_file, file_cluster, make_config, recv_all, tcp_listener,
                     wait_until, write_endpoints_file)


class FileDiscoveryTest(DroverTestCase):

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory(prefix="drover-endpoints-")
        self.addCleanup(tmp.cleanup)
        self.folder = tmp.name
        self.path = os.path.join(self.folder, "back.yaml")

    def proxy(self, wait_ready=True, path=None):
        # Round robin: which backends a handful of connections reach is then exact, not probabilistic.
        # A connection while the cluster has no hosts waits hold_timeout for one: kept short here, where
        # tests expect such a connection closed promptly.
        cluster = file_cluster("back", path or self.path, load_balancing="round_robin", hold_timeout="300ms")
        config = make_config([tcp_listener("front", "back")], [cluster])
        drover = self.start_drover(config, wait_ready=wait_ready)
        return drover, drover.listener_addr("front")

    @staticmethod
    def fetch(addr):
        try:
            with socket.create_connection(addr, timeout=5) as sock:
                sock.settimeout(5)
                return recv_all(sock)
        except ConnectionResetError:
            return b""

    def tags(self, addr, n):
        return collections.Counter(self.fetch(addr) for _ in range(n))

    def wait_tags(self, addr, want, timeout=3.0, n=8):
        seen = {}

        def check():
            seen["last"] = self.tags(addr, n)
            return set(seen["last"]) == set(want)
        wait_until(check, timeout, interval=0.02, message=lambda: f"tags {seen.get('last')} want {sorted(want)}")

    @staticmethod
    def discovery(drover):
        (cluster,) = drover.admin_json("/clusters")["clusters"]
        return cluster["discovery"], cluster["hosts"]

    def write_in_place(self, text):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    # ------------------------------------------------------------------------------------------------

    def test_atomic_replacement_is_followed_within_a_second(self):
        a, b = self.tagged_backend("A"), self.tagged_backend("B")
        write_endpoints_file(self.path, [a])
        drover, addr = self.proxy()
        self.assertEqual(self.tags(addr, 4), {b"A": 4})

        start = time.monotonic()
        write_endpoints_file(self.path, [a, (b.addr, 3)])
        wait_until(lambda: len(self.discovery(drover)[1]) == 2, 1.0, interval=0.01,
                   message="the new file is applied within a second")
        self.assertLess(time.monotonic() - start, 1.0)
        _, hosts = self.discovery(drover)
        self.assertEqual({h["address"]: h["weight"] for h in hosts}, {a.addr: 1, b.addr: 3})
        self.wait_tags(addr, {b"A", b"B"})

        write_endpoints_file(self.path, [b])
        self.wait_tags(addr, {b"B"})
        info, _ = self.discovery(drover)
        self.assertEqual(info["kind"], "file")
        self.assertFalse(info["stale"])
        self.assertEqual(info["consecutive_failures"], 0)
        drover.wait_metric("drover_cluster_host_changes_total", {"cluster": "back", "change": "removed"},
                           lambda v: v == 1)
        self.assertEqual(drover.metric_value("drover_cluster_host_changes_total",
                                             {"cluster": "back", "change": "added"}), 2)
        self.assertEqual(drover.metric_value("drover_cluster_host_changes_total",
                                             {"cluster": "back", "change": "weight"}), 1)

    def test_half_written_file_keeps_the_last_set_and_reports_the_line(self):
        a, b = self.tagged_backend("A"), self.tagged_backend("B")
        write_endpoints_file(self.path, [a])
        drover, addr = self.proxy()

        # A writer that does not rename, caught half-way (the file is closed mid-entry).
        full = endpoints_yaml([a, b])
        mark = drover.log_mark()
        self.write_in_place(full[:full.rindex(":") - 2])
        drover.wait_for_log(rf"endpoints file: {self.path}:3:\d+: ", start=mark)
        info, hosts = self.discovery(drover)
        self.assertTrue(info["stale"])
        self.assertTrue(info["last_error"].startswith(f"{self.path}:3:"), info["last_error"])
        self.assertEqual([h["address"] for h in hosts], [a.addr])
        self.assertEqual(self.tags(addr, 4), {b"A": 4})
        self.assertGreaterEqual(drover.metric_value("drover_discovery_refreshes_total",
                                                    {"cluster": "back", "result": "failure"}), 1)
        self.assertEqual(drover.metric_value("drover_discovery_stale", {"cluster": "back"}), 1)

        self.write_in_place(full)  # the writer finishes
        self.wait_tags(addr, {b"A", b"B"})
        self.assertFalse(self.discovery(drover)[0]["stale"])

    def test_a_slow_writer_is_not_read_half_way(self):
        # A writer that rewrites the file in place and pauses longer than the 2 s safety-net check:
        # what it has written so far is a valid, shorter list, which must not be applied.
        a, b, c = self.tagged_backend("A"), self.tagged_backend("B"), self.tagged_backend("C")
        write_endpoints_file(self.path, [a, b, c])
        drover, addr = self.proxy()
        full = endpoints_yaml([a, b, c])
        cut = full.index("\n", full.index(a.addr)) + 1   # "endpoints:" and the first host
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(full[:cut])
            f.flush()
            time.sleep(3.5)
            self.assertEqual(len(self.discovery(drover)[1]), 3, "the half-written file was applied")
            f.write(full[cut:])
        self.wait_tags(addr, {b"A", b"B", b"C"}, n=9)
        self.assertEqual(drover.metric_value("drover_cluster_host_changes_total",
                                             {"cluster": "back", "change": "removed"}, default=0), 0)

    @unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0, "needs root to run drover as another user")
    def test_an_unreadable_file_is_read_once_it_is_made_readable(self):
        a = self.tagged_backend("A")
        os.chmod(self.folder, 0o755)
        write_endpoints_file(self.path, [a])
        os.chmod(self.path, 0o600)   # root's: drover runs as nobody
        cluster = file_cluster("back", self.path, load_balancing="round_robin", hold_timeout="300ms")
        drover = self.start_drover(make_config([tcp_listener("front", "back")], [cluster]), wait_ready=False,
                                   run_as=65534)
        drover.wait_for_log(r"endpoints file \S+ cannot be read; the cluster has no hosts")
        self.assertIn("Permission denied", self.discovery(drover)[0]["last_error"])
        os.chmod(self.path, 0o644)
        wait_until(lambda: len(self.discovery(drover)[1]) == 1, 3.0, message="read after chmod")
        self.assertEqual(self.tags(drover.listener_addr("front"), 2), {b"A": 2})

    def test_malformed_file_keeps_the_last_set(self):
        a = self.tagged_backend("A")
        write_endpoints_file(self.path, [a])
        drover, addr = self.proxy()
        mark = drover.log_mark()
        write_endpoints_file(self.path, ["db.internal:5432"])
        drover.wait_for_log(r"must be an IP address", start=mark)
        self.assertEqual(self.tags(addr, 3), {b"A": 3})
        self.assertIn(f"{self.path}:2:", self.discovery(drover)[0]["last_error"])

    def test_deleted_file_keeps_the_last_set_and_its_return_is_loaded(self):
        a, b = self.tagged_backend("A"), self.tagged_backend("B")
        write_endpoints_file(self.path, [a])
        drover, addr = self.proxy()
        mark = drover.log_mark()
        os.remove(self.path)
        drover.wait_for_log(r"was deleted or does not exist; keeping the last 1 endpoints", start=mark)
        info, hosts = self.discovery(drover)
        self.assertTrue(info["stale"])
        self.assertIn("file not found", info["last_error"])
        self.assertEqual(len(hosts), 1)
        self.assertEqual(self.tags(addr, 3), {b"A": 3})
        self.assertEqual(drover.admin_get("/ready").status, 200)

        write_endpoints_file(self.path, [b])
        self.wait_tags(addr, {b"B"})
        self.assertFalse(self.discovery(drover)[0]["stale"])

    def test_missing_file_is_unresolved_until_it_appears(self):
        a = self.tagged_backend("A")
        drover, addr = self.proxy(wait_ready=False)
        ready = drover.admin_get("/ready")
        self.assertEqual(ready.status, 503)
        self.assertIn("unresolved clusters: back", ready.text)
        self.assertFalse(self.discovery(drover)[0]["resolved"])
        sock = self.connect(addr)
        self.assertClosedPromptly(sock)
        drover.wait_metric("drover_cluster_upstream_unavailable_total", {"cluster": "back", "reason": "no_host"},
                           lambda v: v == 1, default=0)

        write_endpoints_file(self.path, [a])
        drover.wait_ready(2)
        self.assertEqual(self.tags(addr, 3), {b"A": 3})

    def test_relative_path_is_relative_to_the_config_file(self):
        a = self.tagged_backend("A")
        drover, addr = self.proxy(wait_ready=False, path="endpoints/back.yaml")
        folder = os.path.join(drover.dir, "endpoints")  # the folder of drover.yaml, made after the start
        os.mkdir(folder)
        write_endpoints_file(os.path.join(folder, "back.yaml"), [a])
        drover.wait_ready(6)  # the folder did not exist: found by the periodic check, then watched
        self.assertEqual(self.tags(addr, 3), {b"A": 3})


if __name__ == "__main__":
    unittest.main()


class HttpHostRemovalTest(HttpTestCase):
    """A host that leaves discovery gets no new requests; a request in flight to it finishes, and its
    connection is then closed instead of going back to the pool."""

    def test_in_flight_request_finishes_and_its_connection_is_not_pooled(self):
        leaving = self.origin("leaving")
        staying = self.origin("staying")
        tmp = tempfile.TemporaryDirectory(prefix="drover-endpoints-")
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "endpoints.yaml")
        write_endpoints_file(path, [leaving])
        config = make_config([http_listener("web", [route("back", path_prefix="/")])],
                             [file_cluster("back", path, load_balancing="round_robin")])
        drover = self.start_drover(config)
        addr = drover.listener_addr("web")
        busy = self.client(addr)
        busy.send(b"GET /slow?delay=1 HTTP/1.1\r\nHost: test\r\n\r\n")
        leaving.wait_requests(1, 5)
        write_endpoints_file(path, [staying])
        wait_until(lambda: [h["address"] for c in drover.admin_json("/clusters")["clusters"] for h in c["hosts"]]
                   == [staying.addr], 5, message="endpoints change not applied")
        self.assertEqual(busy.read_response("GET", timeout=5).status, 200)   # the in-flight one finished
        leaving.wait_active(0, 5)   # ...and its connection was closed, not parked in the pool
        self.assertEqual(self.get(addr, "/next").status, 200)
        self.assertEqual(len(leaving.requests), 1)
        self.assertEqual(len(staying.requests), 1)
