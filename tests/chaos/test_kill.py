"""Chaos: SIGKILL one of three replicas under steady load, restart it on the same port.

Asserts: no GET failed; none slower than per_try_timeout + slack; after the restart the replica takes
traffic within 0.5 s of /clusters first showing it healthy and eligible again."""

import time
import unittest

from chaos import LATENCY_SLACK, PER_TRY_TIMEOUT, ChaosTestCase, out_of_rotation


class KillTest(ChaosTestCase):
    def test_kill_and_restart_one_replica(self):
        (a, b, c), drover, poller, load = self.three_replicas_under_load()

        load.run_for(3.0)
        killed = b.kill()
        self.note("SIGKILL b", killed)
        load.run_for(3.0)
        restarted = time.time()
        b.restart()
        self.note(f"b restarted on port {b.port} ({time.time() - restarted:.3f}s to listen)", restarted)
        load.run_for(4.0)
        load.stop()

        # Observations first (they go into the failure summary), then the assertions.
        out = poller.first_time(b.addr, killed, out_of_rotation)
        if out is not None:
            self.note(f"/clusters showed b out of rotation {out - killed:.3f}s after SIGKILL", out)
        healthy = poller.first_healthy(b.addr, after=restarted)
        if healthy is not None:
            self.note(f"/clusters showed b healthy+eligible {healthy - restarted:.3f}s after the restart", healthy)
        first = b.first_request(restarted)
        if first is not None:
            self.note(f"b logged its first proxied request {first - restarted:.3f}s after the restart"
                      + (f" ({first - healthy:+.3f}s from healthy)" if healthy is not None else ""), first)

        self.assertNoFailures(load)
        self.assertMaxLatency(load, PER_TRY_TIMEOUT + LATENCY_SLACK)
        self.assertGreater(len(load.to_backend("b", after=0)), 50, "b took no traffic before the kill")
        self.assertIsNotNone(healthy, f"/clusters never showed b healthy+eligible after the restart "
                                      f"(last: {poller.state(b.addr)})")
        self.assertIsNotNone(first, "the restarted replica took no traffic")
        self.assertLessEqual(first - healthy, 0.5,
                             f"restarted replica took its first request {first - healthy:.3f}s after "
                             f"/clusters showed it healthy")


if __name__ == "__main__":
    unittest.main()
