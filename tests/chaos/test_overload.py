"""Chaos: overload. Losing one of three fixed-capacity replicas turns a steady load into 3x what the
survivors can serve; drover must keep admitted requests at their normal latency and refuse the excess at
once and explicitly (503, `drover-error: shed`, `Retry-After`), not let queues grow.

Replicas: `chaos_backend.py --capacity 2 --service-time 0.1` (2 requests at a time, 100 ms each: 20 req/s
per replica, 60 req/s for three, 40 for two). Load: OPEN loop at 120 req/s (requests leave on schedule
whatever the answers do, so overload shows as queueing or shedding, never as a client that slows down).
Drover: least_request, `limits: { max_requests_per_host: 2, max_pending: 16, queue_timeout: 50ms }`.
Phases: 5 s all three up (pre-fault: 120 on 60, about half is shed already, and that is expected),
SIGKILL b, 6 s (fault: 120 on 40), b restarted on its port, 5 s (recovered).

Asserts (each bound is explained where it is checked, in `check_scenario`):
  * the setup held: the client sent on schedule (send lag p99 <= 25 ms, >= 97% of 120/s), and the fault
    goodput is <= 110% of 40/s (the replicas really enforce their capacity);
  * pre-fault goodput >= 90% of 60/s (drover fills every slot; this makes the baseline meaningful);
  * fault goodput (skipping its first second) >= 90% of the survivors' 40/s;
  * fault p99 of the 200s <= max(2 x pre-fault p99, pre-fault p99 + 50 ms);
  * every non-200 is a 503 `drover-error: shed` (`no_healthy_host` allowed in the first second after the
    kill) with a positive-integer Retry-After; no client timeouts or connection errors; p99 latency of
    the 503s <= queue_timeout + 100 ms;
  * from 1 s after /clusters shows b healthy+eligible again, the shed fraction of every second is within
    10 percentage points of the pre-fault shed fraction.
On failure the report has a per-second table (offered, 200s, shed, other, latency percentiles) on top of
the usual chaos summary and drover's stderr tail. `OverloadToolsTest` self-tests the capacity replica and
the open-loop client without drover.
"""

from __future__ import annotations

import http.client
import math
import queue
import re
import threading
import time
import unittest
from dataclasses import dataclass
from typing import Any, Iterable

from chaos import ChaosTestCase, out_of_rotation
from harness import HttpBackend

CAPACITY = 2              # requests a replica serves at once
SERVICE_TIME = 0.1        # seconds each takes: 20 req/s per replica
RATE = 120.0              # offered req/s: 2x the capacity of three, 3x the capacity of two
QUEUE_TIMEOUT = 0.05      # limits.queue_timeout below, in seconds
PRE_FAULT, FAULT, RECOVERED = 5.0, 6.0, 5.0   # phase lengths (s)

