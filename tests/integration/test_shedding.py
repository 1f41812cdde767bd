"""Admission and load shedding through the real binary: the cluster's request and connection breakers
(limits.max_requests, limits.max_connections), per-host caps (limits.max_requests_per_host), waiting up to queue_timeout
bounded by max_pending, and the explicit refusal past them: 503, drover-error: shed, Retry-After.
(tests/chaos/test_overload.py checks the same under sustained overload with a replica lost.)"""

import os
import socket
import tempfile
import threading
import time
import unittest

from harness import (HttpTestCase, http_listener, make_config, route, sanitized_build, static_cluster, to_yaml,
                     wait_until)
from test_health import FAST_CHECK, Switchable


class SheddingTest(HttpTestCase):

    def proxy(self, backends, limits, workers=1, access_log=None, **cluster):
        clusters = [static_cluster("app", backends, load_balancing="round_robin", limits=limits,
                                   retries={"attempts": 0}, **cluster)]
        extra = {"access_log": {"path": access_log}} if access_log else {}
        config = make_config([http_listener("web", [route("app", path_prefix="/")])], clusters, workers=workers, **extra)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("web")

    def concurrently(self, addr, paths, headers=None):
        """Sends each path on its own connection at once; returns [(status, seconds, response)] in order."""
        results = [None] * len(paths)

        def one(i, path):
            started = time.monotonic()
            resp = self.client(addr).request("GET", path, headers=headers or [])
            results[i] = (resp.status, time.monotonic() - started, resp)
        threads = [threading.Thread(target=one, args=(i, p), daemon=True) for i, p in enumerate(paths)]
        for i, t in enumerate(threads):
            t.start()
            time.sleep(0.05 if i == 0 else 0)   # the first one takes the slot
        for t in threads:
            t.join(10)
        return results

    def shed_count(self, drover, reason):
        return drover.metric_value("drover_cluster_shed_total", {"cluster": "app", "reason": reason}, default=0)

    def test_a_host_at_its_cap_sheds_the_excess_fast_with_retry_after(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"max_requests_per_host": 1, "queue_timeout": "50ms"})
        (first, took1, _), (second, took2, resp) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual(first, 200)
        self.assertLocalResponse(resp, "shed")
        self.assertGreaterEqual(int(resp.header("retry-after")), 1)
        self.assertLess(took2, 0.4, "shed only after queue_timeout, not after the slow request")
        self.assertEqual(self.shed_count(drover, "host_capacity"), 1)
        self.assertEqual(slow.count(), 1, "the shed request never reached the backend")
        admission = drover.admin_json("/clusters")["clusters"][0]["admission"]
        self.assertEqual((admission["shed_total"], admission["pending"], admission["held"]), (1, 0, 0))

    def test_a_request_waits_for_a_slot_within_queue_timeout(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.3
        drover, addr = self.proxy([slow], {"max_requests": 1, "queue_timeout": "2s"})
        (first, _, _), (second, took2, _) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual((first, second), (200, 200))
        self.assertGreater(took2, 0.4, "the second waited for the first")
        self.assertEqual(self.shed_count(drover, "max_requests"), 0)

    def test_past_max_pending_requests_are_shed_at_once(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"max_requests": 1, "max_pending": 0, "queue_timeout": "2s"})
        (first, _, _), (second, took2, resp) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual(first, 200)
        self.assertLocalResponse(resp, "shed")
        self.assertLess(took2, 0.3)
        self.assertEqual(self.shed_count(drover, "queue_full"), 1)

    def test_low_priority_requests_are_shed_first(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"max_requests": 1, "queue_timeout": "2s"})
        results = self.concurrently(addr, ["/a", "/b"], headers=[("x-drover-priority", "low")])
        self.assertEqual(results[0][0], 200)
        self.assertLocalResponse(results[1][2], "shed")
        self.assertLess(results[1][1], 0.3, "a low-priority request does not wait")
        self.assertEqual(self.shed_count(drover, "low_priority"), 1)

    def test_adaptive_concurrency_limits_and_sheds(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"queue_timeout": "50ms"},
                                  adaptive_concurrency={"min_limit": 1, "max_limit": 1})
        self.assertEqual(drover.metric_value("drover_cluster_concurrency_limit", {"cluster": "app"}), 1)
        (first, _, _), (second, took2, resp) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual(first, 200)
        self.assertLocalResponse(resp, "shed")
        self.assertLess(took2, 0.4)
        self.assertEqual(self.shed_count(drover, "adaptive_concurrency"), 1)

    def test_a_client_that_leaves_while_its_request_waits_ends_it_as_499(self):
        # Waiting for a slot (max_requests), for a host under its cap, or for a host to come back
        # (held): a client that closes its connection ends the wait within a look (100 ms), logged
        # 499 client_closed, rather than keep its place to queue_timeout or hold_timeout and then be
        # counted as shed or timed out (a 5xx nobody received).
        folder = tempfile.TemporaryDirectory(prefix="drover-shed-")
        self.addCleanup(folder.cleanup)
        for case in ("max_requests", "max_requests_per_host", "held"):
            with self.subTest(case=case):
                log = os.path.join(folder.name, f"{case}.log")
                slow = Switchable(self, "slow")
                slow.delay = 3
                if case == "held":
                    slow.health_status = 500
                    drover, addr = self.proxy([slow], {}, access_log=log, health_check=FAST_CHECK, hold_timeout="5s")
                    gauge = ("drover_cluster_held_requests_active", {"cluster": "app"})
                else:
                    drover, addr = self.proxy([slow], {case: 1, "queue_timeout": "5s"}, access_log=log)
                    gauge = ("drover_cluster_pending_requests", {"cluster": "app"})
                    def first():
                        try:
                            self.client(addr).request("GET", "/first", timeout=10)
                        except OSError:
                            pass   # the test may end (and stop Drover) before its answer
                    threading.Thread(target=first, daemon=True).start()
                    wait_until(lambda: slow.count() == 1, 5, message="the first request holds the slot")
                sock = socket.create_connection(addr, timeout=5)
                self.addCleanup(sock.close)
                sock.sendall(b"GET /second HTTP/1.1\r\nHost: test\r\n\r\n")
                wait_until(lambda: drover.metric_value(*gauge, default=0) == 1, 5, message="the second waits")
                time.sleep(0.2)
                sock.close()
                left = time.monotonic()
                wait_until(lambda: drover.metric_value(*gauge, default=0) == 0, 2, message="the wait ended")
                self.assertLess(time.monotonic() - left, 0.8)
                wait_until(lambda: " GET /second 499 " in open(log).read(), 3, message="logged as 499")
                self.assertIn("client_closed", open(log).read())
                shed = sum(self.shed_count(drover, r) for r in ("max_requests", "host_capacity"))
                held = lambda result: drover.metric_value("drover_cluster_held_requests_total",
                                                          {"cluster": "app", "result": result}, default=0)
                self.assertEqual((shed, held("timed_out"), held("client_left")), (0, 0, 1 if case == "held" else 0))
                self.assertEqual(drover.metric_value("drover_http_requests_total",
                                                     {"listener": "web", "code_class": "5xx"}, default=0), 0)

    def test_the_cap_follows_the_healthy_hosts(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        a.delay = b.delay = 0.6
        drover, addr = self.proxy([a, b], {"max_requests_per_host": 1, "queue_timeout": "50ms"})
        statuses = sorted(s for s, _, _ in self.concurrently(addr, ["/1", "/2", "/3"]))
        self.assertEqual(statuses, [200, 200, 503])   # two hosts, one slot each


    def test_requests_held_while_no_host_was_up_get_their_own_queue_timeout_when_one_comes_back(self):
        # Held ~1 s (no host has passed a check), far past queue_timeout: when the host comes up with
        # one slot, the three wait their turn for it rather than two being shed at once.
        a = Switchable(self, "a")
        a.delay = 0.1
        a.health_status = 500
        drover, addr = self.proxy([a], {"max_requests_per_host": 1, "queue_timeout": "600ms"},
                                  health_check=FAST_CHECK, hold_timeout="8s")
        results = []
        threads = [threading.Thread(target=lambda p=p: results.append(self.client(addr).request("GET", p).status))
                   for p in ("/1", "/2", "/3")]
        for t in threads:
            t.start()
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "app"}, default=0) == 3,
                   5, message="three requests held")
        self.assertEqual(drover.admin_json("/clusters")["clusters"][0]["admission"]["held"], 3)
        time.sleep(1.0)
        a.health_status = 200
        for t in threads:
            t.join(10)
        self.assertEqual(sorted(results), [200, 200, 200])
        self.assertEqual(self.shed_count(drover, "host_capacity"), 0)

    def test_retry_after_reflects_the_queue_from_the_first_request_on(self):
        # One slot, two waiting, 1 s per request: the queue drains in about 3 s. Right after start (one
        # request served), a shed's Retry-After must say so, not 1 s from an average still near 0.
        slow = Switchable(self, "slow")
        slow.delay = 1.0
        drover, addr = self.proxy([slow], {"max_requests": 1, "max_pending": 2, "queue_timeout": "10s"})
        self.assertEqual(self.client(addr).request("GET", "/first").status, 200)
        results = self.concurrently(addr, ["/a", "/b", "/c", "/d"])
        shed = [r for s, _, r in results if s == 503]
        self.assertEqual(len(shed), 1, [s for s, _, _ in results])
        self.assertLocalResponse(shed[0], "shed")
        self.assertGreaterEqual(int(shed[0].header("retry-after")), 3)

    def test_queue_timeout_zero_counts_the_shed_under_its_real_reason(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"max_requests_per_host": 1, "queue_timeout": "0s"})
        (first, _, _), (second, _, resp) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual(first, 200)
        self.assertLocalResponse(resp, "shed")
        self.assertIn("every host is at limits.max_requests_per_host", resp.text)
        self.assertEqual((self.shed_count(drover, "host_capacity"), self.shed_count(drover, "max_requests")), (1, 0))

    def test_with_several_workers_busy_clients_of_one_worker_do_not_starve_another_workers_waiters(self):
        # One slot (the cluster's, or its one host's), four keep-alive clients spread over two workers,
        # each asking again at once. A slot given back goes to the oldest waiter, whichever worker it
        # waits on: before, a client of the worker with fewer clients could get nothing but 503s, the
        # others taking every freed slot before its 5 ms look came.
        for limit in ("max_requests", "max_requests_per_host"):
            with self.subTest(limit=limit):
                fast = Switchable(self, "fast")
                fast.delay = 0.01
                drover, addr = self.proxy([fast], {limit: 1, "queue_timeout": "500ms"}, workers=2)
                statuses = [[] for _ in range(4)]

                def client(i):
                    conn = self.client(addr)
                    until = time.monotonic() + 2.0
                    while time.monotonic() < until:
                        statuses[i].append(conn.request("GET", f"/{i}", timeout=5).status)
                threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(10)
                for i, got in enumerate(statuses):
                    self.assertGreater(len(got), 5, f"client {i}")
                    self.assertEqual(set(got), {200}, f"client {i}: {got.count(503)} of {len(got)} shed")
                host_active = lambda: drover.admin_json("/clusters")["clusters"][0]["hosts"][0]["requests_active"]
                wait_until(lambda: host_active() == 0, 3, message="every host slot given back")

    # -- limits.max_connections: the cluster's connection breaker, for HTTP too ---------------------------

    def upstream_connections(self, drover, *backends):
        """The cluster's count and the hosts' counts of open upstream connections, from /metrics."""
        cluster = drover.metric_value("drover_cluster_upstream_connections_active", {"cluster": "app"})
        hosts = sum(drover.metric_value("drover_upstream_connections_active", {"cluster": "app", "host": b.addr},
                                        default=0) for b in backends)
        return cluster, hosts

    def test_past_max_connections_a_request_is_shed_after_queue_timeout(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.6
        drover, addr = self.proxy([slow], {"max_connections": 1, "queue_timeout": "50ms"})
        (first, _, _), (second, took2, resp) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual(first, 200)
        self.assertLocalResponse(resp, "shed")
        self.assertIn("limits.max_connections", resp.text)
        self.assertGreaterEqual(int(resp.header("retry-after")), 1)
        self.assertLess(took2, 0.4, "shed after queue_timeout, not after the slow request")
        self.assertEqual(slow.count(), 1, "the shed request never reached the backend")
        self.assertEqual(self.shed_count(drover, "max_connections"), 1)
        # The one connection stays, parked in the pool, and still counts.
        self.assertEqual(self.upstream_connections(drover, slow), (1, 1))
        view = drover.admin_json("/clusters")["clusters"][0]
        self.assertEqual((view["upstream_connections_active"], view["upstream_connections_idle"]), (1, 1))
        self.assertEqual(drover.metric_value("drover_cluster_upstream_connections_idle", {"cluster": "app"}), 1)

    def test_a_request_waits_for_the_connection_to_come_back_to_the_pool(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.3
        drover, addr = self.proxy([slow], {"max_connections": 1, "queue_timeout": "2s"})
        (first, _, _), (second, took2, _) = self.concurrently(addr, ["/a", "/b"])
        self.assertEqual((first, second), (200, 200))
        self.assertGreater(took2, 0.4, "the second waited for the first one's connection")
        self.assertEqual(drover.metric_value("drover_upstream_connections_total", {"cluster": "app", "host": slow.addr}),
                         1, "both went over the one connection")
        self.assertEqual(self.shed_count(drover, "max_connections"), 0)

    def test_an_idle_connection_to_another_host_is_closed_to_make_room(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], {"max_connections": 1, "queue_timeout": "50ms"})
        for i in range(6):   # round robin: a, b, a, ... each needs the place the other's idle one holds
            resp = self.client(addr).request("GET", f"/{i}")
            self.assertEqual(resp.status, 200, resp.text)
            self.assertEqual(self.upstream_connections(drover, a, b), (1, 1))
        self.assertEqual((a.count(), b.count()), (3, 3))
        self.assertEqual(self.shed_count(drover, "max_connections"), 0)

    def test_with_several_workers_an_idle_connection_on_another_worker_makes_room(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], {"max_connections": 1, "queue_timeout": "1s"}, workers=2)
        # New client connections land on either worker; each worker's round robin goes a, b, a, ...
        for i in range(12):
            resp = self.client(addr).request("GET", f"/{i}")
            self.assertEqual(resp.status, 200, resp.text)
            cluster, hosts = self.upstream_connections(drover, a, b)
            self.assertLessEqual(hosts, 1, "open upstream connections, over both workers")
            self.assertEqual(cluster, hosts)
        self.assertEqual(a.count() + b.count(), 12)
        self.assertGreater(min(a.count(), b.count()), 0)
        self.assertEqual(self.shed_count(drover, "max_connections"), 0)

    def test_with_several_workers_a_waiting_request_gets_the_place_a_request_on_another_worker_gives_back(self):
        # One place; a slow request holds it while a second one waits. Half the time the second lands
        # on the other worker: it must still get the place when the first ends, not wait out
        # queue_timeout because it only looked at its own worker.
        slow = Switchable(self, "slow")
        slow.delay = 0.3
        drover, addr = self.proxy([slow], {"max_connections": 1, "queue_timeout": "2s"}, workers=2)
        for trial in range(8):
            (first, _, _), (second, took2, _) = self.concurrently(addr, [f"/a{trial}", f"/b{trial}"])
            self.assertEqual((first, second), (200, 200), f"trial {trial}")
            self.assertLess(took2, 1.0, f"trial {trial}: the second waited for the first only")
        self.assertEqual(self.shed_count(drover, "max_connections"), 0)


