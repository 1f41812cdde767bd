"""`drover --demo`: the proxy in front of three embedded replicas, steered through the admin API."""

import re
import threading
import time
import unittest

from harness import (DEMO_REPLICA_RE, LISTENER_LISTENING_RE, DroverTestCase, http_request, parse_addr,
                     wait_until)

REPLICA_ID_RE = re.compile(r"demo replica (\d+)")


class DemoTest(DroverTestCase):

    def setUp(self):
        super().setUp()
        self.drover = self.start_drover(
            None, args=["--demo", "--demo-listen", "127.0.0.1:0", "--demo-admin", "127.0.0.1:0"])
        self.addr = parse_addr(self.drover.wait_for_log(LISTENER_LISTENING_RE, 5).group(2))
        self.replicas = {}
        for n in (1, 2, 3):
            m = self.drover.wait_for_log(rf"demo replica {n} listening on (\S+)", 5)
            self.replicas[n] = m.group(1)

    def get(self):
        """One request through the demo listener; returns the id of the replica that answered."""
        resp = http_request(self.addr, "GET", "/", host="demo", timeout=5)
        self.assertEqual(resp.status, 200, resp.raw[:500])
        m = REPLICA_ID_RE.search(resp.text)
        self.assertIsNotNone(m, f"no 'demo replica <n>' in the body: {resp.text!r}")
        return int(m.group(1))

    def replica_state(self, n):
        for replica in self.drover.admin_json("/demo")["replicas"]:
            if replica["id"] == n:
                return replica["state"]
        raise AssertionError(f"replica {n} not in /demo")

    def test_starts_with_the_contract_log_lines(self):
        lines = self.drover.stderr_lines
        self.assertEqual(len([l for l in lines if DEMO_REPLICA_RE.search(l)]), 3, lines)
        self.assertEqual(len([l for l in lines if LISTENER_LISTENING_RE.search(l)]), 1, lines)

    def test_every_replica_answers(self):
        seen = [self.get() for _ in range(9)]
        self.assertEqual(set(seen), {1, 2, 3}, seen)

    def test_stopped_replica_gets_no_traffic_until_started(self):
        self.assertEqual(self.drover.admin_post("/demo/replicas/2/stop").status, 200)
        wait_until(lambda: self.replica_state(2) == "down", 5, message="replica 2 shown down")
        seen = [self.get() for _ in range(9)]  # every request succeeds (asserted in get)...
        self.assertNotIn(2, seen)              # ...and none from the stopped replica
        self.assertEqual(self.drover.admin_post("/demo/replicas/2/start").status, 200)
        wait_until(lambda: self.replica_state(2) == "up", 5, message="replica 2 shown up")
        wait_until(lambda: self.get() == 2, 10, message="replica 2 answers again")

    def test_every_replica_down_then_one_back_holds_the_request_instead_of_failing_it(self):
        for n in (1, 2, 3):
            self.assertEqual(self.drover.admin_post(f"/demo/replicas/{n}/stop").status, 200)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("resp", http_request(self.addr, "GET", "/", host="demo",
                                                                                   timeout=10)), daemon=True)
        t.start()
        time.sleep(0.5)
        self.assertEqual(self.drover.admin_post("/demo/replicas/1/start").status, 200)
        t.join(10)
        self.assertEqual(result["resp"].status, 200, result["resp"].raw[:300])
        self.assertIn("demo replica 1", result["resp"].text)

    def test_demo_json(self):
        served = [self.get() for _ in range(6)]
        replicas = self.drover.admin_json("/demo")["replicas"]
        self.assertEqual([r["id"] for r in replicas], [1, 2, 3])
        for r in replicas:
            self.assertEqual(r["address"], self.replicas[r["id"]])
            self.assertEqual(r["state"], "up")
            self.assertIsInstance(r["requests"], int)

        def counted():  # a replica may count a request just after answering it
            replicas = self.drover.admin_json("/demo")["replicas"]
            return all(r["requests"] >= served.count(r["id"]) for r in replicas)
        wait_until(counted, 5, message=lambda: f"/demo {self.drover.admin_get('/demo').text} after serving {served}")

    def test_replica_admin_errors(self):
        self.assertEqual(self.drover.admin_get("/demo/replicas/2/stop").status, 405)
        self.assertEqual(self.drover.admin_post("/demo").status, 405)


if __name__ == "__main__":
    unittest.main()