OVERLOAD_SETTINGS: dict[str, Any] = {
    "load_balancing": "least_request",
    "health_check": {"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms",
                     "healthy_threshold": 1, "unhealthy_threshold": 2, "http": {"path": "/healthz"}},
    "limits": {"max_requests_per_host": CAPACITY, "max_pending": 16, "queue_timeout": "50ms"},
    "retries": {"attempts": 2, "per_try_timeout": "1s"},
}
RETRY_AFTER_RE = re.compile(r"[1-9][0-9]*")


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `values`; None when empty."""
    v = sorted(values)
    if not v:
        return None
    return v[max(0, math.ceil(q * len(v)) - 1)]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


# --------------------------------------------------------------------------------------------------
# Open-loop load


@dataclass
class Shot:
    seq: int
    due: float                 # time.time() the schedule said to send it
    start: float               # when it was actually sent
    end: float                 # when the response was complete (or the error seen)
    status: int | None         # None: no response
    backend: str | None        # x-backend
    retry_after: str | None    # Retry-After header
    drover_error: str | None   # drover-error header
    error: str | None          # client-side failure: no/incomplete response, or a 200 with a wrong body
    worker: int

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def lag(self) -> float:
        """How late the client sent it (open loop: should stay ~0 whatever drover does)."""
        return self.start - self.due

    @property
    def kind(self) -> str:
        """ok | 503 <drover-error> | error | other."""
        if self.error is not None:
            return "error"
        if self.status == 200 and self.drover_error is None:
            return "ok"
        if self.status == 503:
            return f"503 {self.drover_error}"
        return "other"


class OpenLoopClient:
    """Sends `GET <prefix>/<seq>` at a fixed `rate` whatever the answers do: a dispatcher thread hands each
    request, on schedule, to a pool of worker threads that each keep their own keep-alive connection. The
    pool starts at `workers` and grows (up to `max_workers`) whenever more requests are outstanding than
    there are workers, so a slow answer never delays the next request; a dispatcher that falls behind
    sends the missed ones at once (no skipping). `lag` of each Shot shows how well the schedule held."""

    def __init__(self, addr: tuple[str, int], rate: float, *, workers: int = 16, max_workers: int = 256,
                 timeout: float = 5.0, prefix: str = "/overload"):
        self.addr = addr
        self.rate = rate
        self.max_workers = max_workers
        self.timeout = timeout
        self.prefix = prefix
        self.results: list[Shot] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None    # when the dispatcher stopped sending
        self.sent = 0
        self.peak_outstanding = 0
        self._initial_workers = workers
        self._workers: list[threading.Thread] = []
        self._jobs: queue.Queue = queue.Queue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="open-loop-dispatch", daemon=True)

    def start(self) -> "OpenLoopClient":
        for _ in range(self._initial_workers):
            self._spawn()
        self._t0_mono, self.started_at = time.monotonic(), time.time()   # request k is due at t0 + k/rate
        self._dispatcher.start()
        return self

    def run_for(self, seconds: float) -> None:
        time.sleep(seconds)
        assert self._dispatcher.is_alive(), "the open-loop dispatcher died"

    def stop(self) -> None:
        """Stops sending, then waits for the requests in flight (bounded by the client timeout)."""
        self._stop.set()
        if self._dispatcher.is_alive():
            self._dispatcher.join(5.0)
        with self._lock:
            workers = list(self._workers)
        for _ in workers:
            self._jobs.put(None)
        deadline = time.monotonic() + self.timeout + 5.0
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))

    def _spawn(self) -> None:
        t = threading.Thread(target=self._work, args=(len(self._workers),), name=f"open-loop-{len(self._workers)}",
                             daemon=True)
        self._workers.append(t)
        t.start()

    def _dispatch(self) -> None:
        t0_mono, t0_wall = self._t0_mono, self.started_at
        period = 1.0 / self.rate
        seq = 0
        while True:
            due = t0_mono + seq * period
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._stop.is_set():
                break
            seq += 1
            with self._lock:
                self._outstanding += 1
                self.peak_outstanding = max(self.peak_outstanding, self._outstanding)
                if self._outstanding > len(self._workers) and len(self._workers) < self.max_workers:
                    self._spawn()
            self._jobs.put((seq, t0_wall + (due - t0_mono)))
        self.sent = seq
        self.stopped_at = time.time()

    def _work(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            job = self._jobs.get()
            if job is None:
                break
            seq, due = job
            path = f"{self.prefix}/{seq}"
            if conn is None:
                conn = http.client.HTTPConnection(self.addr[0], self.addr[1], timeout=self.timeout)
            status = backend = retry_after = drover_error = error = None
            start = time.time()
            try:
                conn.request("GET", path, headers={"Host": "chaos.test"})
                resp = conn.getresponse()
                status = resp.status
                backend = resp.getheader("x-backend")
                retry_after = resp.getheader("retry-after")
                drover_error = resp.getheader("drover-error")
                body = resp.read()
                if status == 200 and body != f"{backend} {path}\n".encode():
                    error = f"200 with a wrong body: {body[:60]!r} ({len(body)} bytes, x-backend {backend})"
                if resp.will_close:
                    conn.close()
                    conn = None
            except http.client.IncompleteRead as exc:
                error = f"IncompleteRead({len(exc.partial)} bytes read, {exc.expected} more expected)"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            end = time.time()
            if error is not None and conn is not None:
                conn.close()
                conn = None
            with self._lock:
                self.results.append(Shot(seq, due, start, end, status, backend, retry_after, drover_error, error,
                                         index))
                self._outstanding -= 1
        if conn is not None:
            conn.close()

    def snapshot(self) -> list[Shot]:
        with self._lock:
            return sorted(self.results, key=lambda r: r.seq)

    def summary(self, t0: float | None = None) -> str:
        res = self.snapshot()
        base = t0 if t0 is not None else (self.started_at or 0.0)
        kinds: dict[str, int] = {}
        for r in res:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        lines = [f"open-loop load at {self.rate:g}/s: {self.sent} sent, {len(res)} answered or failed; "
                 f"{len(self._workers)} workers, peak {self.peak_outstanding} outstanding; "
                 f"send lag p99 {ms(percentile((r.lag for r in res), 0.99))} ms, "
                 f"max {ms(max((r.lag for r in res), default=None))} ms"]
        lines += [f"  {n:6d}  {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])]
        bad = [r for r in res if r.kind not in ("ok", "503 shed")]
        if bad:
            lines.append(f"first {min(10, len(bad))} of {len(bad)} answers other than 200 / 503 shed:")
            for r in bad[:10]:
                lines.append(f"  t={r.start - base:7.3f}s {r.latency:.3f}s #{r.seq} status={r.status} "
                             f"drover-error={r.drover_error} retry-after={r.retry_after} backend={r.backend} "
                             f"error={r.error}")
        return "\n".join(lines)


def per_second_table(results: list[Shot], t0: float, start: float, end: float,
                     phases: list[tuple[float, str]]) -> str:
    """One row per second of sending from `start` to `end` (by send time; t relative to `t0`). `phases`:
    (time, name); a row is labelled with the phase in force at its start, then `>name` for any phase that
    begins within it."""
    lines = ["per second (by send time; t = start of the row since test start; shed% = non-200s / offered)",
             "      t  phase                   offered   200  shed  nhh  other  shed%  200 p50/p99 ms  503 p99 ms"]
    phases = sorted(phases)
    n = int(math.ceil(end - start))
    for i in range(n):
        lo, hi = start + i, min(start + i + 1, end)
        rows = [r for r in results if lo <= r.start < hi]
        ok = [r for r in rows if r.kind == "ok"]
        shed = [r for r in rows if r.kind == "503 shed"]
        nhh = [r for r in rows if r.kind == "503 no_healthy_host"]
        other = len(rows) - len(ok) - len(shed) - len(nhh)
        label = ([name for t, name in phases if t <= lo] or ["-"])[-1]
        label += "".join(f">{name}" for t, name in phases if lo < t < hi)
        frac = f"{100 * (len(rows) - len(ok)) / len(rows):5.1f}" if rows else "    -"
        lat = [r.latency for r in ok]
        lat503 = [r.latency for r in rows if r.status == 503]
        lines.append(f"{lo - t0:7.2f}  {label:22s}  {len(rows):7d}  {len(ok):4d}  {len(shed):4d}  {len(nhh):3d}  "
                     f"{other:5d}  {frac}  {ms(percentile(lat, 0.5)):>5s}/{ms(percentile(lat, 0.99)):<5s}      "
                     f"{ms(percentile(lat503, 0.99)):>5s}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The scenario


class OverloadTest(ChaosTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.phases: list[tuple[float, str]] = []   # (time, name) for the per-second table

    def chaos_summary(self) -> str:
        text = super().chaos_summary()
        loads = [x for x in self.loads if isinstance(x, OpenLoopClient) and x.started_at is not None]
        for load in loads:    # also when the test failed half-way
            end = load.stopped_at or time.time()
            text += per_second_table(load.snapshot(), self.t0, load.started_at, end, self.phases) + "\n"
        return text

    def open_loop(self, addr: tuple[str, int], rate: float, **kw: Any) -> OpenLoopClient:
        client = OpenLoopClient(addr, rate, **kw)
        self.loads.append(client)            # its summary() goes into the chaos summary
        self.addCleanup(client.stop)
        return client.start()

    def test_shed_excess_when_a_replica_is_lost(self):
        a, b, c = (self.chaos_backend(n, capacity=CAPACITY, service_time=SERVICE_TIME) for n in "abc")
        drover = self.start_chaos_drover([a, b, c], **OVERLOAD_SETTINGS)
        poller = self.clusters_poller(drover)
        self.wait_all_healthy(poller, [a, b, c])
        load = self.open_loop(drover.listener_addr("web"), RATE)
        load_start = load.started_at
        self.phases.append((load_start, "pre"))

        load.run_for(PRE_FAULT)
        killed = b.kill()
        self.phases.append((killed, "fault"))
        self.note("SIGKILL b", killed)
        load.run_for(FAULT)
        restarted = time.time()
        self.phases.append((restarted, "restart"))
        b.restart()
        self.note(f"b restarted on port {b.port} ({time.time() - restarted:.3f}s to listen)", restarted)
        load.run_for(RECOVERED)
        load.stop()
        load_end = load.stopped_at

        out = poller.first_time(b.addr, killed, out_of_rotation)
        if out is not None:
            self.note(f"/clusters showed b out of rotation {out - killed:.3f}s after SIGKILL", out)
        healthy = poller.first_healthy(b.addr, after=restarted)
        if healthy is not None:
            self.note(f"/clusters showed b healthy+eligible {healthy - restarted:.3f}s after the restart", healthy)
            self.phases.append((healthy, "healthy"))
        results = load.snapshot()
        self.check_scenario(load, results, load_start, killed, restarted, healthy, load_end)

    def check_scenario(self, load: OpenLoopClient, results: list[Shot], load_start: float, killed: float,
                       restarted: float, healthy: float | None, load_end: float) -> None:
        def window(lo: float, hi: float) -> list[Shot]:
            return [r for r in results if lo <= r.start < hi]

        def goodput(rows: list[Shot], seconds: float) -> float:
            return sum(r.kind == "ok" for r in rows) / seconds

        def shed_fraction(rows: list[Shot]) -> float:
            return sum(r.kind != "ok" for r in rows) / len(rows)

        # --- the load itself was open loop at the intended rate (else nothing below means anything) -------
        span = load_end - load_start
        self.assertGreaterEqual(load.sent, 0.97 * RATE * span, f"the client sent {load.sent} in {span:.2f}s")
        self.assertEqual(len(results), load.sent, "requests the client sent but never recorded")
        lag99 = percentile((r.lag for r in results), 0.99)
        # 25 ms: a few Python thread switches on a loaded 2-core box. A client that waited for answers
        # would lag by the 50-150 ms of a drover answer at once.
        self.assertLessEqual(lag99, 0.025, f"client send lag p99 {lag99 * 1000:.0f} ms: not open loop")

        # --- windows ---------------------------------------------------------------------------------------
        # pre-fault: skip the first second (connections opening, the queue filling for the first time) and
        # the last 0.2 s before the kill (service time + queue timeout + margin: requests then may be in
        # flight on b when it dies and take a retry).
        pre_lo, pre_hi = load_start + 1.0, killed - 0.2
        # fault: skip its first second (b still in rotation until the checks / outlier detection notice;
        # its requests are retried elsewhere), up to the restart.
        fault_lo, fault_hi = killed + 1.0, restarted
        pre, fault = window(pre_lo, pre_hi), window(fault_lo, fault_hi)
        self.assertGreaterEqual(len(pre), 300)
        self.assertGreaterEqual(len(fault), 500)
        pre_ok = [r.latency for r in pre if r.kind == "ok"]
        fault_ok = [r.latency for r in fault if r.kind == "ok"]
        pre_good, fault_good = goodput(pre, pre_hi - pre_lo), goodput(fault, fault_hi - fault_lo)
        pre_frac, fault_frac = shed_fraction(pre), shed_fraction(fault)
        pre_p99, fault_p99 = percentile(pre_ok, 0.99), percentile(fault_ok, 0.99)
        self.note(f"pre-fault: {pre_good:.1f} 200/s, shed {100 * pre_frac:.1f}%, 200 p50/p99 "
                  f"{ms(percentile(pre_ok, 0.5))}/{ms(pre_p99)} ms ({len(pre_ok)} samples)", pre_lo)
        self.note(f"fault: {fault_good:.1f} 200/s, shed {100 * fault_frac:.1f}%, 200 p50/p99 "
                  f"{ms(percentile(fault_ok, 0.5))}/{ms(fault_p99)} ms ({len(fault_ok)} samples)", fault_lo)

        # --- every answer: a 200, or an explicit, fast, well-formed refusal --------------------------------
        errors = [r for r in results if r.error is not None]
        self.assertFalse(errors, f"{len(errors)} client-side failures (timeouts, connection errors, bad "
                                 f"bodies); first: #{errors[0].seq if errors else ''} "
                                 f"{errors[0].error if errors else ''}")
        for r in results:
            if r.kind == "ok":
                continue
            allowed = {"shed"} | ({"no_healthy_host"} if killed <= r.end <= killed + 1.0 else set())
            self.assertTrue(r.status == 503 and r.drover_error in allowed,
                            f"#{r.seq} at t={r.start - self.t0:.3f}s: status {r.status}, drover-error "
                            f"{r.drover_error!r} (want 503 with one of {sorted(allowed)})")
            self.assertTrue(r.retry_after is not None and RETRY_AFTER_RE.fullmatch(r.retry_after.strip()),
                            f"#{r.seq} at t={r.start - self.t0:.3f}s: 503 {r.drover_error} with Retry-After "
                            f"{r.retry_after!r} (want a positive integer of seconds)")
        # Shed answers are fast: at most queue_timeout waiting for a slot, plus 100 ms for drover and a
        # Python client on a shared 2-core box. p99, so the handful of requests caught in flight on b when
        # it died (reset, retried, then shed: up to 100 + 25 + 50 ms) do not count; over the run there are
        # >1000 of them.
        refused = [r.latency for r in results if r.status == 503 and r.start >= pre_lo]
        self.assertGreaterEqual(len(refused), 100, "too few 503s to judge: was the load really 2x capacity?")
        shed99 = percentile(refused, 0.99)
        self.note(f"503s: p50/p99 {ms(percentile(refused, 0.5))}/{ms(shed99)} ms ({len(refused)} samples)")
        self.assertLessEqual(shed99, QUEUE_TIMEOUT + 0.1,
                             f"p99 latency of the 503s {shed99 * 1000:.0f} ms > queue_timeout + 100 ms: the "
                             f"excess waits instead of being refused at once")

        # --- pre-fault: drover fills the capacity it has ----------------------------------------------------
        # 90% of 3 x 2 / 0.1 s = 54/s: each slot idles only for the round trip between a response and the
        # next queued request (~1-2 ms of 100). This also makes the recovery baseline below meaningful: with
        # it the pre-fault shed fraction is <= 55%, while the fault phase must shed >= 2/3 (40 of 120 served at
        # most): the recovery check below (within 10 points of pre-fault) cannot pass on a fault-level shed.
        full = 3 * CAPACITY / SERVICE_TIME
        self.assertGreaterEqual(pre_good, 0.9 * full,
                                f"pre-fault goodput {pre_good:.1f}/s < 90% of the replicas' {full:.0f}/s")

        # --- fault: the survivors are used fully, and admitted requests stay at normal latency -------------
        survivors = 2 * CAPACITY / SERVICE_TIME
        self.assertGreaterEqual(fault_good, 0.9 * survivors,
                                f"fault goodput {fault_good:.1f}/s < 90% of the survivors' {survivors:.0f}/s")
        # Sanity of the setup, not of drover: more than the survivors can serve means the replicas are not
        # enforcing their capacity (so there would be no overload to test).
        self.assertLessEqual(fault_good, 1.1 * survivors, f"fault goodput {fault_good:.1f}/s: replicas not "
                                                          f"at capacity?")
        # An admitted request waits at most queue_timeout (50 ms) for a slot, then takes 100 ms, in both
        # phases; so the fault p99 should match the pre-fault p99 (~150 ms). 2x allows scheduling noise;
        # the floor of +50 ms keeps the bound sane if the pre-fault p99 were ever tiny. Unbounded queueing
        # would fail it quickly: 16 pending (max_pending) at 40/s is already 400 ms of wait.
        bound = max(2 * pre_p99, pre_p99 + 0.05)
        self.assertGreaterEqual(len(fault_ok), 100)
        self.assertLessEqual(fault_p99, bound,
                             f"fault p99 of the 200s {fault_p99 * 1000:.0f} ms > {bound * 1000:.0f} ms "
                             f"(pre-fault p99 {pre_p99 * 1000:.0f} ms)")

        # --- recovery: once b is back in rotation, shedding returns to its pre-fault level -----------------
        self.assertIsNotNone(healthy, "/clusters never showed b healthy+eligible after the restart")
        # Whole seconds from 1 s after /clusters showed b healthy (the allowance for b's first requests and
        # slow_start) to the end of the load; each second's shed fraction (of ~120 requests) within 10
        # points of the pre-fault one. The fault phase sheds >= 2/3 (only 40 of 120 can be served), so a
        # drover that did not put b back to full use fails this.
        seconds = int(load_end - (healthy + 1.0))
        self.assertGreaterEqual(seconds, 2, "too little load after b returned to judge recovery")
        for i in range(seconds):
            lo = healthy + 1.0 + i
            rows = window(lo, lo + 1.0)
            frac = shed_fraction(rows)
            self.assertLessEqual(frac, pre_frac + 0.10,
                                 f"{100 * frac:.1f}% shed in the second from t={lo - self.t0:.2f}s "
                                 f"({i + 1}.. s after b was healthy again), pre-fault {100 * pre_frac:.1f}%")


# --------------------------------------------------------------------------------------------------
# Self-tests of the tools (no drover)


def timed_get(port: int, path: str, out: list, timeout: float = 5.0) -> None:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        out.append((path, resp.status, body, time.monotonic() - start))
    finally:
        conn.close()


class OverloadToolsTest(ChaosTestCase):
    def test_backend_capacity(self):
        """capacity 2, 0.3 s: of three concurrent requests two take ~0.3 s and one ~0.6 s (it waits for a
        slot); /healthz meanwhile is answered at once; a plain replica answers at once."""
        s = 0.3
        b = self.chaos_backend("cap", capacity=2, service_time=s)
        out: list = []
        threads = [threading.Thread(target=timed_get, args=(b.port, f"/r{i}", out)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        health: list = []
        timed_get(b.port, "/healthz", health)
        for t in threads:
            t.join(5)
        self.assertEqual(health[0][1:3], (200, b"ok"))
        self.assertLess(health[0][3], 0.1, "the health check waited for a capacity slot")
        lat = sorted(x[3] for x in out)
        self.assertEqual([x[1] for x in out], [200] * 3)
        self.assertTrue(all(x[2] == f"cap {x[0]}\n".encode() for x in out), out)
        self.assertTrue(s - 0.02 <= lat[0] <= lat[1] <= s + 0.15, lat)
        self.assertTrue(2 * s - 0.02 <= lat[2] <= 2 * s + 0.2, lat)
        plain = self.chaos_backend("plain")
        out = []
        timed_get(plain.port, "/x", out)
        self.assertEqual(out[0][1:3], (200, b"plain /x\n"))
        self.assertLess(out[0][3], 0.1)

    def test_open_loop_keeps_its_rate_against_a_slow_server(self):
        """100 req/s for 1.5 s at a replica that serves 40/s: the client still sends on schedule (the backlog
        grows inside the replica, and shows as rising latency), and completions run at the replica's 40/s."""
        b = self.chaos_backend("slow", capacity=2, service_time=0.05)
        client = OpenLoopClient(("127.0.0.1", b.port), 100.0, workers=4, timeout=10.0)
        self.loads.append(client)
        self.addCleanup(client.stop)
        client.start()
        client.run_for(1.5)
        client.stop()
        res = client.snapshot()
        span = client.stopped_at - client.started_at
        summary = client.summary(self.t0)
        self.assertLess(abs(client.sent - 100 * span), 0.03 * 100 * span, summary)
        self.assertEqual(len(res), client.sent, summary)
        self.assertTrue(all(r.kind == "ok" and r.backend == "slow" for r in res), summary)
        # 50 ms: here the dispatcher also starts ~90 threads; a closed-loop client would lag by seconds.
        self.assertLessEqual(percentile((r.lag for r in res), 0.99), 0.05, summary)
        self.assertGreater(client.peak_outstanding, 50, summary)    # ~90 queued by the end
        first = [r.latency for r in res if r.start < client.started_at + 0.1]
        last = [r.latency for r in res if r.start > client.started_at + span - 0.2]
        self.assertLess(max(first), 0.2, summary)
        self.assertGreater(min(last), 1.5, summary)                 # ~90 ahead of it at 40/s
        done = sorted(r.end for r in res)
        rate = (len(done) - 1) / (done[-1] - done[0])
        self.assertLess(abs(rate - 40) / 40, 0.15, f"completions at {rate:.1f}/s\n{summary}")

    def test_open_loop_records_refusals(self):
        """A 503 with Retry-After and drover-error is recorded with both headers (and is no client error)."""
        srv = self.backend(HttpBackend("x", responder=lambda h: (503, {"Retry-After": "2", "drover-error": "shed"},
                                                                  b"shed\n")))
        client = OpenLoopClient(srv.address, 50.0, workers=2)
        self.loads.append(client)
        self.addCleanup(client.stop)
        client.start()
        client.run_for(0.3)
        client.stop()
        res = client.snapshot()
        self.assertGreater(len(res), 10)
        self.assertTrue(all((r.kind, r.status, r.retry_after, r.error) == ("503 shed", 503, "2", None)
                            for r in res), client.summary(self.t0))


if __name__ == "__main__":
    unittest.main()
