"""Hot reload (SIGHUP, POST /reload) through the real binary: routes and cluster settings change without
a dropped request, clusters keep their hosts' health and counters, new clusters come and old ones go,
and listeners are added, removed or changed on their sockets, and a bad file or a change that needs a restart is refused with file:line while the old config runs on."""

import os
import signal
import socket
import threading
import time
import unittest

from harness import (HttpTestCase, PeerClosed, format_addr, http_listener, make_config, route, run_drover, static_cluster,
                     to_yaml, wait_until)


def port_accepts(addr):
    try:
        with socket.create_connection(addr, timeout=1):
            return True
    except OSError:
        return False
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
        self.assertIn("clusters: 1 updated", resp.text)
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

    def test_a_cluster_with_new_discovery_is_counted_as_replaced(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        config["clusters"] = [static_cluster("a", [b]), static_cluster("extra", [a])]
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("clusters: 0 updated, 1 replaced, 1 added, 0 removed", resp.text)
        addr = drover.listener_addr("web")
        wait_until(lambda: self.get(addr, "/").header("x-backend") == "b", 5, message="the replaced cluster serves b")

    def test_a_truncated_file_is_refused_and_every_listener_stays(self):
        a = Switchable(self, "a")
        drover = self.start_drover(self.config([route("a", path_prefix="/")], [static_cluster("a", [a])]))
        addr = drover.listener_addr("web")
        good = open(drover.config_path, encoding="utf-8").read()
        self.rewrite(drover, good[:good.index("listeners:")])
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("no listeners", resp.text)
        self.assertEqual(self.get(addr, "/").status, 200)

    def test_a_listener_changes_settings_on_the_same_socket(self):
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        addr = drover.listener_addr("web")
        kept = self.client(addr)
        self.assertEqual(kept.request("GET", "/", headers={"x-big": "y" * 3000}).status, 200)
        config["listeners"][0]["limits"] = {"max_request_header_bytes": "2KiB"}
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("listeners: 1 updated", resp.text)
        # The same socket, the new limit for new connections.
        self.assertLocalResponse(self.get(addr, "/", headers={"x-big": "y" * 3000}), "headers_too_large", 431)
        self.assertEqual(self.get(addr, "/").status, 200)
        # A connection that was up keeps the settings it started with.
        self.assertEqual(kept.request("GET", "/", headers={"x-big": "y" * 3000}).status, 200)

    def test_listeners_come_and_go(self):
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        web = drover.listener_addr("web")
        idle = self.client(web)
        self.assertEqual(idle.request("GET", "/").status, 200)
        busy = self.client(web)
        a.delay = 0.8
        busy.send_request("GET", "/in-flight")
        wait_until(lambda: a.count() == 2, 3, message="request in flight")
        config["listeners"] = [http_listener("api", [route("a", path_prefix="/")])]
        mark = drover.log_mark()
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("listeners: 0 updated, 1 added, 1 removed", resp.text)
        m = drover.wait_for_log(r"listener api listening on (\S+)", 5, start=mark)
        api = tuple(m.group(1).rsplit(":", 1))
        self.assertEqual(self.get((api[0], int(api[1])), "/").status, 200)
        # The removed listener accepts nothing new; a connection it had finishes the request it was
        # serving, says Connection: close and closes; an idle one closes at once (as in a drain).
        wait_until(lambda: not port_accepts(web), 3, message="the removed listener stops accepting")
        self.assertClosedPromptly(idle.sock)
        resp = busy.read_response("GET", timeout=5)
        self.assertEqual(resp.status, 200)
        self.assertIn("close", resp.tokens("connection"))
        self.assertClosedPromptly(busy.sock)
        self.assertEqual(len(drover.admin_json("/listeners")["listeners"]), 1)

    def test_a_listener_moves_to_the_wildcard_address_of_its_port(self):
        # 127.0.0.1:P -> 0.0.0.0:P: the new socket must bind while the old one, which this reload
        # closes, still listens (the port in-use check must not count Drover's own listener).
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        port = drover.listener_addr("web")[1]
        config["listeners"] = [http_listener("web", [route("a", path_prefix="/")], address=f"0.0.0.0:{port}")]
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertIn("listeners: 0 updated, 1 added, 1 removed", resp.text)
        # A connection the kernel queued on the old socket just before it closed is reset (a listener
        # that goes drops its accept queue): the new one serves from then on.
        def served():
            try:
                return self.get(("127.0.0.1", port), "/").status == 200
            except (PeerClosed, OSError):
                return False
        wait_until(served, 5, message="the listener on 0.0.0.0 serves")
        self.assertEqual(self.get(("127.0.0.1", port), "/").status, 200)

    def test_a_listener_on_a_port_in_use_refuses_the_reload(self):
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        web = drover.listener_addr("web")
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)   # as another Drover's are
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        config["listeners"].append(http_listener("busy", [route("a", path_prefix="/")],
                                                 address=f"127.0.0.1:{busy.getsockname()[1]}"))
        config["clusters"].append(static_cluster("extra", [a]))
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn(f"cannot listen on 127.0.0.1:{busy.getsockname()[1]}: Address already in use", resp.text)
        self.assertNotIn("boost", resp.text)
        # Nothing of the file was applied.
        self.assertEqual([c["name"] for c in drover.admin_json("/clusters")["clusters"]], ["a"])
        self.assertEqual(self.get(web, "/").status, 200)

    def test_a_port_another_process_holds_on_another_address_refuses_the_reload(self):
        # Drover listens on 127.0.0.2:P; someone else (with SO_REUSEPORT, as another Drover) holds
        # 127.0.0.1:P. A reload adding 127.0.0.1:P must not join that socket's group and take half
        # of its connections: Drover's own socket on P is on another address.
        a = Switchable(self, "a")
        other = socket.socket()
        self.addCleanup(other.close)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        config["listeners"] = [http_listener("web", [route("a", path_prefix="/")], address=f"127.0.0.2:{port}")]
        drover = self.start_drover(config)
        config["listeners"].append(http_listener("taken", [route("a", path_prefix="/")], address=f"127.0.0.1:{port}"))
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}: Address already in use", resp.text)
        self.assertEqual(self.get(("127.0.0.2", port), "/").status, 200)

    def test_a_fifo_at_the_config_path_is_refused_without_blocking(self):
        a = Switchable(self, "a")
        drover = self.start_drover(self.config([route("a", path_prefix="/")], [static_cluster("a", [a])]))
        os.unlink(drover.config_path)
        os.mkfifo(drover.config_path)   # nobody writes: opening it to read would wait forever
        resp = drover.admin_post("/reload", timeout=5)
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("not a regular file", resp.text)
        self.assertEqual(drover.admin_get("/live").status, 200)   # the control loop goes on

    def test_workers_auto_for_as_many_as_run_is_no_change(self):
        a = Switchable(self, "a")
        cores = os.cpu_count()
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        config["workers"] = cores
        drover = self.start_drover(config)
        config["workers"] = "auto"
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)

    def test_a_worker_count_change_needs_a_restart_and_is_refused(self):
        a = Switchable(self, "a")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a])])
        drover = self.start_drover(config)
        before = drover.admin_json("/config")["workers"]
        config["workers"] = before + 1
        config["access_log"] = {"path": "stderr"}
        self.rewrite(drover, config)
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        # Each names where in the file, and the running value and the new one.
        self.assertRegex(resp.text, rf"drover\.yaml:\d+:\d+: workers changed from {before} to {before + 1}: "
                                    r"that needs a restart")
        self.assertRegex(resp.text, r"drover\.yaml:\d+:\d+: access_log changed from off to stderr: that needs a restart")

    def test_drover_reload_says_whether_the_running_drover_took_the_file(self):
        a, b = Switchable(self, "a"), Switchable(self, "b")
        config = self.config([route("a", path_prefix="/")], [static_cluster("a", [a]), static_cluster("b", [b])])
        drover = self.start_drover(config)
        admin = format_addr(drover.admin_address)
        config["listeners"][0]["routes"] = [route("b", path_prefix="/")]
        self.rewrite(drover, config)
        done = run_drover(["--reload", "--admin", admin])
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("reloaded: ", done.stdout)
        self.assertEqual(self.get(drover.listener_addr("web"), "/").header("x-backend"), "b")
        with open(drover.config_path, "a", encoding="utf-8") as f:
            f.write("no_such_key: 1\n")
        refused = run_drover(["--reload", f"--admin={admin}"])
        self.assertEqual(refused.returncode, 1)
        self.assertRegex(refused.stderr, r"drover\.yaml:\d+:\d+: .*no_such_key")
        # Nothing listening there: said so, exit 1.
        nobody = run_drover(["--reload", "--admin", "127.0.0.1:1"])
        self.assertEqual(nobody.returncode, 1)
        self.assertIn("cannot reach the admin endpoint at 127.0.0.1:1", nobody.stderr)
        self.assertEqual(run_drover(["--reload", "-c", drover.config_path]).returncode, 2)

    def test_a_request_held_for_a_cluster_a_reload_removes_is_answered_at_once(self):
        from test_health import FAST_CHECK
        down, up = Switchable(self, "down"), Switchable(self, "up")
        down.health_status = 500   # never healthy: requests for it are held
        drover = self.start_drover(self.config([route("a", path_prefix="/")],
                                               [static_cluster("a", [down], health_check=FAST_CHECK, hold_timeout="8s"),
                                                static_cluster("b", [up])]))
        addr = drover.listener_addr("web")
        result = {}

        def held():
            started = time.monotonic()
            result["status"] = self.get(addr, "/held", timeout=10).status
            result["took"] = time.monotonic() - started
        thread = threading.Thread(target=held, daemon=True)
        thread.start()
        wait_until(lambda: drover.metric_value("drover_cluster_held_requests_active", {"cluster": "a"}, default=0) == 1,
                   5, message="the request held")
        self.rewrite(drover, self.config([route("b", path_prefix="/")], [static_cluster("b", [up])]))
        self.assertEqual(drover.admin_post("/reload").status, 200)
        thread.join(5)
        self.assertEqual(result.get("status"), 503)
        self.assertLess(result["took"], 4, "not held to hold_timeout for a cluster that is gone")
        self.assertEqual(self.get(addr, "/next").header("x-backend"), "up")

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