class ProcessLimitTest(HttpTestCase):

    def test_near_the_descriptor_limit_new_connections_are_refused_and_admitted_work_goes_on(self):
        origin = self.origin()
        config = make_config([http_listener("web", [route("app", path_prefix="/")])],
                             [static_cluster("app", [origin])], workers=1)
        # 200 descriptors: 50 are kept in reserve (a quarter, at most 256), so clients stop near fd 150.
        drover = self.start_drover(config, max_open_files=200)
        addr = drover.listener_addr("web")
        first = self.client(addr)
        self.assertEqual(first.request("GET", "/before").status, 200)
        held = [self.connect(addr) for _ in range(180)]
        wait_until(lambda: drover.metric_value("drover_listener_connections_rejected_total",
                                               {"listener": "web", "reason": "fd_limit"}, default=0) > 0, 5,
                   message="connections past the ceiling refused")
        # The connection admitted before keeps working: its upstream connection still gets a descriptor.
        self.assertEqual(first.request("GET", "/during").status, 200)
        for sock in held:
            sock.close()
        wait_until(lambda: drover.metric_value("drover_listener_connections_active", {"listener": "web"}) <= 1, 5,
                   message="held connections closed")
        self.assertEqual(self.get(addr, "/after").status, 200)

    @unittest.skipIf(sanitized_build(), "the sanitizer runtime itself needs descriptors this test takes away")
    def test_requests_that_find_no_descriptor_are_shed_and_the_host_stays_healthy(self):
        # 64 descriptors (16 kept in reserve): 40 idle connections are admitted, then all send at once
        # to a backend that holds its answers. Their upstream connections need more descriptors than
        # are left: those requests are shed (Drover's shortage), and the host is not blamed for it.
        slow = Switchable(self, "slow")
        slow.delay = 1.5
        config = make_config([http_listener("web", [route("app", path_prefix="/")])],
                             [static_cluster("app", [slow], self_healing=True, health_check=FAST_CHECK)], workers=1)
        drover = self.start_drover(config, max_open_files=64)
        addr = drover.listener_addr("web")
        wait_until(lambda: drover.admin_json("/clusters")["clusters"][0]["hosts"][0]["state"] == "healthy", 5,
                   message="host healthy")
        conns = []
        for _ in range(40):
            try:
                conns.append(self.client(addr))
            except OSError:
                break
        results = []

        def one(conn):
            try:
                results.append(conn.request("GET", "/x"))
            except (OSError, AssertionError):
                results.append(None)
        threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for conn in conns:   # the admin endpoint needs a descriptor too
            conn.close()
        shed = [r for r in results if r is not None and r.status == 503]
        self.assertTrue(shed, [r.status if r else None for r in results])
        self.assertLocalResponse(shed[0], "shed")
        self.assertIn("no file descriptor left", shed[0].text)
        wait_until(lambda: drover.metric_value("drover_cluster_shed_total", {"cluster": "app", "reason": "descriptors"})
                   == len(shed), 5, message="the sheds counted")
        host = drover.admin_json("/clusters")["clusters"][0]["hosts"][0]
        self.assertEqual((host["state"], host["ejected"]), ("healthy", False))

    def test_past_the_memory_mark_new_connections_are_refused(self):
        origin = self.origin()
        config = make_config([http_listener("web", [route("app", path_prefix="/")])],
                             [static_cluster("app", [origin])], workers=1, process={"max_memory": "1MiB"})
        drover = self.start_drover(config)   # any process is past 95% of 1 MiB resident
        wait_until(lambda: drover.metric_value("drover_memory_pressure") == 1, 5, message="memory pressure")
        self.assertClosedPromptly(self.connect(drover.listener_addr("web")))
        wait_until(lambda: drover.metric_value("drover_listener_connections_rejected_total",
                                               {"listener": "web", "reason": "memory_limit"}, default=0) >= 1, 5,
                   message="refusal counted")
        self.assertGreater(drover.metric_value("drover_process_resident_memory_bytes"), 1 << 20)
        self.assertEqual(origin.connections, 0)

    def test_under_the_memory_mark_traffic_flows(self):
        origin = self.origin()
        config = make_config([http_listener("web", [route("app", path_prefix="/")])],
                             [static_cluster("app", [origin])], workers=1, process={"max_memory": "4GiB"})
        drover = self.start_drover(config)
        self.assertEqual(self.get(drover.listener_addr("web"), "/").status, 200)
        self.assertEqual(drover.metric_value("drover_memory_pressure"), 0)

    def test_a_reload_changes_the_memory_limit_at_once(self):
        # Past a tiny limit, then no limit, then a tiny one again, all by reload: the pressure follows
        # (it used to keep the limit the process started with, so raising it could not end a lockout).
        origin = self.origin()
        listeners = [http_listener("web", [route("app", path_prefix="/")])]
        clusters = [static_cluster("app", [origin])]
        drover = self.start_drover(make_config(listeners, clusters, workers=1, process={"max_memory": "1MiB"}))
        wait_until(lambda: drover.metric_value("drover_memory_pressure") == 1, 5, message="memory pressure")

        def reload(process):
            with open(drover.config_path, "w", encoding="utf-8") as f:
                f.write(to_yaml(make_config(listeners, clusters, workers=1, process=process)))
            self.assertEqual(drover.admin_post("/reload").status, 200)
        reload({"max_memory": "0"})
        wait_until(lambda: drover.metric_value("drover_memory_pressure") == 0, 5, message="no limit, no pressure")
        self.assertEqual(self.get(drover.listener_addr("web"), "/").status, 200)
        reload({"max_memory": "1MiB"})
        wait_until(lambda: drover.metric_value("drover_memory_pressure") == 1, 5, message="pressure again")


if __name__ == "__main__":
    unittest.main()
