"""Health and self-healing through the real binary: active checks, outlier ejection, retries on another
host with per-try timeouts, holding requests while every host is down, overload signals, panic, and the
admin views that say why a host is where it is. (tests/chaos drives the same features with processes
killed, stopped and restarted under steady load.)"""

import signal
import socket
import struct
import threading
import time
import unittest

from harness import (ClosedPort, HttpBackend, HttpTestCase, ScriptedBackend, http_listener, make_config, recv_all,
                     recv_head, route, static_cluster, tcp_listener, wait_until)

FAST_CHECK = {"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms",
              "healthy_threshold": 1, "unhealthy_threshold": 2, "http": {"path": "/healthz"}}


class Switchable:
    """An HTTP backend whose health endpoint and answers the test switches while it runs."""

    def __init__(self, test, name, port=0):
        self.name = name
        self.health_status = 200
        self.status = 200
        self.headers = {}
        self.delay = 0.0
        self.served = []   # (time, path) of every non-health request
        self.lock = threading.Lock()
        self.http = test.backend(HttpBackend(name, self.respond, port=port))

    @property
    def addr(self):
        return self.http.addr

    def respond(self, handler):
        if handler.path.startswith("/healthz"):
            return self.health_status, {}, b"health\n"
        with self.lock:
            self.served.append((time.monotonic(), handler.path))
        if self.delay:
            time.sleep(self.delay)
        return self.status, {"X-Backend": self.name, **self.headers}, f"{self.name}\n".encode()

    def count(self):
        with self.lock:
            return len(self.served)


