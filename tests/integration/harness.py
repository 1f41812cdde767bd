"""Integration-test harness: the real drover binary against real backends on loopback.

Standard library plus prometheus_client only (Debian's /usr/bin/python3). Everything here is hermetic
and bounded: sockets bind 127.0.0.1:0, every wait has a deadline, and nothing sleeps to "wait for"
state -- conditions are polled with `wait_until`.

Pieces:
  * `Drover`: writes a config, runs `$DROVER_BIN -c file` (or any argv, e.g. --demo), captures stderr
    and stdout on reader threads, waits for the contract log lines and `GET /ready` == 200, and talks to
    the admin endpoint (`admin_get`, `metrics`, `metric_value`, ...). Always killed on cleanup.
  * Backends (threads): `EchoBackend`, `TaggedBackend`, `BlackHoleBackend`, `ScriptedBackend` (any
    per-connection function), `HttpBackend`; `ClosedPort` (connection refused); `UnresponsivePort`
    (connect times out); `BackendProcess` (a backend in its own process, for kill -9).
  * Client helpers: `connect`, `recv_all`, `recv_exactly`, `transfer`, `wait_closed`, `http_request`.
  * `DroverTestCase`: a unittest base class that registers cleanups and appends the drover stderr
    tail to the report of a failing test.

Run `python3 harness.py backend echo|tagged ID|blackhole` to serve one backend in this process
(prints `port N` on stdout); `BackendProcess` uses it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

# Defaults, in seconds. Generous enough for a loaded CI box, small enough that a hang fails fast.
START_TIMEOUT = 15.0
IO_TIMEOUT = 10.0
ADMIN_TIMEOUT = 5.0
POLL_INTERVAL = 0.02

LOG_TAIL_LINES = 80

# `<UTC ISO time> <level padded to 5> <message>`, e.g. `2024-05-01T12:00:00.123Z info  admin listening on ...`
LOG_LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]00:?00) (debug|info |warn |error) (.*)$")
ADMIN_LISTENING_RE = re.compile(r"admin listening on (\S+)")
LISTENER_LISTENING_RE = re.compile(r"listener (\S+) listening on (\S+)")
DEMO_REPLICA_RE = re.compile(r"demo replica (\d+) listening on (\S+)")


# --------------------------------------------------------------------------------------------------
# Small utilities


def drover_bin() -> str:
    path = os.environ.get("DROVER_BIN")
    if not path:
        raise unittest.SkipTest("DROVER_BIN is not set (path to the drover binary)")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"DROVER_BIN={path} is not an executable file")
    return path


class DroverError(AssertionError):
    """drover did not start, exited early, or never printed an expected line. Carries its stderr."""


def wait_until(pred: Callable[[], Any], timeout: float = 5.0, interval: float = POLL_INTERVAL,
               message: str | Callable[[], str] | None = None) -> Any:
    """Polls `pred` until it returns something truthy (returned) or `timeout` passes (AssertionError).

    Exceptions from `pred` count as "not yet" (the last one is reported on timeout), except
    DroverError: drover is gone, so waiting longer cannot help."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = pred()
            if last_value:
                return last_value
            last_exc = None
        except DroverError:
            raise
        except Exception as exc:  # noqa: BLE001 - polling: anything is "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last_value!r}"
            raise AssertionError(f"condition not met within {timeout:.1f}s: {text or pred}; {detail}")
        time.sleep(interval)


