"""Services without per-service config: a route with cluster_template makes one cluster per request
Host on first use, found through DNS (a real dnsmasq on loopback), bounded in number and dropped when
idle. Also the HTTP_PROXY use: absolute-form requests route by their authority the same way."""

import threading
import time
import unittest

from harness import Dnsmasq, HttpOrigin, HttpTestCase, http_listener, make_config, wait_until

DOMAIN = "drover.test"


class ClusterTemplateTest(HttpTestCase):

    def setUp(self):
        super().setUp()
        # Two services, each one replica on its own loopback address, both on the same port.
        self.users = self.backend(HttpOrigin("users", host="127.0.0.2"))
        self.orders = self.backend(HttpOrigin("orders", host="127.0.0.3", port=self.users.port))
        self.dns = Dnsmasq({f"users.{DOMAIN}": ["127.0.0.2"], f"orders.{DOMAIN}": ["127.0.0.3"],
                            f"extra.{DOMAIN}": ["127.0.0.3"]})
        self.addCleanup(self.dns.cleanup)

    def start(self, max_clusters=10, idle_timeout="30s"):
        template = {"name": "svc",
                    "discovery": {"dns": {"name": "{host}", "type": "a", "port": self.users.port,
                                          "servers": [self.dns.addr], "refresh": {"min": "100ms", "max": "1s"}}},
                    "load_balancing": "round_robin",
                    "dynamic": {"max_clusters": max_clusters, "idle_timeout": idle_timeout}}
        routes = [{"match": {"host": f"*.{DOMAIN}"}, "cluster_template": "svc"}]
        drover = self.start_drover(make_config([http_listener("web", routes)], [template]))
        return drover, drover.listener_addr("web")

    def cluster_names(self, drover):
        return sorted(c["name"] for c in drover.admin_json("/clusters")["clusters"])

    def test_each_host_gets_its_own_cluster_on_first_use(self):
        drover, addr = self.start()
        self.assertEqual(drover.admin_get("/ready").status, 200)   # templates are not "unresolved"
        self.assertEqual(self.cluster_names(drover), [])
        self.assertEqual(self.get(addr, "/a", host=f"users.{DOMAIN}").status, 200)
        self.assertEqual(self.get(addr, "/b", host=f"orders.{DOMAIN}:8080").status, 200)
        self.assertEqual(len(self.users.requests), 1)
        self.assertEqual(len(self.orders.requests), 1)
        self.assertEqual(self.cluster_names(drover), [f"svc/orders.{DOMAIN}", f"svc/users.{DOMAIN}"])
        # Later requests reuse the cluster.
        self.assertEqual(self.get(addr, "/c", host=f"USERS.{DOMAIN}").status, 200)
        self.assertEqual(len(self.users.requests), 2)
        self.assertEqual(len(self.cluster_names(drover)), 2)

    def test_absolute_form_requests_route_by_their_authority(self):
        drover, addr = self.start()
        conn = self.client(addr)
        conn.send(f"GET http://users.{DOMAIN}/via-proxy HTTP/1.1\r\nHost: users.{DOMAIN}\r\n\r\n".encode())
        self.assertEqual(conn.read_response("GET").status, 200)
        self.assertEqual(self.users.requests[-1].target, "/via-proxy")

    def test_unknown_service_is_a_prompt_503_and_does_not_unready_the_proxy(self):
        drover, addr = self.start()
        start = time.monotonic()
        resp = self.get(addr, "/", host=f"nosuch.{DOMAIN}")
        self.assertLocalResponse(resp, "no_healthy_host")
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual(drover.admin_get("/ready").status, 200)

    def test_max_clusters_bounds_what_clients_can_make(self):
        drover, addr = self.start(max_clusters=2)
        self.assertEqual(self.get(addr, "/", host=f"users.{DOMAIN}").status, 200)
        self.assertEqual(self.get(addr, "/", host=f"orders.{DOMAIN}").status, 200)
        resp = self.get(addr, "/", host=f"extra.{DOMAIN}")
        self.assertLocalResponse(resp, "too_many_services")   # told apart from an outage
        self.assertIn("max_clusters", resp.body.decode())
        self.assertEqual(drover.metric_value("drover_http_local_responses_total",
                                             {"listener": "web", "reason": "too_many_services"}), 1)
        self.assertEqual(len(self.cluster_names(drover)), 2)

    def test_idle_clusters_are_dropped_and_made_again_when_needed(self):
        drover, addr = self.start(idle_timeout="500ms")
        self.assertEqual(self.get(addr, "/", host=f"users.{DOMAIN}").status, 200)
        wait_until(lambda: self.cluster_names(drover) == [], 10, message="idle dynamic cluster was not dropped")
        self.assertEqual(self.get(addr, "/", host=f"users.{DOMAIN}").status, 200)
        self.assertEqual(self.cluster_names(drover), [f"svc/users.{DOMAIN}"])

    def test_a_cluster_in_use_by_a_long_request_is_not_dropped(self):
        # idle_timeout counts from the end of the last request, and never while one is in flight.
        drover, addr = self.start(idle_timeout="500ms")
        result = {}
        slow = threading.Thread(target=lambda: result.setdefault(
            "resp", self.get(addr, "/slow?delay=1.6", host=f"users.{DOMAIN}", timeout=10)), daemon=True)
        slow.start()
        wait_until(lambda: self.cluster_names(drover) == [f"svc/users.{DOMAIN}"], 5, message="cluster made")
        time.sleep(1.2)   # more than two idle timeouts into the request (per_try_timeout is 2 s)
        self.assertEqual(self.cluster_names(drover), [f"svc/users.{DOMAIN}"])
        slow.join(10)
        self.assertEqual(result["resp"].status, 200)
        self.assertEqual(self.cluster_names(drover), [f"svc/users.{DOMAIN}"])   # idle from now on
        wait_until(lambda: self.cluster_names(drover) == [], 10, message="idle dynamic cluster was not dropped")

    def test_hosts_that_are_not_service_names_are_refused(self):
        drover, addr = self.start()
        for host in ("[::1]", f"x..{DOMAIN}", f"-x.{DOMAIN}", f"x-.{DOMAIN}", f"{'a' * 64}.{DOMAIN}"):
            with self.subTest(host=host):
                start = time.monotonic()
                resp = self.get(addr, "/", host=host)
                self.assertEqual(resp.status, 404)
                self.assertLess(time.monotonic() - start, 2, "refused at once, not after waiting for DNS")
        self.assertEqual(self.cluster_names(drover), [])


if __name__ == "__main__":
    unittest.main()
