"""Hot reload (SIGHUP, POST /reload) through the real binary: routes and cluster settings change without
a dropped request, clusters keep their hosts' health and counters, new clusters come and old ones go,
and a bad file or a change that needs a restart is refused with file:line while the old config runs on."""

import signal
import threading
import time
import unittest

from harness import HttpTestCase, http_listener, make_config, route, static_cluster, to_yaml, wait_until
from test_health import Switchable


class ReloadTest(HttpTestCase):

    def config(self, routes, clusters, **extra):
        return make_config([http_listener("web", routes)], clusters, workers=2, **extra)

    def rewrite(self, drover, config):
        with open(drover.config_path, "w", encoding="utf-8") as f:
            f.write(config if isinstance(config, str) else to_yaml(config))

    def reloads(self, drover, result):
        return drover.metric_value("drover_config_reloads_total", {"result": result}, default=0)

    def test_a_new_route_and_cluster_take_effect_under_load_without_a_failed_request(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        first = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(first)
        addr = drover.listener_addr("web")
        failures, done, sent = [], threading.Event(), [0]

        def load():   # keep-alive traffic all along; every answer must be a 200
            conn = self.client(addr)
            while not done.is_set():
                resp = conn.request("GET", "/x")
                sent[0] += 1
                if resp.status != 200:
                    failures.append(resp.status)
        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        second = self.config([route("b", path_prefix="/b/"), route("a", path_prefix="/")],
                             [static_cluster("a", [a]), static_cluster("b", [b])])
        self.rewrite(drover, second)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("1 added", resp.text)
        wait_until(lambda: self.get(addr, "/b/1").header("x-backend") == "b", 5, message="the new route serves b")
        time.sleep(0.3)
        done.set()
        for t in threads:
            t.join(5)
        self.assertEqual(failures, [])
        self.assertGreater(sent[0], 20)
        self.assertEqual(self.reloads(drover, "success"), 1)
        self.assertEqual(drover.admin_json("/config")["listeners"][0]["routes"][0]["cluster"], "b")

    def test_changed_settings_keep_the_hosts_health_and_counters(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        clusters = [static_cluster("app", [a, b], load_balancing="round_robin", retries={"attempts": 0},
                                   outlier_detection={"consecutive_failures": 2, "base_ejection_time": "60s"})]
        drover = self.start_drover(self.config([route("app", path_prefix="/")], clusters))
        addr = drover.listener_addr("web")
        b.status = 500
        conn = self.client(addr)
        for i in range(6):
            conn.request("GET", f"/{i}")
        hosts = lambda: {h["address"]: h for h in drover.admin_json("/clusters")["clusters"][0]["hosts"]}
        wait_until(lambda: hosts()[b.addr]["state"] == "ejected", 3, message="b ejected")
        served_by_a = hosts()[a.addr]["connections_total"]
        clusters[0]["retries"] = {"attempts": 1, "per_try_timeout": "500ms"}
        self.rewrite(drover, self.config([route("app", path_prefix="/")], clusters))
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("1 cluster updated", resp.text)
        after = hosts()
        self.assertEqual(after[b.addr]["state"], "ejected", "the ejection survived the reload")
        self.assertGreaterEqual(after[a.addr]["connections_total"], served_by_a)
        self.assertEqual(drover.admin_json("/config")["clusters"][0]["retries"]["per_try_timeout"], "500ms")

    def test_a_request_in_flight_finishes_under_the_settings_it_started_with(self):
        slow = Switchable(self, "slow")
        slow.delay = 0.8
        clusters = [static_cluster("app", [slow], retries={"budget": "20%"},
                                   adaptive_concurrency={"min_limit": 2, "max_limit": 50})]
        drover = self.start_drover(self.config([route("app", path_prefix="/")], clusters))
        addr = drover.listener_addr("web")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("resp", self.get(addr, "/slow")), daemon=True)
        t.start()
        wait_until(lambda: slow.count() == 1, 3, message="request in flight")
        # Every per-worker piece a reload can replace: the retry budget, the adaptive limiter, the checks.
        clusters[0]["retries"] = {"budget": "50%"}
        clusters[0]["adaptive_concurrency"] = {"min_limit": 4, "max_limit": 100}
        clusters[0]["health_check"] = {"interval": "600ms", "tcp": {}}
        self.rewrite(drover, self.config([route("app", path_prefix="/")], clusters))
        self.assertEqual(drover.admin_post("/reload").status, 200)
        t.join(5)
        self.assertEqual(result["resp"].status, 200)
        self.assertEqual(self.get(addr, "/after").status, 200)
        self.assertGreaterEqual(drover.metric_value("drover_cluster_concurrency_limit", {"cluster": "app"}), 4)

    def test_a_bad_file_is_refused_with_file_and_line_and_the_old_config_keeps_serving(self):
        a = Switchable(self, "a")
        drover = self.start_drover(self.config([route("a", path_prefix="/")], [static_cluster("a", [a])]))
        addr = drover.listener_addr("web")
        good = open(drover.config_path, encoding="utf-8").read()
        self.rewrite(drover, good.replace("clusters:", "clusters:\n  - name: broken\n    helth_check: {}\n", 1))
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("drover.yaml:", resp.text)
        self.assertIn("helth_check", resp.text)
        self.assertEqual(self.get(addr, "/").status, 200)
        self.assertEqual(self.reloads(drover, "failure"), 1)
        # SIGHUP takes the same path: refused, logged with file:line, still serving.
        mark = drover.log_mark()
        drover.send_signal(signal.SIGHUP)
        drover.wait_for_log(r"SIGHUP: reload refused", 5, start=mark)
        drover.wait_for_log(r"drover\.yaml:\d+:\d+", 5, start=mark)
        self.assertEqual(self.get(addr, "/").status, 200)
        wait_until(lambda: self.reloads(drover, "failure") == 2, 3, message="second failure counted")

    def test_a_listener_change_needs_a_restart_and_is_refused(self):
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        config["listeners"][0]["timeouts"] = {"idle": "5s"}
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("listener web", resp.text)
        self.assertIn("restart", resp.text)

    def test_sighup_applies_a_good_file_and_a_removed_cluster_goes(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        drover = self.start_drover(self.config([route("b", path_prefix="/b/"), route("a", path_prefix="/")],
                                               [static_cluster("a", [a]), static_cluster("b", [b])]))
        addr = drover.listener_addr("web")
        self.assertEqual(self.get(addr, "/b/").header("x-backend"), "b")
        self.rewrite(drover, self.config([route("a", path_prefix="/")], [static_cluster("a", [a])]))
        mark = drover.log_mark()
        drover.send_signal(signal.SIGHUP)
        drover.wait_for_log(r"SIGHUP: config reloaded .*1 removed", 5, start=mark)
        self.assertEqual(self.get(addr, "/b/").header("x-backend"), "a")
        wait_until(lambda: [c["name"] for c in drover.admin_json("/clusters")["clusters"]] == ["a"], 3,
                   message="cluster b gone from /clusters")


if __name__ == "__main__":
    unittest.main()
