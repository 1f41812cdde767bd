"""Chaos: SIGKILL all three replicas under steady load, restart them 1.5 s later (within hold_timeout).

Asserts: no request failed (requests are held while no host is available and sent once a host passes
a check) and none took longer than hold_timeout + 1 s."""

import time
import unittest

from chaos import HOLD_TIMEOUT, ChaosTestCase


class AllDownTest(ChaosTestCase):
    def test_all_replicas_die_and_come_back_within_hold_timeout(self):
        backends, drover, poller, load = self.three_replicas_under_load()

        load.run_for(3.0)
        killed = min([b.kill(wait=False) for b in backends])   # all three at once, then reap
        for b in backends:
            b.reap()
        self.note("SIGKILL a, b, c", killed)
        time.sleep(max(0.0, killed + 1.5 - time.time()))
        for b in backends:
            b.spawn()
        for b in backends:
            b.wait_started()
        restarted = time.time()
        self.note("a, b, c listening again", restarted)
        load.run_for(4.0)
        load.stop()

        during = [r for r in load.snapshot() if killed <= r.start <= restarted]
        self.note(f"{len(during)} requests sent while all were down; slowest of them "
                  f"{max((r.latency for r in during), default=0):.3f}s")
        self.assertNoFailures(load)
        self.assertMaxLatency(load, HOLD_TIMEOUT + 1.0)
        for b in backends:
            self.assertTrue(load.to_backend(b.id, after=restarted), f"{b.id} took no traffic after the restart")


if __name__ == "__main__":
    unittest.main()
