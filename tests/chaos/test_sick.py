"""Chaos: one of three replicas turns sick under steady load (503 to everything, /healthz included),
then heals.

Asserts: no GET failed (a 503 is retried on another host; the replica is then ejected and marked
unhealthy); none slower than per_try_timeout + slack; /clusters takes it out of rotation within 1 s; after
it heals it takes traffic again."""

import unittest

from chaos import LATENCY_SLACK, PER_TRY_TIMEOUT, ChaosTestCase, out_of_rotation

OUT_OF_ROTATION_BOUND = 1.0
RECOVERY_BOUND = 3.0


class SickTest(ChaosTestCase):
    def test_one_replica_turns_sick_then_heals(self):
        (a, b, c), drover, poller, load = self.three_replicas_under_load()

        load.run_for(2.0)
        sick = b.set_mode("sick")
        self.note("b turns sick (503 to everything)", sick)
        load.run_for(4.0)
        healed = b.set_mode("normal")
        self.note("b heals", healed)
        load.run_for(3.0)
        load.stop()

        # Observations first (they go into the failure summary), then the assertions.
        out = poller.first_time(b.addr, sick, out_of_rotation)
        if out is not None:
            self.note(f"/clusters showed b out of rotation {out - sick:.3f}s after it turned sick", out)
        answered_503 = [r for r in b.requests(since=sick) if r[0] < healed]
        self.note(f"b answered {len(answered_503)} proxied requests with 503 while sick")
        back = load.to_backend("b", after=healed)
        if back:
            self.note(f"b answered a request sent {back[0].start - healed:.3f}s after healing", back[0].start)

        self.assertNoFailures(load)
        self.assertMaxLatency(load, PER_TRY_TIMEOUT + LATENCY_SLACK)
        self.assertIsNotNone(out, f"/clusters never took sick b out of rotation (last: {poller.state(b.addr)})")
        self.assertLessEqual(out - sick, OUT_OF_ROTATION_BOUND, "sick b taken out of rotation too late")
        self.assertTrue(back, f"b took no traffic in the {load.stopped_at - healed:.1f}s after healing "
                              f"(/clusters: {poller.state(b.addr)})")
        self.assertLessEqual(back[0].start - healed, RECOVERY_BOUND)


if __name__ == "__main__":
    unittest.main()
