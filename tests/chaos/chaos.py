"""Chaos-suite pieces on top of tests/integration/harness.py (imported from ../integration).

  * `ChaosBackend`: `chaos_backend.py` in its own process (normal | sick | midclose), with SIGKILL /
    SIGSTOP / SIGCONT, mode switches (SIGUSR1 -> sick, SIGUSR2 -> normal), restart on the same port, and
    its per-request log (`requests()`: (time.time(), method, path)); optionally a fixed-capacity replica
    (`capacity` requests at once, `service_time` seconds each; restarts keep both).
  * `LoadClient`: K threads, each with its own keep-alive http.client connection to drover, sending GETs
    at a paced aggregate rate and recording every request (`Result`).
  * `ClustersPoller`: polls admin `/clusters` and records every host state change with a timestamp.
  * `ChaosTestCase`: a DroverTestCase that owns all of the above (cleanup on every path) and appends a
    compact summary (counts, slowest requests, errors, host state timeline, backend logs) to failures
    (CHAOS_SUMMARY=1 prints it for passing tests too).
  * `chaos_config`: the common drover config of the scenarios.

All timestamps are wall-clock `time.time()` so client results, backend logs and /clusters samples compare.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass
from typing import Any, Callable, Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402  (path set up above)
from harness import (DroverTestCase, http_listener, make_config, route, static_cluster,  # noqa: E402,F401
                     wait_until)

BACKEND_SCRIPT = os.path.join(HERE, "chaos_backend.py")

# The common cluster settings of the scenarios (seconds where the tests compute with them).
PER_TRY_TIMEOUT = 0.3
HOLD_TIMEOUT = 5.0
LATENCY_SLACK = 0.35
CLUSTER_SETTINGS: dict[str, Any] = {
    "load_balancing": "round_robin",
    "health_check": {"interval": "200ms", "unhealthy_interval": "100ms", "timeout": "150ms",
                     "healthy_threshold": 1, "unhealthy_threshold": 2, "http": {"path": "/healthz"}},
    "outlier_detection": {"consecutive_failures": 2, "base_ejection_time": "2s"},
    "retries": {"attempts": 2, "per_try_timeout": "300ms", "budget": "50%"},
    "slow_start": "1s",
    "hold_timeout": "5s",
    "timeouts": {"connect": "200ms", "request": "5s"},
}


def chaos_config(backends: Iterable[Any], *, workers: int = 2, **cluster_overrides: Any) -> dict:
    """One HTTP listener `web` routing everything to cluster `app` (static: the backends)."""
    cluster = static_cluster("app", backends, **{**CLUSTER_SETTINGS, **cluster_overrides})
    return make_config([http_listener("web", [route("app")])], [cluster], workers=workers)


# --------------------------------------------------------------------------------------------------
# Backends in their own processes


class ChaosBackend:
    """One `chaos_backend.py` process on 127.0.0.1. `restart()` starts a new one on the same port (by
    default one outside the ephemeral range: `harness.restartable_port`); the request log file (one per
    backend, appended to by every incarnation) survives restarts."""

    def __init__(self, backend_id: str, mode: str = "normal", *, log_dir: str, port: int | None = None,
                 start_timeout: float = 5.0, capacity: int = 0, service_time: float = 0.0):
        self.id = backend_id
        self.mode = mode
        self.capacity = capacity            # chaos_backend.py --capacity (0: no limit)
        self.service_time = service_time    # chaos_backend.py --service-time (seconds)
        self.log_path = os.path.join(log_dir, f"{backend_id}.log")
        self.stderr_path = os.path.join(log_dir, f"{backend_id}.stderr")
        self.port = harness.restartable_port() if port is None else port
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.events: list[tuple[float, str]] = []   # (time, what): start/kill/stop/cont/...
        self._cached_log: list[tuple[float, str, str]] | None = None
        self._cached_stderr: str | None = None
        self.start(mode)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, mode: str | None = None) -> None:
        """Starts the process without waiting for it (pair with `wait_started`): restart several at once."""
        assert not self.running(), f"backend {self.id} already running"
        if mode is not None:
            self.mode = mode
        self._cached_log = self._cached_stderr = None
        # stderr to a file, not a pipe nobody reads (a full pipe would block the backend).
        with open(self.stderr_path, "a", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, BACKEND_SCRIPT, "--port", str(self.port), "--id", self.id, "--mode", self.mode,
                 "--log", self.log_path]
                + (["--capacity", str(self.capacity)] if self.capacity else [])
                + (["--service-time", repr(float(self.service_time))] if self.service_time else []),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)

    def wait_started(self) -> None:
        """Waits for `port N`. A restart may briefly find the port busy: retried until the deadline."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc is not None
            box: list[str] = []
            proc = self.proc
            reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
            reader.start()
            reader.join(max(0.1, deadline - time.monotonic()))
            m = re.fullmatch(r"port (\d+)\n", box[0]) if box else None
            if m:
                port = int(m.group(1))
                assert self.port in (0, port), f"backend {self.id} bound {port}, wanted {self.port}"
                self.port = port
                self.events.append((time.time(), f"started ({self.mode}, pid {proc.pid})"))
                return
            try:
                proc.wait(1.0)   # a failed bind exits at once
            except subprocess.TimeoutExpired:
                pass
            self._reap(signal.SIGKILL)
            err = self.stderr_tail()
            if time.monotonic() >= deadline or "Address already in use" not in err:
                raise RuntimeError(f"backend {self.id} did not start on port {self.port}: {box!r} {err!r}")
            time.sleep(0.05)
            self.spawn()

    def start(self, mode: str | None = None) -> None:
        self.spawn(mode)
        self.wait_started()

    restart = start

    def signal(self, sig: int, what: str | None = None) -> float:
        """Sends `sig`; returns the time it was sent (also recorded in `events`)."""
        assert self.proc is not None and self.proc.poll() is None, f"backend {self.id} is not running"
        now = time.time()
        self.proc.send_signal(sig)
        self.events.append((now, what or signal.Signals(sig).name))
        return now

    def kill(self, wait: bool = True) -> float:
        """SIGKILL (and reap, unless `wait` is False: then call `reap()`); returns when it was sent."""
        t = self.signal(signal.SIGKILL, "SIGKILL")
        if wait:
            self._reap(None)
        return t

    def reap(self) -> None:
        self._reap(None)

    def stop(self) -> float:
        return self.signal(signal.SIGSTOP, "SIGSTOP")

    def cont(self) -> float:
        return self.signal(signal.SIGCONT, "SIGCONT")

    def set_mode(self, mode: str) -> float:
        """Switches a running backend between normal and sick (SIGUSR2 / SIGUSR1)."""
        assert mode in ("normal", "sick")
        self.mode = mode
        return self.signal(signal.SIGUSR1 if mode == "sick" else signal.SIGUSR2, f"mode {mode}")

    def _reap(self, sig: int | None) -> None:
        proc = self.proc
        if proc is None:
            return
        if sig is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass

    def cleanup(self) -> None:
        """Kills it (SIGCONT first, in case it is stopped) and keeps its log in memory."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._reap(signal.SIGKILL)
        self._cached_log = self._read_log()
        self._cached_stderr = self.stderr_tail()

    def stderr_tail(self, n: int = 500) -> str:
        if self._cached_stderr is not None:
            return self._cached_stderr[-n:]
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def _read_log(self) -> list[tuple[float, str, str]]:
        out = []
        try:
            with open(self.log_path, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3:
                        out.append((float(parts[0]), parts[1], parts[2]))
        except FileNotFoundError:
            pass
        return out

    def requests(self, since: float = 0.0, include_health: bool = False) -> list[tuple[float, str, str]]:
        """(time, method, path) of the requests it logged at or after `since`; health checks excluded
        unless `include_health`."""
        lines = self._cached_log if self._cached_log is not None else self._read_log()
        return [r for r in lines if r[0] >= since and (include_health or not r[2].startswith("/healthz"))]

    def first_request(self, since: float) -> float | None:
        reqs = self.requests(since)
        return reqs[0][0] if reqs else None

    def __repr__(self) -> str:
        return f"<ChaosBackend {self.id} {self.addr} {self.mode}>"


# --------------------------------------------------------------------------------------------------
# Load


@dataclass
class Result:
    start: float          # time.time() when the request was sent
    end: float            # when the response was complete (or the error seen)
    status: int | None    # None: no response (error)
    backend: str | None   # x-backend header
    error: str | None     # None: a complete response with the expected body
    path: str
    thread: int

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


class LoadClient:
    """`threads` client threads, each with its own keep-alive HTTPConnection to `addr`, sending
    `GET /chaos/<thread>/<seq>` at an aggregate `rate` per second (each thread paced at rate/threads;
    a late thread does not burst to catch up). A response counts as complete only if it carries
    x-backend and its body is exactly what chaos_backend sends (`<id> <path>\\n`); anything else is an
    error. On any error the connection is dropped and the thread reconnects."""

    def __init__(self, addr: tuple[str, int], rate: float = 180.0, threads: int = 4, timeout: float = 10.0):
        self.addr = addr
        self.rate = rate
        self.nthreads = threads
        self.timeout = timeout
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def start(self) -> "LoadClient":
        self.started_at = time.time()
        period = self.nthreads / self.rate
        for i in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(i, period, i * period / self.nthreads),
                                 name=f"load-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        """Stops sending and waits for in-flight requests (bounded by the client timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 2.0)
        if self.stopped_at is None:
            self.stopped_at = time.time()

    def run_for(self, seconds: float) -> None:
        """Sleeps while the load runs (checks that the client threads are alive)."""
        time.sleep(seconds)
        dead = [t.name for t in self._threads if not t.is_alive()]
        assert not dead, f"load threads died: {dead}"

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.addr[0], self.addr[1], timeout=self.timeout)

    def _run(self, index: int, period: float, offset: float) -> None:
        conn: http.client.HTTPConnection | None = None
        seq = 0
        next_at = time.monotonic() + offset
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            next_at += period
            if next_at < time.monotonic() - period:
                next_at = time.monotonic()
            seq += 1
            path = f"/chaos/{index}/{seq}"
            if conn is None:
                conn = self._connect()
            start = time.time()
            status = backend = error = None
            try:
                conn.request("GET", path, headers={"Host": "chaos.test"})
                resp = conn.getresponse()
                status = resp.status
                backend = resp.getheader("x-backend")
                body = resp.read()
                if status == 200:
                    expected = f"{backend} {path}\n".encode()
                    if backend is None:
                        error = f"200 without x-backend ({len(body)} body bytes)"
                    elif body != expected:
                        error = f"200 with a wrong body: {body[:60]!r} ({len(body)} bytes)"
                else:
                    error = f"HTTP {status}: {body[:80]!r}"
                if resp.will_close or error is not None:
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
                self.results.append(Result(start, end, status, backend, error, path, index))
        if conn is not None:
            conn.close()

    # -- queries ---------------------------------------------------------------------------------------

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def failures(self, since: float = 0.0) -> list[Result]:
        return [r for r in self.snapshot() if not r.ok and r.start >= since]

    def max_latency(self) -> float:
        return max((r.latency for r in self.snapshot()), default=0.0)

    def slowest(self, n: int = 5) -> list[Result]:
        return sorted(self.snapshot(), key=lambda r: r.latency, reverse=True)[:n]

    def to_backend(self, backend_id: str, after: float = 0.0, ok_only: bool = True) -> list[Result]:
        """Requests sent at or after `after` that backend `backend_id` answered."""
        return [r for r in self.snapshot()
                if r.backend == backend_id and r.start >= after and (r.ok or not ok_only)]

    def counts(self) -> collections.Counter:
        """(status or error kind, backend) -> count."""
        c: collections.Counter = collections.Counter()
        for r in self.snapshot():
            kind = "ok" if r.ok else (r.error or "?").split(":")[0].split("(")[0]
            c[(r.status, r.backend, kind)] += 1
        return c

    def summary(self, t0: float | None = None, n_slowest: int = 5, n_errors: int = 12) -> str:
        results = self.snapshot()
        base = t0 if t0 is not None else (self.started_at or 0.0)
        lines = [f"load: {len(results)} requests, {sum(r.ok for r in results)} ok, "
                 f"{sum(not r.ok for r in results)} failed, max latency {self.max_latency():.3f}s"]
        for (status, backend, kind), n in sorted(self.counts().items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:6d}  status={status} backend={backend} {kind}")
        lines.append(f"slowest {n_slowest}:")
        for r in self.slowest(n_slowest):
            lines.append(f"  t={r.start - base:7.3f}s  {r.latency:.3f}s  {r.path}  status={r.status} "
                         f"backend={r.backend} error={r.error}")
        errs = [r for r in results if not r.ok]
        if errs:
            lines.append(f"first {min(n_errors, len(errs))} of {len(errs)} failures:")
            for r in errs[:n_errors]:
                lines.append(f"  t={r.start - base:7.3f}s  {r.latency:.3f}s  {r.path}  status={r.status} "
                             f"backend={r.backend} error={r.error}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# /clusters


def in_rotation(state: Any, eligible: Any) -> bool:
    """A /clusters host that takes traffic: healthy and eligible."""
    return state == "healthy" and eligible is True


def out_of_rotation(state: Any, eligible: Any) -> bool:
    """A /clusters host that takes no traffic: not healthy, or explicitly not eligible."""
    return state is not None and (state != "healthy" or eligible is False)


class ClustersPoller:
    """Polls `GET /clusters` every `interval` on a thread; records (time, address, state, eligible)
    whenever a host's (state, eligible) changes, plus poll errors."""

    def __init__(self, drover: harness.Drover, cluster: str = "app", interval: float = 0.02):
        self.drover = drover
        self.cluster = cluster
        self.interval = interval
        self.changes: list[tuple[float, str, str | None, Any]] = []
        self.errors: list[tuple[float, str]] = []
        self.polls = 0
        self._last: dict[str, tuple[Any, Any]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clusters-poller", daemon=True)
        self._thread.start()

    def hosts(self) -> dict[str, dict]:
        data = self.drover.admin_json("/clusters")
        for c in data.get("clusters", []):
            if c.get("name") == self.cluster:
                return {h.get("address"): h for h in c.get("hosts", [])}
        raise AssertionError(f"no cluster {self.cluster!r} in /clusters: {data!r}")

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            try:
                hosts = self.hosts()
            except Exception as exc:  # noqa: BLE001 - recorded, polling goes on
                with self._lock:
                    if not self.errors or self.errors[-1][1] != repr(exc):
                        self.errors.append((now, repr(exc)))
                hosts = None
            if hosts is not None:
                with self._lock:
                    self.polls += 1
                    for addr, h in hosts.items():
                        key = (h.get("state"), h.get("eligible"))
                        if self._last.get(addr) != key:
                            self._last[addr] = key
                            self.changes.append((now, addr, key[0], key[1]))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def first_time(self, addr: str, after: float, pred: Callable[[Any, Any], bool]) -> float | None:
        """Time of the first recorded change at or after `after` to a (state, eligible) of `addr` that
        satisfies pred(state, eligible); or `after` itself if the state holding then already does."""
        with self._lock:
            changes = [c for c in self.changes if c[1] == addr]
        before = [c for c in changes if c[0] < after]
        if before and pred(before[-1][2], before[-1][3]):
            return after
        for t, _, s, e in changes:
            if t >= after and pred(s, e):
                return t
        return None

    def first_healthy(self, addr: str, after: float) -> float | None:
        """First time at or after `after` that /clusters showed `addr` healthy and eligible."""
        return self.first_time(addr, after, in_rotation)

    def state(self, addr: str) -> tuple[Any, Any] | None:
        with self._lock:
            return self._last.get(addr)

    def timeline(self, t0: float, names: dict[str, str] | None = None) -> str:
        with self._lock:
            changes = list(self.changes)
            errors = list(self.errors)
            polls = self.polls
        names = names or {}
        lines = [f"/clusters ({polls} polls): host state changes"]
        for t, a, s, e in changes:
            lines.append(f"  t={t - t0:7.3f}s  {names.get(a, a)} ({a})  state={s} eligible={e}")
        for t, err in errors[:5]:
            lines.append(f"  t={t - t0:7.3f}s  poll error: {err}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# unittest glue


class ChaosTestCase(DroverTestCase):
    """Starts backends, drover, load and the /clusters poller through helpers that register cleanup, and
    appends a compact chaos summary to the report of a failing test."""

    def setUp(self) -> None:
        super().setUp()
        self.t0 = time.time()
        self.dir = tempfile.mkdtemp(prefix="drover-chaos-")
        self.addCleanup(shutil.rmtree, self.dir, True)   # registered first: runs last
        self.backends: list[ChaosBackend] = []
        self.loads: list[LoadClient] = []
        self.pollers: list[ClustersPoller] = []
        self.notes: list[tuple[float, str]] = []

    def note(self, text: str, at: float | None = None) -> None:
        """A line for the failure summary, stamped with `at` (the time of what it describes) or now."""
        self.notes.append((at if at is not None else time.time(), text))

    def chaos_backend(self, backend_id: str, mode: str = "normal", **kw: Any) -> ChaosBackend:
        """kw: ChaosBackend options (capacity, service_time)."""
        b = ChaosBackend(backend_id, mode, log_dir=self.dir, **kw)
        self.backends.append(b)
        self.addCleanup(b.cleanup)
        return b

    def start_chaos_drover(self, backends: list[ChaosBackend], **kw: Any) -> harness.Drover:
        drover = self.start_drover(chaos_config(backends, **kw))
        return drover

    def clusters_poller(self, drover: harness.Drover) -> ClustersPoller:
        p = ClustersPoller(drover)
        self.pollers.append(p)
        self.addCleanup(p.stop)
        return p

    def load(self, drover: harness.Drover, **kw: Any) -> LoadClient:
        client = LoadClient(drover.listener_addr("web"), **kw)
        self.loads.append(client)
        self.addCleanup(client.stop)
        return client.start()

    def three_replicas_under_load(self) -> tuple[list[ChaosBackend], harness.Drover, ClustersPoller, LoadClient]:
        """The common start of a scenario: replicas a, b, c behind drover, all healthy, steady load on."""
        backends = [self.chaos_backend(n) for n in "abc"]
        drover = self.start_chaos_drover(backends)
        poller = self.clusters_poller(drover)
        self.wait_all_healthy(poller, backends)
        return backends, drover, poller, self.load(drover)

    def wait_all_healthy(self, poller: ClustersPoller, backends: list[ChaosBackend], timeout: float = 5.0) -> None:
        def all_healthy() -> bool:
            return all(poller.state(b.addr) == ("healthy", True) for b in backends)
        wait_until(all_healthy, timeout,
                   message=lambda: "every host healthy and eligible in /clusters: "
                                   + ", ".join(f"{b.id}={poller.state(b.addr)}" for b in backends))

    # -- assertions ------------------------------------------------------------------------------------

    def assertNoFailures(self, load: LoadClient, ignore: list[Result] = ()) -> None:
        """No request failed, but those in `ignore` (failures the test accounts for itself)."""
        fails = [r for r in load.failures() if r not in ignore]
        if fails:
            first = fails[0]
            self.fail(f"{len(fails)} of {len(load.results)} requests failed; first at "
                      f"t={first.start - self.t0:.3f}s: {first.path} status={first.status} "
                      f"backend={first.backend} error={first.error}")

    def assertMaxLatency(self, load: LoadClient, bound: float) -> None:
        worst = load.slowest(1)
        if worst and worst[0].latency > bound:
            slow = [r for r in load.snapshot() if r.latency > bound]
            self.fail(f"{len(slow)} requests slower than {bound:.2f}s; slowest {worst[0].latency:.3f}s "
                      f"({worst[0].path} at t={worst[0].start - self.t0:.3f}s, backend={worst[0].backend}, "
                      f"error={worst[0].error})")

    # -- report ----------------------------------------------------------------------------------------

    def chaos_summary(self) -> str:
        names = {b.addr: b.id for b in self.backends}
        parts = [f"\n--- chaos summary (t=0 at test start; drover {os.environ.get('DROVER_BIN')}) ---"]
        parts += [f"t={t - self.t0:7.3f}s  {text}" for t, text in sorted(self.notes, key=lambda n: n[0])]
        for load in self.loads:
            parts.append(load.summary(self.t0))
        for b in self.backends:
            reqs = b.requests(include_health=True)
            traffic = [r for r in reqs if not r[2].startswith("/healthz")]
            ev = ", ".join(f"{what}@{t - self.t0:.3f}s" for t, what in b.events)
            first = f"{traffic[0][0] - self.t0:.3f}s" if traffic else "-"
            last = f"{traffic[-1][0] - self.t0:.3f}s" if traffic else "-"
            parts.append(f"backend {b.id} {b.addr}: {len(traffic)} requests (first {first}, last {last}), "
                         f"{len(reqs) - len(traffic)} health checks; events: {ev}")
            err = b.stderr_tail(400).strip()
            if err:
                parts.append(f"  backend {b.id} stderr (tail): {err}")
        for p in self.pollers:
            parts.append(p.timeline(self.t0, names))
        return "\n".join(parts) + "\n"

    def run(self, result: unittest.TestResult | None = None):  # type: ignore[override]
        if result is None:
            return super().run(result)
        before_f, before_e = len(result.failures), len(result.errors)
        outcome = super().run(result)
        if os.environ.get("CHAOS_SUMMARY"):   # the summary of passing tests too, on stderr
            sys.stderr.write(self.chaos_summary())
        for bucket, before in ((result.failures, before_f), (result.errors, before_e)):
            for i in range(before, len(bucket)):
                test, text = bucket[i]
                if test is self or getattr(test, "test_case", None) is self:
                    try:
                        summary = self.chaos_summary()
                    except Exception as exc:  # noqa: BLE001 - never hide the real failure
                        summary = f"\n(chaos summary failed: {exc!r})\n"
                    bucket[i] = (test, text + summary)
        return outcome
