"""Chaos: one of three replicas cuts every response mid-body (headers with Content-Length: 1000, 100
bytes, close) while answering /healthz fine, under steady load.

A cut response cannot be retried once bytes reached the client. Asserts: every cut response that reached
the client shows as an error (IncompleteRead / connection error; never a 200 whose short body was
accepted as complete); failures stop after a handful (<= 5: the replica is ejected after consecutive
failures); the other two keep serving (everything they answered is complete and correct)."""

import unittest

from chaos import ChaosTestCase

MAX_FAILURES = 5


class MidCloseTest(ChaosTestCase):
    def test_replica_cutting_responses_is_ejected(self):
        a, m, c = self.chaos_backend("a"), self.chaos_backend("m", "midclose"), self.chaos_backend("c")
        drover = self.start_chaos_drover([a, m, c])
        poller = self.clusters_poller(drover)
        self.wait_all_healthy(poller, [a, m, c])
        load = self.load(drover)
        load.run_for(5.0)
        load.stop()

        results = load.snapshot()
        fails = load.failures()
        cut_sent = m.requests()
        self.note(f"m cut {len(cut_sent)} responses; the client saw {len(fails)} failures")
        # Never a short body accepted as complete: nothing m answered may look successful, and every
        # failure is a cut (read error) or a connection error, not a complete-looking response.
        self.assertEqual([r for r in results if r.backend == "m" and r.ok], [],
                         "a response from the cutting replica was accepted as complete")
        accepted_short = [r for r in fails if r.error and r.error.startswith("200 with")]
        self.assertEqual(accepted_short, [], "a cut response reached the client as a complete 200")
        not_cut = [r for r in fails
                   if not (r.error.startswith("IncompleteRead") or r.status is None)]
        self.assertEqual(not_cut, [], "failures other than cut responses / connection errors")
        self.assertLessEqual(len(fails), len(cut_sent),
                             "more client failures than responses m cut: the others failed requests too")
        # ... and they stop after a handful: m is ejected.
        self.assertLessEqual(len(fails), MAX_FAILURES,
                             f"{len(fails)} cut responses reached the client (m cut {len(cut_sent)})")
        # The other two keep serving.
        for name in ("a", "c"):
            served = load.to_backend(name)
            self.assertGreater(len(served), 0.3 * len(results), f"{name} served only {len(served)} requests")


if __name__ == "__main__":
    unittest.main()