def parse_addr(text: str) -> tuple[str, int]:
    """'127.0.0.1:43567' -> ('127.0.0.1', 43567); '[::1]:43567' -> ('::1', 43567)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise ValueError(f"not an address: {text!r}")
    if m.group(1) is not None:
        return m.group(1), int(m.group(2))
    return m.group(3), int(m.group(4))


def format_addr(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------
# YAML: a tiny block-style emitter for configs built as dicts (tests that need exact line numbers
# write YAML text themselves). The standard library has no YAML and the loader is strict, so keep it
# boring: block mappings and sequences, scalars quoted unless obviously plain.

_PLAIN_SCALAR = re.compile(r"[A-Za-z0-9_./-][A-Za-z0-9_./:%-]*")
_YAML_SPECIAL_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if (_PLAIN_SCALAR.fullmatch(text) and text.lower() not in _YAML_SPECIAL_WORDS
            and not text.endswith(":") and ": " not in text):
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def to_yaml(value: Any, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            elif isinstance(item, (dict, list)):
                out.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}\n")
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")  # first line shares the dash
            elif isinstance(item, (dict, list)):
                out.append(f"{pad}- {'{}' if isinstance(item, dict) else '[]'}\n")
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}\n")
        return "".join(out)
    return pad + _yaml_scalar(value) + "\n"


def tcp_listener(name: str, cluster: str, address: str = "127.0.0.1:0", **extra: Any) -> dict:
    return {"name": name, "address": address, "protocol": "tcp", "cluster": cluster, **extra}


def static_cluster(name: str, hosts: Iterable[Any], **extra: Any) -> dict:
    """hosts: addresses ('127.0.0.1:9001'), backends (anything with .addr), or {address, weight}."""
    static = []
    for host in hosts:
        if isinstance(host, dict):
            static.append(host)
        elif isinstance(host, str):
            static.append(host)
        else:
            static.append(host.addr)
    return {"name": name, "discovery": {"static": static}, **extra}


def make_config(listeners: list[dict], clusters: list[dict], *, workers: int | str | None = 1,
                drain_timeout: str | None = None, log_level: str | None = None, **extra: Any) -> dict:
    config: dict[str, Any] = {"admin": {"address": "127.0.0.1:0"}}
    if workers is not None:
        config["workers"] = workers
    if log_level is not None:
        config["log"] = {"level": log_level}
    if drain_timeout is not None:
        config["shutdown"] = {"drain_timeout": drain_timeout}
    config.update(extra)
    config["listeners"] = listeners
    config["clusters"] = clusters
    return config


# --------------------------------------------------------------------------------------------------
# Running drover


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class _StreamReader:
    """Collects a pipe's lines on a daemon thread; lets callers wait for a line matching a regex."""

    def __init__(self, stream, name: str, echo: bool):
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._stream = stream
        self._echo = echo
        self._name = name
        self._thread = threading.Thread(target=self._run, name=f"drover-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if self._echo:
                    sys.stderr.write(f"[drover {self._name}] {line}\n")
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_for(self, regex: re.Pattern, timeout: float, start: int,
                 on_missing: Callable[[str], BaseException]) -> tuple[re.Match, int]:
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self.lines):
                    m = regex.search(self.lines[index])
                    index += 1
                    if m:
                        return m, index
                if self.closed:
                    raise on_missing("stream closed (process exited?)")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise on_missing(f"not seen within {timeout:.1f}s")
                self._cond.wait(remaining)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Drover:
    """One drover process.

    config: a dict (emitted as YAML), YAML text (written verbatim), or None (no config file, e.g. for
    `--demo`). args: extra argv; with a config, `-c <file>` is added unless `config_args` is given.
    Start waits for `admin listening on`, every expected listener line, and GET /ready == 200.
    """

    def __init__(self, config: dict | str | None = None, *, args: Iterable[str] = (),
                 listeners: Iterable[str] | None = None, wait_ready: bool = True,
                 start_timeout: float = START_TIMEOUT, env: dict[str, str] | None = None,
                 binary: str | None = None):
        self.binary = binary or drover_bin()
        self._tmp = tempfile.TemporaryDirectory(prefix="drover-it-")
        self.dir = self._tmp.name
        self.config_path: str | None = None
        self.config_text: str | None = None
        if config is not None:
            self.config_text = config if isinstance(config, str) else to_yaml(config)
            self.config_path = os.path.join(self.dir, "drover.yaml")
            with open(self.config_path, "w", encoding="utf-8") as f:
                f.write(self.config_text)
        if listeners is None and isinstance(config, dict):
            listeners = [l["name"] for l in config.get("listeners", [])]
        self.expected_listeners = list(listeners or [])
        argv = [self.binary]
        if self.config_path is not None:
            argv += ["-c", self.config_path]
        argv += list(args)
        self.argv = argv
        self.admin_address: tuple[str, int] | None = None
        self.listeners: dict[str, tuple[str, int]] = {}
        self.returncode: int | None = None
        echo = bool(os.environ.get("DROVER_TEST_ECHO"))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.dir,
                                     env={**os.environ, **(env or {})})
        self._stderr = _StreamReader(self.proc.stderr, "stderr", echo)
        self._stdout = _StreamReader(self.proc.stdout, "stdout", echo)
        try:
            self._start(start_timeout, wait_ready)
        except BaseException:
            self.cleanup()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------

    def _start(self, timeout: float, wait_ready: bool) -> None:
        deadline = time.monotonic() + timeout
        m = self.wait_for_log(ADMIN_LISTENING_RE, timeout)
        self.admin_address = parse_addr(m.group(1))
        for name in self.expected_listeners:
            self.listener_addr(name, timeout=max(0.1, deadline - time.monotonic()))
        if wait_ready:
            self.wait_ready(max(0.1, deadline - time.monotonic()))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        def ready() -> bool:
            self._check_running("waiting for GET /ready == 200")
            try:
                return self.admin_get("/ready", timeout=1.0).status == 200
            except OSError:
                return False
        try:
            wait_until(ready, timeout, message="GET /ready == 200")
        except DroverError:
            raise
        except AssertionError as exc:
            raise self._error(str(exc)) from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Waits for the process to exit; returns its exit code. Raises DroverError on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"still running {timeout:.1f}s later") from None
        self._stderr.join(2.0)
        self._stdout.join(2.0)
        return self.returncode

    def cleanup(self) -> None:
        """Kills the process if it still runs, reaps it, closes pipes, removes the temp dir. Idempotent."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._stderr.join(2.0)
        self._stdout.join(2.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self._tmp.cleanup()

    def __enter__(self) -> "Drover":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    # -- logs ----------------------------------------------------------------------------------------

    @property
    def stderr_lines(self) -> list[str]:
        return list(self._stderr.lines)

    @property
    def stdout_lines(self) -> list[str]:
        return list(self._stdout.lines)

    def log_mark(self) -> int:
        """Index of the next stderr line; pass as `start` to wait only for lines printed after now."""
        return len(self._stderr.lines)

    def stderr_tail(self, n: int = LOG_TAIL_LINES) -> str:
        lines = self._stderr.lines[-n:]
        return "\n".join(lines) if lines else "(no stderr output)"

    def wait_for_log(self, regex: str | re.Pattern, timeout: float = 5.0, start: int = 0) -> re.Match:
        """First stderr line at index >= start that matches (re.search); raises DroverError otherwise."""
        pattern = re.compile(regex) if isinstance(regex, str) else regex
        m, _ = self._stderr.wait_for(pattern, timeout, start,
                                     lambda why: self._error(f"log line /{pattern.pattern}/ {why}"))
        return m

    def _check_running(self, doing: str) -> None:
        if self.proc.poll() is not None:
            self._stderr.join(2.0)
            raise self._error(f"exited with code {self.proc.returncode} while {doing}")

    def _error(self, what: str) -> DroverError:
        code = self.proc.poll()
        state = "running" if code is None else f"exit code {code}"
        return DroverError(f"drover ({' '.join(self.argv)}; {state}): {what}\n"
                           f"--- drover stderr (last {LOG_TAIL_LINES} lines) ---\n{self.stderr_tail()}")

    # -- addresses -------------------------------------------------------------------------------------

    def listener_addr(self, name: str, timeout: float = 5.0) -> tuple[str, int]:
        """(host, port) from the `listener <name> listening on <addr>` line (waits for it)."""
        if name not in self.listeners:
            m = self.wait_for_log(re.compile(rf"listener {re.escape(name)} listening on (\S+)"), timeout)
            self.listeners[name] = parse_addr(m.group(1))
        return self.listeners[name]

    def all_listener_addrs(self) -> dict[str, tuple[str, int]]:
        """Every listener line printed so far, by name (for configs whose names the test does not know)."""
        found = {}
        for line in self._stderr.lines:
            m = LISTENER_LISTENING_RE.search(line)
            if m:
                found[m.group(1)] = parse_addr(m.group(2))
        self.listeners.update(found)
        return dict(self.listeners)

    # -- admin ---------------------------------------------------------------------------------------

    def admin_request(self, method: str, path: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout: float = ADMIN_TIMEOUT) -> Response:
        """One request on a fresh connection. Raises OSError if admin is unreachable."""
        assert self.admin_address is not None, "admin address unknown"
        conn = http.client.HTTPConnection(self.admin_address[0], self.admin_address[1], timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.reason, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def admin_get(self, path: str, timeout: float = ADMIN_TIMEOUT) -> Response:
        return self.admin_request("GET", path, timeout=timeout)

    def admin_post(self, path: str, body: bytes = b"", timeout: float = ADMIN_TIMEOUT) -> Response:
        return self.admin_request("POST", path, body=body, timeout=timeout)

    def admin_json(self, path: str) -> Any:
        resp = self.admin_get(path)
        if resp.status != 200:
            raise AssertionError(f"GET {path}: {resp.status} {resp.text!r}")
        return resp.json()

    # -- metrics ---------------------------------------------------------------------------------------

    def metrics_text(self) -> str:
        self._check_running("reading /metrics")
        resp = self.admin_get("/metrics")
        if resp.status != 200:
            raise AssertionError(f"GET /metrics: {resp.status} {resp.text!r}")
        return resp.text

    def metrics(self) -> dict[str, Any]:
        """Parsed /metrics: family name -> prometheus_client Metric.

        Counters lose `_total` in the family name; their samples keep it. Text format 0.0.4 names the
        sample in `# TYPE` (`# TYPE x_total counter`); if the exposition gets that wrong, the parser
        yields one untyped family per sample, which are merged here under one name so values can still
        be read (check types with `metric_type`)."""
        families: dict[str, Any] = {}
        for fam in text_string_to_metric_families(self.metrics_text()):
            if fam.name in families:
                families[fam.name].samples.extend(fam.samples)
            else:
                families[fam.name] = fam
        return families

    def metric_type(self, sample_name: str, families: dict[str, Any] | None = None) -> str | None:
        """The type ('counter', 'gauge', ..., 'unknown') of the family holding samples named so."""
        families = self.metrics() if families is None else families
        for fam in families.values():
            if any(s.name == sample_name for s in fam.samples):
                return fam.type
        return None

    def metric_samples(self, name: str, labels: dict[str, str] | None = None,
                       families: dict[str, Any] | None = None) -> list[Any]:
        """Samples named exactly `name` (e.g. `drover_listener_bytes_sent_total`) whose labels include
        `labels`."""
        families = self.metrics() if families is None else families
        want = labels or {}
        return [s for fam in families.values() for s in fam.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in want.items())]

    def metric_value(self, name: str, labels: dict[str, str] | None = None, default: float | None = None,
                     families: dict[str, Any] | None = None) -> float | None:
        """Sum of the samples named `name` whose labels include `labels`; `default` if there is none."""
        samples = self.metric_samples(name, labels, families)
        if not samples:
            return default
        return sum(s.value for s in samples)

    def wait_metric(self, name: str, labels: dict[str, str] | None, pred: Callable[[float | None], bool],
                    timeout: float = 5.0, default: float | None = None) -> float | None:
        """Polls metric_value until pred(value) holds; returns the value."""
        box: list[float | None] = [None]

        def check() -> bool:
            box[0] = self.metric_value(name, labels, default)
            return pred(box[0])
        wait_until(check, timeout, message=lambda: f"{name}{labels or ''} = {box[0]!r}")
        return box[0]


def run_drover(args: Iterable[str], timeout: float = 15.0, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs drover to completion (e.g. --check, --version); text output captured."""
    return subprocess.run([drover_bin(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


# --------------------------------------------------------------------------------------------------
# Backends


class Backend:
    """A TCP server on 127.0.0.1:0 (or `host`, e.g. '::1') with one daemon thread per connection
    running `handle(conn)`.

    Counts connections (`connections`, `active`) and lets tests wait on them. `stop()` closes the
    listening socket and every live connection; it runs on cleanup too.
    """

    def __init__(self, name: str = "", backlog: int = 128, io_timeout: float = 30.0, host: str = "127.0.0.1"):
        self.name = name or type(self).__name__
        self.io_timeout = io_timeout
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)  # the accept loop checks `_stopping` this often
        self.address = self.sock.getsockname()[:2]
        self.lock = threading.Lock()
        self.connections = 0     # accepted so far
        self.active = 0          # handlers running now
        self.eofs = 0            # connections on which the backend saw the client's EOF
        self.bytes_received = 0
        self.errors: list[BaseException] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(self.io_timeout)
            with self.lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self.connections += 1
                self.active += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name=f"{self.name}-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError as exc:
            if not self._stopping.is_set():
                with self.lock:
                    self.errors.append(exc)
        finally:
            with self.lock:
                self.active -= 1
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _count_received(self, n: int) -> None:
        with self.lock:
            self.bytes_received += n

    def _count_eof(self) -> None:
        with self.lock:
            self.eofs += 1

    def wait_connections(self, n: int, timeout: float = 5.0) -> None:
        wait_until(lambda: self.connections >= n, timeout,
                   message=lambda: f"{self.name}: {self.connections} connections, want >= {n}")

    def wait_active(self, n: int, timeout: float = 5.0) -> None:
        wait_until(lambda: self.active == n, timeout,
                   message=lambda: f"{self.name}: {self.active} active connections, want {n}")

    def stop(self) -> None:
        self._stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # on Linux this wakes the blocked accept() at once
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv/send
            except OSError:
                pass
        self._thread.join(2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{self.name} {self.addr}>"


class EchoBackend(Backend):
    """Echoes every byte; on the client's EOF, shuts down its write side (after echoing everything)."""

    def handle(self, conn: socket.socket) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                self._count_eof()
                conn.shutdown(socket.SHUT_WR)
                return
            self._count_received(len(data))
            conn.sendall(data)


class TaggedBackend(Backend):
    """Writes its tag, then closes without reading (clients should not send to it)."""

    def __init__(self, tag: str | bytes, **kw: Any):
        self.tag = tag.encode() if isinstance(tag, str) else tag
        super().__init__(name=kw.pop("name", f"tagged-{self.tag.decode(errors='replace')}"), **kw)

    def handle(self, conn: socket.socket) -> None:
        conn.sendall(self.tag)
        conn.shutdown(socket.SHUT_WR)


class BlackHoleBackend(Backend):
    """Accepts and then neither reads nor writes; holds the connection until the peer closes or stop()."""

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        self._stopping.wait()


class ScriptedBackend(Backend):
    """Runs `script(conn, backend)` for every connection: the scriptable backend for one-off behaviour."""

    def __init__(self, script: Callable[[socket.socket, "ScriptedBackend"], None], **kw: Any):
        self.script = script
        super().__init__(**kw)

    def handle(self, conn: socket.socket) -> None:
        self.script(conn, self)


class ClosedPort:
    """A port on 127.0.0.1 where connecting is refused (RST).

    The socket stays bound but never listens: nobody else can take the port while it is held, and the
    kernel refuses connections to it, so there is no race with other tests."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    def stop(self) -> None:
        self.sock.close()


class UnresponsivePort:
    """A port on 127.0.0.1 where connecting times out (no SYN-ACK ever comes).

    A listening socket that never accepts still completes handshakes until its accept queue is full, so
    a plain "black hole" cannot test connect timeouts. Here the socket listens with backlog 0 and the
    queue is filled by our own connections; Linux then drops new SYNs (tcp_conn_request:
    sk_acceptq_is_full -> drop, whatever syncookies say), so a connect only ends by its own timeout.
    The constructor verifies this; it raises unittest.SkipTest where the kernel behaves differently."""

    def __init__(self, probe_timeout: float = 0.3) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.address = self.sock.getsockname()[:2]
        self.fillers: list[socket.socket] = []
        timeouts = 0
        for _ in range(16):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(probe_timeout)
            try:
                c.connect(self.address)
                self.fillers.append(c)
                if timeouts:
                    break  # a slot opened again: not deterministic
            except (socket.timeout, TimeoutError):
                c.close()
                timeouts += 1
                if timeouts == 2:  # two in a row: the queue stays full
                    return
            except OSError:
                c.close()
                break
        self.stop()
        raise unittest.SkipTest("cannot make a loopback port that times out connects on this kernel")

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    def stop(self) -> None:
        for c in self.fillers:
            c.close()
        self.fillers = []
        self.sock.close()


class HttpBackend:
    """A small HTTP/1.1 server (http.server, one thread per connection) for L7 tests.

    `responder(handler) -> (status, headers, body)` decides the answer; the default says
    `<name> <method> <path>` with status 200 and an `X-Backend: <name>` header. Counts requests."""

    def __init__(self, name: str = "http", responder: Callable[[Any], tuple[int, dict, bytes]] | None = None):
        import http.server

        backend = self
        self.name = name
        self.requests = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.responder = responder or (lambda h: (200, {"X-Backend": name},
                                                  f"{name} {h.command} {h.path}\n".encode()))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.request_body = self.rfile.read(length) if length else b""
                with backend.lock:
                    backend.requests += 1
                    backend.paths.append(self.path)
                status, headers, body = backend.responder(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"{name}-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2.0)


class BackendProcess:
    """A backend in its own process (`python3 harness.py backend KIND ARGS...`), so a test can kill -9 it."""

    def __init__(self, kind: str, *args: str, timeout: float = 5.0):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "backend", kind, *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        m = re.fullmatch(r"port (\d+)\n", box[0]) if box else None
        if not m:
            self.kill()
            raise RuntimeError(f"backend process {kind} did not report its port: {box!r}")
        self.address = ("127.0.0.1", int(m.group(1)))

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    stop = kill


# --------------------------------------------------------------------------------------------------
# Clients


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connect(addr: tuple[str, int] | str, timeout: float = IO_TIMEOUT) -> socket.socket:
    """A connected client socket with `timeout` on connect and on every later operation."""
    if isinstance(addr, str):
        addr = parse_addr(addr)
    sock = socket.create_connection(addr, timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Reads exactly n bytes; AssertionError if the peer closes first (timeouts raise as usual)."""
    chunks = []
    got = 0
    while got < n:
        data = sock.recv(min(65536, n - got))
        if not data:
            raise AssertionError(f"EOF after {got} of {n} bytes")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_all(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """Reads until EOF (the socket's own timeout bounds each recv)."""
    chunks = []
    total = 0
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        total += len(data)
        if total > limit:
            raise AssertionError(f"more than {limit} bytes before EOF")


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    """Sends data and reads back len(data) bytes (for echo backends); the connection stays open.

    Large payloads are sent from a thread while this one reads, so full buffers cannot deadlock."""
    if len(data) <= 16384:
        sock.sendall(data)
        return recv_exactly(sock, len(data))
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sender = threading.Thread(target=send, name="roundtrip-send", daemon=True)
    sender.start()
    try:
        received = recv_exactly(sock, len(data))
    finally:
        sender.join(sock.gettimeout() or IO_TIMEOUT)
    if errors:
        raise AssertionError(f"sending failed: {errors[0]!r}")
    return received


def transfer(sock: socket.socket, data: bytes, half_close: bool = True, chunk: int = 65536) -> bytes:
    """Sends `data` on a thread while reading on this one until EOF; then returns what was read.

    Sending and receiving concurrently is what keeps a large echo from deadlocking on full buffers."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            view = memoryview(data)
            for i in range(0, len(view), chunk):
                sock.sendall(view[i:i + chunk])
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sender = threading.Thread(target=send, name="transfer-send", daemon=True)
    sender.start()
    try:
        received = recv_all(sock)
    finally:
        sender.join(sock.gettimeout() or IO_TIMEOUT)
    if errors:
        raise AssertionError(f"sending failed: {errors[0]!r}")
    if sender.is_alive():
        raise AssertionError("sender still blocked after the peer closed")
    return received


def wait_closed(sock: socket.socket, timeout: float = 3.0) -> str:
    """Waits until the peer closes the connection: returns 'eof' or 'reset'.

    Data arriving first is discarded (up to 1 MiB). AssertionError if still open after `timeout`."""
    deadline = time.monotonic() + timeout
    old = sock.gettimeout()
    discarded = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after {timeout:.1f}s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"connection still open after {timeout:.1f}s") from None
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                return "reset"
            if not data:
                return "eof"
            discarded += len(data)
            if discarded > (1 << 20):
                raise AssertionError("peer keeps sending instead of closing")
    finally:
        try:
            sock.settimeout(old)
        except OSError:
            pass


def is_open(sock: socket.socket, grace: float = 0.05) -> bool:
    """True if neither EOF nor reset arrives within `grace` seconds (and no data is pending)."""
    old = sock.gettimeout()
    sock.settimeout(grace)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
        return bool(data)
    except (socket.timeout, TimeoutError):
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(old)


def connect_refused(addr: tuple[str, int], timeout: float = 1.0) -> bool:
    """True if a connection attempt to addr is refused (nothing listens)."""
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


@dataclass
class HttpResult:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_http_response(raw: bytes) -> HttpResult:
    """Parses one HTTP/1.x response read until EOF (Content-Length, chunked, or close-delimited)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete HTTP response head: {raw[:200]!r}")
    lines = head.decode("iso-8859-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) ?(.*)", lines[0])
    if not m:
        raise AssertionError(f"bad status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = rest
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out, pos = [], 0
        while True:
            end = rest.index(b"\r\n", pos)
            size = int(rest[pos:end].split(b";")[0], 16)
            pos = end + 2
            if size == 0:
                break
            out.append(rest[pos:pos + size])
            pos += size + 2
        body = b"".join(out)
    elif "content-length" in headers:
        body = rest[:int(headers["content-length"])]
    return HttpResult(int(m.group(1)), m.group(2), headers, body, raw)


def http_request(addr: tuple[str, int], method: str = "GET", path: str = "/", host: str = "test",
                 headers: dict[str, str] | None = None, body: bytes = b"",
                 timeout: float = IO_TIMEOUT) -> HttpResult:
    """One request on a fresh raw socket with `Connection: close`; reads the response until EOF."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with connect(addr, timeout) as sock:
        sock.sendall(request)
        return parse_http_response(recv_all(sock))


# --------------------------------------------------------------------------------------------------
# unittest glue


class DroverTestCase(unittest.TestCase):
    """Base class: start drover and backends through it and they are cleaned up after the test; when a
    test fails, the stderr tail of every drover it started is appended to the failure report."""

    def setUp(self) -> None:
        super().setUp()
        self._drovers: list[Drover] = []

    def start_drover(self, config: dict | str | None = None, **kw: Any) -> Drover:
        drover = Drover(config, **kw)
        self._drovers.append(drover)
        self.addCleanup(drover.cleanup)
        return drover

    def backend(self, backend: Any) -> Any:
        """Registers a started backend (anything with stop()) for cleanup; returns it."""
        self.addCleanup(backend.stop)
        return backend

    def echo_backend(self, **kw: Any) -> EchoBackend:
        return self.backend(EchoBackend(**kw))

    def tagged_backend(self, tag: str, **kw: Any) -> TaggedBackend:
        return self.backend(TaggedBackend(tag, **kw))

    def closed_port(self) -> ClosedPort:
        return self.backend(ClosedPort())

    def connect(self, addr: tuple[str, int] | str, timeout: float = IO_TIMEOUT) -> socket.socket:
        sock = connect(addr, timeout)
        self.addCleanup(sock.close)
        return sock

    def assertClosedPromptly(self, sock: socket.socket, timeout: float = 3.0) -> str:
        try:
            return wait_closed(sock, timeout)
        except AssertionError as exc:
            raise self.failureException(str(exc)) from None

    def run(self, result: unittest.TestResult | None = None):  # type: ignore[override]
        if result is None:
            return super().run(result)
        before_f, before_e = len(result.failures), len(result.errors)
        outcome = super().run(result)
        drovers = getattr(self, "_drovers", [])
        if drovers:
            for bucket, before in ((result.failures, before_f), (result.errors, before_e)):
                for i in range(before, len(bucket)):
                    test, text = bucket[i]
                    if test is self or getattr(test, "test_case", None) is self:  # or a subTest of it
                        bucket[i] = (test, text + self._drover_report(drovers))
        return outcome

    @staticmethod
    def _drover_report(drovers: list[Drover]) -> str:
        parts = []
        for i, d in enumerate(drovers):
            code = d.proc.poll()
            parts.append(f"\n--- drover #{i} stderr (last {LOG_TAIL_LINES} lines; "
                         f"{'running' if code is None else f'exit code {code}'}) ---\n{d.stderr_tail()}\n")
            if d.config_text:
                parts.append(f"--- drover #{i} config ---\n{d.config_text}")
        return "".join(parts)


# --------------------------------------------------------------------------------------------------
# `python3 harness.py backend KIND ARGS...`: one backend in this process, until killed.


def _serve_forever(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "backend":
        print("usage: harness.py backend echo|tagged TAG|blackhole", file=sys.stderr)
        return 2
    kind = argv[1]
    if kind == "echo":
        b: Backend = EchoBackend()
    elif kind == "tagged":
        b = TaggedBackend(argv[2])
    elif kind == "blackhole":
        b = BlackHoleBackend()
    else:
        print(f"unknown backend kind {kind}", file=sys.stderr)
        return 2
    print(f"port {b.port}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(_serve_forever(sys.argv[1:]))