class HealthTest(HttpTestCase):

    def proxy(self, backends, **cluster):
        clusters = [static_cluster("app", backends, self_healing=True,
                                   **{"load_balancing": "round_robin", "health_check": FAST_CHECK, **cluster})]
        config = make_config([http_listener("web", [route("app", path_prefix="/")])], clusters)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("web")

    def host(self, drover, addr):
        for h in drover.admin_json("/clusters")["clusters"][0]["hosts"]:
            if h["address"] == addr:
                return h
        raise AssertionError(f"{addr} not in /clusters")

    def backend_of(self, resp):
        return resp.header("x-backend")

    # -- active checks ------------------------------------------------------------------------------

    def test_ready_waits_for_first_checks_and_a_failing_host_gets_no_traffic(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        b.health_status = 503
        drover, addr = self.proxy([a, b])
        # /ready said yes only after every host had its first check: b is known bad already.
        h = self.host(drover, b.addr)
        self.assertEqual((h["state"], h["eligible"]), ("unknown", False), h)
        self.assertIn("503", h["why"], h)
        conn = self.client(addr)
        self.assertEqual({self.backend_of(conn.request("GET", f"/{i}")) for i in range(6)}, {"a"})
        self.assertEqual(b.count(), 0)
        b.health_status = 200
        wait_until(lambda: self.host(drover, b.addr)["eligible"], 5, message="b eligible once its check passes")
        wait_until(lambda: self.backend_of(conn.request("GET", "/again")) == "b", 5, message="b takes traffic")

    def test_a_host_failing_its_checks_leaves_and_returns_with_slow_start(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], slow_start="5s")
        b.health_status = 500
        wait_until(lambda: self.host(drover, b.addr)["state"] == "unhealthy", 5, message="b unhealthy")
        h = self.host(drover, b.addr)
        self.assertFalse(h["eligible"])
        self.assertIn("2 consecutive", h["why"])
        before = b.count()
        conn = self.client(addr)
        for i in range(6):
            self.assertEqual(conn.request("GET", f"/{i}").status, 200)
        self.assertEqual(b.count(), before)
        b.health_status = 200
        wait_until(lambda: self.host(drover, b.addr)["state"] == "healthy", 5, message="b healthy again")
        h = self.host(drover, b.addr)
        self.assertTrue(h["eligible"])
        self.assertLess(h["slow_start_percent"], 100, h)
        detail = drover.admin_json(f"/clusters/app/{b.addr}")
        events = [e["event"] for e in detail["history"]]
        self.assertEqual(events[-2:], ["unhealthy", "healthy"], detail)
        # Clients that escape the path (IPv6 brackets as %5B %5D, or the colon) reach the same host.
        escaped = drover.admin_json(f"/clusters/app/{b.addr.replace(':', '%3A')}")
        self.assertEqual(escaped["address"], b.addr)
        self.assertEqual(drover.metric_value("drover_health_transitions_total", {"cluster": "app", "to": "unhealthy"}), 1)

    # -- passive: outlier detection -----------------------------------------------------------------

    def test_consecutive_5xx_eject_the_host_at_once_and_say_why(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], retries={"attempts": 0},
                                  outlier_detection={"consecutive_failures": 3, "base_ejection_time": "30s"})
        b.status = 500
        conn = self.client(addr)
        statuses = [conn.request("GET", f"/{i}").status for i in range(6)]
        self.assertEqual(statuses.count(500), 3, statuses)   # the third 500 ejects b
        wait_until(lambda: self.host(drover, b.addr)["state"] == "ejected", 3, message="b ejected")
        h = self.host(drover, b.addr)
        self.assertIn("3 consecutive backend_origin failures", h["why"])
        self.assertGreater(h["ejected_for_seconds"], 20)
        for i in range(6):
            self.assertEqual(conn.request("GET", f"/after/{i}").status, 200)
        self.assertEqual(drover.metric_value("drover_outlier_ejections_total", {"cluster": "app", "origin": "backend"}), 1)
        events = [e["event"] for e in drover.admin_json(f"/clusters/app/{b.addr}")["history"]]
        self.assertIn("ejected", events)

    def test_an_ejection_refused_by_the_cap_is_one_event_not_one_per_failed_request(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], retries={"attempts": 0},
                                  outlier_detection={"consecutive_failures": 3, "base_ejection_time": "30s",
                                                     "max_ejection_percent": "50%"})
        a.status = b.status = 500
        conn = self.client(addr)
        for i in range(20):
            self.assertEqual(conn.request("GET", f"/{i}").status, 500)
        states = sorted(self.host(drover, h.addr)["state"] for h in (a, b))
        self.assertEqual(states, ["ejected", "healthy"])
        kept = a if self.host(drover, a.addr)["state"] == "healthy" else b
        self.assertEqual(drover.metric_value("drover_outlier_ejections_refused_total", {"cluster": "app"}), 1)
        history = drover.admin_json(f"/clusters/app/{kept.addr}")["history"]
        self.assertEqual([e["event"] for e in history].count("ejection refused"), 1, history)
        # Its checks now fail too: the reason stays on the host however long the outage goes on.
        kept.health_status = 500
        wait_until(lambda: self.host(drover, kept.addr)["state"] == "unhealthy", 5, message="kept unhealthy")
        self.assertIn("consecutive", self.host(drover, kept.addr)["why"])

    def test_admin_drain_takes_a_host_out_and_undrain_brings_it_back(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b])
        self.assertEqual(drover.admin_post(f"/clusters/app/{b.addr}/drain").status, 200)
        h = self.host(drover, b.addr)
        self.assertEqual((h["state"], h["eligible"], h["draining"]), ("draining", False, True), h)
        before = b.count()
        conn = self.client(addr)
        for i in range(6):
            self.assertEqual(self.backend_of(conn.request("GET", f"/{i}")), "a")
        self.assertEqual(b.count(), before)
        self.assertEqual(drover.admin_post(f"/clusters/app/{b.addr}/undrain").status, 200)
        wait_until(lambda: self.backend_of(conn.request("GET", "/back")) == "b", 5, message="b takes traffic again")
        events = [e["event"] for e in drover.admin_json(f"/clusters/app/{b.addr}")["history"]]
        self.assertEqual(events[-2:], ["draining", "undrained"])
        self.assertEqual(drover.admin_post(f"/clusters/app/{b.addr}/pause").status, 404)
        wrong_method = drover.admin_get(f"/clusters/app/{b.addr}/drain")
        self.assertEqual((wrong_method.status, wrong_method.header("allow")), (405, "POST"), wrong_method.text)
        self.assertEqual(drover.admin_post("/clusters/app/127.0.0.1:1/drain").status, 404)
        self.assertEqual(drover.admin_post(f"/clusters/nope/{b.addr}/drain").status, 404)

    def test_config_shows_the_effective_self_healing_settings(self):
        a = Switchable(self, "a")
        drover, _ = self.proxy([a], retries={"per_try_timeout": "300ms"})
        config = drover.admin_json("/config")
        cluster = config["clusters"][0]
        self.assertEqual(cluster["name"], "app")
        self.assertEqual(cluster["health_check"]["http"]["path"], "/healthz")
        self.assertTrue(cluster["outlier_detection"]["enabled"])      # a default, not in the file
        self.assertEqual(cluster["outlier_detection"]["base_ejection_time"], "5s")
        self.assertEqual(cluster["retries"]["per_try_timeout"], "300ms")
        self.assertEqual(cluster["hold_timeout"], "3s")
        self.assertEqual(cluster["retries"]["on"], ["connect_failure", "reset", "timeout", "502", "503", "504"])
        self.assertEqual(config["listeners"][0]["routes"][0]["cluster"], "app")
        # As the config takes them: percentages with their sign, the Host the checks really send.
        self.assertEqual((cluster["panic_threshold"], cluster["retries"]["budget"], cluster["health_check"]["jitter"],
                          cluster["outlier_detection"]["max_ejection_percent"], cluster["priority_overprovisioning"]),
                         ("50%", "20%", "10%", "50%", "140%"))
        self.assertEqual(cluster["health_check"]["http"]["host"], "app")
        self.assertNotIn("hash", cluster)   # least_request has none

    def test_unknown_host_detail_is_404(self):
        a = Switchable(self, "a")
        drover, _ = self.proxy([a])
        self.assertEqual(drover.admin_get("/clusters/app/127.0.0.1:1").status, 404)
        self.assertEqual(drover.admin_get("/clusters/nope/127.0.0.1:1").status, 404)

    # -- retries -------------------------------------------------------------------------------------

    def test_a_503_is_retried_on_another_host_for_get_but_not_for_post(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], outlier_detection={"enabled": False})
        b.status = 503
        conn = self.client(addr)
        for i in range(4):
            resp = conn.request("GET", f"/{i}")
            self.assertEqual((resp.status, self.backend_of(resp)), (200, "a"))
        self.assertGreaterEqual(b.count(), 1)
        posts = [conn.request("POST", f"/p{i}", body=b"x").status for i in range(4)]
        self.assertIn(503, posts)   # not idempotent: the backend's answer goes back as it is
        self.assertGreaterEqual(drover.metric_value("drover_cluster_retries_total",
                                                    {"cluster": "app", "cause": "budgeted"}), 1)

    def test_a_hung_host_costs_one_per_try_timeout(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], retries={"per_try_timeout": "300ms"},
                                  outlier_detection={"enabled": False})
        b.delay = 3.0
        conn = self.client(addr)
        for i in range(4):
            started = time.monotonic()
            resp = conn.request("GET", f"/{i}")
            took = time.monotonic() - started
            self.assertEqual((resp.status, self.backend_of(resp)), (200, "a"))
            self.assertLess(took, 1.5, f"request {i} took {took:.2f}s")

    def test_single_host_timeout_is_a_504_after_the_per_try_timeout(self):
        a = Switchable(self, "a")
        drover, addr = self.proxy([a], retries={"per_try_timeout": "300ms"}, outlier_detection={"enabled": False})
        a.delay = 2.0
        started = time.monotonic()
        resp = self.get(addr, "/slow")
        self.assertLocalResponse(resp, "upstream_timeout")
        self.assertLess(time.monotonic() - started, 1.5)

    # -- all down: hold ------------------------------------------------------------------------------

    def test_requests_are_held_while_every_host_is_down_and_sent_when_one_returns(self):
        port_holder = ClosedPort()
        port = port_holder.port
        drover, addr = self.proxy([port_holder], hold_timeout="5s")
        result = {}

        def request():
            started = time.monotonic()
            result["resp"] = self.get(addr, "/held")
            result["took"] = time.monotonic() - started
        t = threading.Thread(target=request, daemon=True)
        t.start()
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "app"}, default=0) >= 1,
                   3, message="request held")
        port_holder.stop()
        Switchable(self, "late", port=port)
        t.join(8)
        self.assertFalse(t.is_alive())
        self.assertEqual(result["resp"].status, 200, result["resp"])
        # Counted once the exchange is over, which is after the client has its response.
        drover.wait_metric("drover_cluster_held_requests_total", {"cluster": "app", "result": "served"}, lambda v: v == 1)

    def test_least_request_ramps_a_returning_host_up_for_a_sequential_client(self):
        # One request at a time: no host has any in flight, so only the weights decide. A host in slow
        # start gets a growing share from the start of its ramp, not nothing until the ramp ends.
        a, b = Switchable(self, "a"), Switchable(self, "b")
        # A long ramp, so that however slow the machine, these requests fall in its first half (b at
        # 10% to 55% of its weight: a share of 9% to 35%). Turned on by a reload once a is up: hosts
        # that come up with slow start on ramp from their first check too, and a must not.
        drover, addr = self.proxy([a, b], load_balancing="least_request", slow_start="0s")
        with open(drover.config_path, encoding="utf-8") as f:
            text = f.read()
        with open(drover.config_path, "w", encoding="utf-8") as f:
            f.write(text.replace("slow_start: 0s", "slow_start: 30s"))
        self.assertEqual(drover.admin_post("/reload").status, 200)
        self.assertEqual(self.host(drover, a.addr)["slow_start_percent"], 100)
        b.health_status = 500
        wait_until(lambda: self.host(drover, b.addr)["state"] == "unhealthy", 5, message="b unhealthy")
        b.health_status = 200
        wait_until(lambda: self.host(drover, b.addr)["state"] == "healthy", 5, message="b healthy again")
        conn = self.client(addr)
        got = [self.backend_of(conn.request("GET", f"/{i}")) for i in range(60)]
        self.assertGreater(got.count("b"), 0, "no share while ramping")
        self.assertLess(got.count("b"), 27, "no ramp at all")

    def test_a_request_that_makes_every_host_reset_is_sent_at_most_1_plus_attempts_times(self):
        # A "poison" GET: every host resets when it gets it (and stays healthy for its checks). Its
        # tries end in resets, ejections and health changes follow; each change must not send it
        # again: 1 + retries.attempts (2) sends in all, then the reset's 502.
        sends = []
        lock = threading.Lock()

        def poison(conn, backend):
            while head := recv_head(conn):
                if b" /poison " in head.split(b"\r\n", 1)[0]:
                    with lock:
                        sends.append(backend.name)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")

        hosts = [self.backend(ScriptedBackend(poison, name=n)) for n in "ab"]
        drover, addr = self.proxy(hosts, hold_timeout="3s", outlier_detection={"consecutive_failures": 1})
        resp = self.get(addr, "/poison")
        self.assertLocalResponse(resp, "bad_upstream_response")
        with lock:
            self.assertLessEqual(len(sends), 3, sends)
        time.sleep(0.5)   # nothing goes on behind the answer either
        with lock:
            self.assertLessEqual(len(sends), 3, sends)

    def hosts_that_served_and_died(self, hold_timeout):
        """Two hosts, healthy and then stopped; returns drover and its listener's address."""
        hosts = [Switchable(self, n) for n in "ab"]
        drover, addr = self.proxy(hosts, hold_timeout=hold_timeout)
        wait_until(lambda: all(self.host(drover, h.addr)["state"] == "healthy" for h in hosts), 5, message="healthy")
        for h in hosts:
            h.http.stop()
        return drover, addr

    def test_held_requests_that_time_out_are_not_counted_served(self):
        drover, addr = self.hosts_that_served_and_died("1s")
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.get(addr, "/").status)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(results, [503] * 3)
        held = {r: drover.metric_value("drover_cluster_held_requests_total", {"cluster": "app", "result": r})
                for r in ("served", "timed_out")}
        self.assertEqual(held, {"served": 0, "timed_out": 3})

    def test_past_the_hold_timeout_a_503_with_retry_after(self):
        dead = self.closed_port()
        drover, addr = self.proxy([dead], hold_timeout="300ms")
        started = time.monotonic()
        resp = self.get(addr, "/")
        self.assertLocalResponse(resp, "no_healthy_host")
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertGreaterEqual(int(resp.header("retry-after")), 1)

    def test_every_host_dead_in_panic_is_a_503_after_the_hold_not_a_502(self):
        # Hosts that served and then died: in panic (use_all, the default) every one is tried, every
        # connect is refused, and the request waits out the hold. The service is unavailable: 503.
        drover, addr = self.hosts_that_served_and_died("300ms")
        wait_until(lambda: drover.metric_value("drover_cluster_panic", {"cluster": "app"}) == 1, 5, message="panic")
        resp = self.get(addr, "/")
        self.assertLocalResponse(resp, "no_healthy_host")
        self.assertIn("accepted a connection", resp.text)
        self.assertGreaterEqual(int(resp.header("retry-after")), 1)
        self.assertGreaterEqual(drover.metric_value("drover_cluster_held_requests_total",
                                                    {"cluster": "app", "result": "timed_out"}), 1)

    # -- overloaded is not dead ----------------------------------------------------------------------

    def test_429_with_retry_after_lowers_the_share_instead_of_ejecting(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover, addr = self.proxy([a, b], outlier_detection={"consecutive_failures": 1})
        b.status = 429
        b.headers = {"Retry-After": "10"}
        conn = self.client(addr)
        for i in range(4):
            conn.request("GET", f"/{i}")
        wait_until(lambda: self.host(drover, b.addr)["overloaded"], 3, message="b overloaded")
        h = self.host(drover, b.addr)
        self.assertEqual(h["state"], "healthy")
        self.assertTrue(h["eligible"])
        self.assertLess(h["effective_weight"], self.host(drover, a.addr)["effective_weight"])
        self.assertGreaterEqual(drover.metric_value("drover_overload_signals_total", {"cluster": "app"}), 1)

    # -- panic ---------------------------------------------------------------------------------------

    def test_panic_use_all_keeps_serving_and_fail_closed_refuses(self):
        for policy, want in (("use_all", 200), ("fail_closed", 503)):
            with self.subTest(policy):
                hosts = [Switchable(self, n) for n in "abc"]
                hosts[1].health_status = hosts[2].health_status = 500
                drover, addr = self.proxy(hosts, panic_policy=policy, hold_timeout="200ms")
                hosts[0].health_status = 500   # all down: well below the 50% threshold
                wait_until(lambda: drover.metric_value("drover_cluster_panic", {"cluster": "app"}) == 1, 5,
                           message="panic")
                resp = self.get(addr, "/")
                self.assertEqual(resp.status, want, resp)
                self.assertGreaterEqual(drover.metric_value("drover_cluster_panics_total", {"cluster": "app"}), 1)



class TcpHealthTest(HttpTestCase):
    """The same self-healing on a tcp listener: connections go to healthy hosts only, and while every
    host is down a new connection is held until one comes back."""

    def proxy(self, hosts, **cluster):
        clusters = [static_cluster("pg", hosts, self_healing=True, load_balancing="round_robin",
                                   health_check={"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms",
                                                 "healthy_threshold": 1, "unhealthy_threshold": 1}, **cluster)]
        drover = self.start_drover(make_config([tcp_listener("front", "pg")], clusters))
        return drover, drover.listener_addr("front")

    def tag(self, addr):
        sock = self.connect(addr)
        return recv_all(sock)

    def test_a_dead_host_leaves_rotation_and_new_connections_go_to_the_rest(self):
        a, b = self.tagged_backend("A"), self.tagged_backend("B")
        drover, addr = self.proxy([a, b])
        self.assertEqual({self.tag(addr) for _ in range(4)}, {b"A", b"B"})
        b.stop()
        wait_until(lambda: drover.metric_value("drover_cluster_hosts_eligible", {"cluster": "pg"}) == 1, 5,
                   message="b out of rotation")
        self.assertEqual({self.tag(addr) for _ in range(4)}, {b"A"})

    def test_a_connection_is_held_while_every_host_is_down(self):
        holder = ClosedPort()
        port = holder.port
        drover, addr = self.proxy([holder], hold_timeout="5s")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("tag", self.tag(addr)), daemon=True)
        t.start()
        time.sleep(0.3)
        holder.stop()
        self.tagged_backend("late", port=port)
        t.join(8)
        self.assertEqual(result.get("tag"), b"late")
        self.assertEqual(drover.metric_value("drover_cluster_held_requests_total", {"cluster": "pg", "result": "served"}), 1)

    def test_a_held_connection_whose_client_left_is_not_connected_later(self):
        holder = ClosedPort()
        port = holder.port
        drover, addr = self.proxy([holder], hold_timeout="5s")
        closed = self.connect(addr)
        reset = self.connect(addr)
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "pg"}) == 2, 5,
                   message="both connections are held")
        closed.close()   # the client gives up first
        reset.sendall(b"hello")   # ...or sends something, then resets
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()
        holder.stop()
        self.tagged_backend("late", port=port)
        drover.wait_metric("drover_cluster_held_requests_total", {"cluster": "pg", "result": "client_left"},
                           lambda v: v == 2, timeout=5)
        (cluster,) = drover.admin_json("/clusters")["clusters"]
        self.assertEqual([h["connections_total"] for h in cluster["hosts"]], [0])   # probes are not counted
        self.assertEqual(drover.metric_value("drover_cluster_held_requests_total", {"cluster": "pg", "result": "served"}), 0)

    def test_a_held_connection_takes_no_place_under_max_connections(self):
        # Held while no host is up, a connection has no upstream connection: it does not count against
        # the cluster's max_connections, so a second client is held too rather than closed.
        holder = ClosedPort()
        drover, addr = self.proxy([holder], hold_timeout="5s", limits={"max_connections": 1})
        clients = [self.connect(addr), self.connect(addr)]
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "pg"}, default=0) == 2,
                   5, message="both connections are held")
        self.assertEqual(drover.metric_value("drover_cluster_upstream_connections_active", {"cluster": "pg"}), 0)
        self.assertEqual(drover.metric_value("drover_cluster_upstream_unavailable_total",
                                             {"cluster": "pg", "reason": "max_connections"}), 0)
        for sock in clients:
            sock.close()

    def test_a_drain_deadline_ends_a_held_connection_at_once(self):
        holder = ClosedPort()
        clusters = [static_cluster("pg", [holder], self_healing=True, load_balancing="round_robin", hold_timeout="30s",
                                   health_check={"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms",
                                                 "healthy_threshold": 1, "unhealthy_threshold": 1})]
        drover = self.start_drover(make_config([tcp_listener("front", "pg")], clusters, drain_timeout="300ms"))
        sock = self.connect(drover.listener_addr("front"))
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "pg"}, default=0) == 1,
                   5, message="connection not held")
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        self.assertClosedPromptly(sock, timeout=3)
        # Ended by the drain deadline, not by the 30 s hold, nor left for the last-resort grace: that
        # would exit at 0.3 s + 2 s at the earliest.
        self.assertEqual(drover.wait_exit(3), 0)
        self.assertLess(time.monotonic() - start, 2.0)


if __name__ == "__main__":
    unittest.main()
