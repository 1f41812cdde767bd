"""Chaos: SIGSTOP one of three replicas for 3 s under steady load (it accepts connections but never
answers), then SIGCONT.

Asserts: no GET failed; none slower than per_try_timeout + slack (a request stuck on the stopped replica
is retried elsewhere after per_try_timeout); the replica takes traffic again after SIGCONT."""

import unittest

from chaos import LATENCY_SLACK, PER_TRY_TIMEOUT, ChaosTestCase, out_of_rotation

RECOVERY_BOUND = 3.0   # SIGCONT -> first request it answers (health check + ejection expiry + slow start)


class BlackHoleTest(ChaosTestCase):
    def test_stop_and_continue_one_replica(self):
        (a, b, c), drover, poller, load = self.three_replicas_under_load()

        load.run_for(3.0)
        stopped = b.stop()
        self.note("SIGSTOP b", stopped)
        load.run_for(3.0)
        resumed = b.cont()
        self.note("SIGCONT b", resumed)
        load.run_for(3.5)
        load.stop()

        # Observations first (they go into the failure summary), then the assertions.
        out = poller.first_time(b.addr, stopped, out_of_rotation)
        if out is not None:
            self.note(f"/clusters showed b out of rotation {out - stopped:.3f}s after SIGSTOP", out)
        healthy = poller.first_healthy(b.addr, after=resumed)
        if healthy is not None:
            self.note(f"/clusters showed b healthy+eligible {healthy - resumed:.3f}s after SIGCONT", healthy)
        # Answered by b and sent after SIGCONT: requests queued while it was stopped (answered late,
        # to connections drover gave up on) do not count.
        back = load.to_backend("b", after=resumed)
        if back:
            self.note(f"b answered a request sent {back[0].start - resumed:.3f}s after SIGCONT", back[0].start)

        self.assertNoFailures(load)
        self.assertMaxLatency(load, PER_TRY_TIMEOUT + LATENCY_SLACK)
        self.assertGreater(len(load.to_backend("b", after=0)), 50, "b took no traffic before SIGSTOP")
        self.assertTrue(back, f"b took no traffic in the {load.stopped_at - resumed:.1f}s after SIGCONT "
                              f"(/clusters: {poller.state(b.addr)})")
        self.assertLessEqual(back[0].start - resumed, RECOVERY_BOUND)


if __name__ == "__main__":
    unittest.main()
