"""The admin endpoint: /live, /ready, /metrics, /clusters, /listeners, errors."""

import os
import unittest

from harness import (LOG_LINE_RE, DroverTestCase, format_addr, make_config, static_cluster, tcp_listener,
                     transfer, wait_until)


class AdminTest(DroverTestCase):

    def setUp(self):
        super().setUp()
        self.echo = self.echo_backend()
        self.dead = self.closed_port()
        # The dead host carries weight 3 so the JSON shows a non-default weight.
        config = make_config([tcp_listener("front", "back")],
                             [static_cluster("back", [self.echo, {"address": self.dead.addr, "weight": 3}],
                                             timeouts={"connect": "500ms"})])
        self.drover = self.start_drover(config)
        self.addr = self.drover.listener_addr("front")

    def echo_through(self, data):
        with self.connect(self.addr) as sock:
            self.assertEqual(transfer(sock, data), data)

    def test_live_and_ready(self):
        live = self.drover.admin_get("/live")
        self.assertEqual((live.status, live.text.strip()), (200, "live"))
        ready = self.drover.admin_get("/ready")
        self.assertEqual((ready.status, ready.text.strip()), (200, "ready"))

    def test_metrics_families_and_labels(self):
        self.echo_through(b"x")
        resp = self.drover.admin_get("/metrics")
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.header("content-type", "").startswith("text/plain"), resp.headers)
        self.assertIn("version=0.0.4", resp.header("content-type", ""))
        families = self.drover.metrics()  # parses with prometheus_client, or raises
        d = self.drover
        build = d.metric_samples("drover_build_info", families=families)
        self.assertEqual(len(build), 1, build)
        self.assertRegex(build[0].labels.get("version", ""), r"^\d+\.\d+\.\d+")
        self.assertEqual(build[0].value, 1)
        listener = {"listener": "front"}
        for name in ("drover_listener_connections_accepted_total", "drover_listener_connections_active",
                     "drover_listener_bytes_received_total", "drover_listener_bytes_sent_total"):
            with self.subTest(name):
                self.assertIsNotNone(d.metric_value(name, listener, families=families), name)
        for name in ("drover_upstream_connections_total", "drover_upstream_connect_failures_total"):
            with self.subTest(name):
                self.assertIsNotNone(
                    d.metric_value(name, {"cluster": "back", "host": self.echo.addr}, families=families), name)
        # Text format 0.0.4: `# TYPE drover_..._total counter` (the TYPE line names the sample).
        for name, kind in (("drover_listener_connections_accepted_total", "counter"),
                           ("drover_listener_bytes_received_total", "counter"),
                           ("drover_upstream_connections_total", "counter"),
                           ("drover_listener_connections_active", "gauge"),
                           ("drover_build_info", "gauge")):
            with self.subTest(name):
                self.assertEqual(d.metric_type(name, families), kind,
                                 f"{name}: text format 0.0.4 wants `# TYPE {name} {kind}`")

    def test_counters_follow_traffic(self):
        d = self.drover
        payloads = [os.urandom(n) for n in (1000, 25000, 7)]
        for data in payloads:
            self.echo_through(data)
        total = sum(len(p) for p in payloads)
        listener = {"listener": "front"}
        d.wait_metric("drover_listener_connections_accepted_total", listener, lambda v: v == 3)
        d.wait_metric("drover_listener_connections_active", listener, lambda v: v == 0)
        d.wait_metric("drover_listener_bytes_received_total", listener, lambda v: v == total)
        d.wait_metric("drover_listener_bytes_sent_total", listener, lambda v: v == total)
        echo_host = {"cluster": "back", "host": self.echo.addr}
        d.wait_metric("drover_upstream_connections_total", echo_host, lambda v: v == 3)
        d.wait_metric("drover_upstream_connections_active", echo_host, lambda v: v == 0, default=0)
        self.assertEqual(d.metric_value("drover_upstream_connect_failures_total", echo_host, default=0), 0)
        # Round robin over [echo, dead]: some of the three connections tried the dead host first.
        self.assertGreater(d.metric_value("drover_upstream_connect_failures_total",
                                          {"cluster": "back", "host": self.dead.addr}, default=0), 0)
        self.assertEqual(self.echo.connections, 3)

    def test_active_gauges_while_connected(self):
        d = self.drover
        sock = self.connect(self.addr)
        sock.sendall(b"ping")
        self.assertEqual(sock.recv(4), b"ping")
        d.wait_metric("drover_listener_connections_active", {"listener": "front"}, lambda v: v == 1)
        d.wait_metric("drover_upstream_connections_active", {"cluster": "back", "host": self.echo.addr},
                      lambda v: v == 1)
        wait_until(lambda: d.admin_json("/listeners")["listeners"][0]["connections_active"] == 1, 5,
                   message=lambda: d.admin_get("/listeners").text)
        sock.close()
        d.wait_metric("drover_listener_connections_active", {"listener": "front"}, lambda v: v == 0)

    def test_clusters_json(self):
        for _ in range(4):
            self.echo_through(b"hello")
        # The client sees EOF a moment before drover finishes the session: poll for the settled state.
        wait_until(lambda: (self.host_json(self.echo.addr)["connections_total"] == 4
                            and self.host_json(self.echo.addr)["connections_active"] == 0), 5,
                   message=lambda: f"/clusters: {self.drover.admin_get('/clusters').text}")
        body = self.drover.admin_json("/clusters")
        self.assertEqual([c["name"] for c in body["clusters"]], ["back"])
        cluster = body["clusters"][0]
        self.assertEqual(cluster["load_balancing"], "least_request")  # the default
        self.assertEqual([h["address"] for h in cluster["hosts"]], [self.echo.addr, self.dead.addr])
        echo, dead = cluster["hosts"]
        self.assertEqual(echo["weight"], 1)
        self.assertEqual(dead["weight"], 3)
        self.assertEqual((echo["priority"], dead["priority"]), (0, 0))   # static hosts: no SRV priority
        for host in (echo, dead):
            for key, kind in (("state", str), ("connections_active", int), ("connections_total", int),
                              ("connect_failures", int)):
                self.assertIsInstance(host.get(key), kind, (key, host))
        self.assertEqual(echo["state"], "healthy")  # no health checks yet: every host is healthy
        self.assertEqual(echo["connections_active"], 0)
        self.assertEqual(echo["connect_failures"], 0)
        self.assertGreater(dead["connect_failures"], 0)

    def host_json(self, address):
        for cluster in self.drover.admin_json("/clusters")["clusters"]:
            for host in cluster["hosts"]:
                if host["address"] == address:
                    return host
        raise AssertionError(f"{address} not in /clusters")

    def test_listeners_json(self):
        listeners = self.drover.admin_json("/listeners")["listeners"]
        self.assertEqual(len(listeners), 1, listeners)
        want = {"name": "front", "address": format_addr(self.addr), "protocol": "tcp", "connections_active": 0}
        self.assertEqual({k: listeners[0].get(k) for k in want}, want)

    def test_unknown_path_and_wrong_method(self):
        self.assertEqual(self.drover.admin_get("/nope").status, 404)
        response = self.drover.admin_post("/live")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header("Allow"), "GET")
        self.assertEqual(self.drover.admin_post("/metrics").status, 405)
        self.assertEqual(self.drover.admin_get("/live").status, 200)  # still serving after errors

    def test_head_is_answered_as_get_without_the_body(self):
        for path in ("/live", "/listeners"):
            get = self.drover.admin_get(path)
            head = self.drover.admin_request("HEAD", path)
            self.assertEqual((head.status, head.body), (200, b""), path)
            self.assertEqual(head.header("Content-Length"), str(len(get.body)), path)

    def test_a_change_from_a_web_page_is_refused(self):
        # A page open in the operator's browser could POST a form here; browsers say whose page it is.
        for origin in ("https://evil.example", "null", ""):
            response = self.drover.admin_request("POST", "/drain", headers={"Origin": origin})
            self.assertEqual(response.status, 403, (origin, response.text))
            self.assertIn("no requests from web pages", response.text)
        self.assertEqual(self.drover.admin_get("/ready").status, 200)   # not draining
        self.assertEqual(self.drover.admin_request("GET", "/live", headers={"Origin": "https://x.example"}).status, 200)

    def test_log_lines_are_well_formed(self):
        bad = [line for line in self.drover.stderr_lines if not LOG_LINE_RE.match(line)]
        self.assertEqual(bad, [])


if __name__ == "__main__":
    unittest.main()
