"""Integration-test harness: the real drover binary against real backends on loopback.

Standard library plus prometheus_client only (Debian's /usr/bin/python3). Everything here is hermetic
and bounded: sockets bind 127.0.0.1:0 (a server a test restarts on the same port gets one from
`restartable_port`, outside the ephemeral range), every wait has a deadline, and nothing sleeps to
"wait for" state -- conditions are polled with `wait_until`.

Pieces:
  * `Drover`: writes a config, runs `$DROVER_BIN -c file` (or any argv, e.g. --demo), captures stderr
    and stdout on reader threads, waits for the contract log lines and `GET /ready` == 200, and talks to
    the admin endpoint (`admin_get`, `metrics`, `metric_value`, ...). Always killed on cleanup.
  * Backends (threads): `EchoBackend`, `TaggedBackend`, `BlackHoleBackend`, `ScriptedBackend` (any
    per-connection function), `HttpBackend`; `ClosedPort` (connection refused); `UnresponsivePort`
    (connect times out); `BackendProcess` (a backend in its own process, for kill -9).
  * Client helpers: `connect`, `recv_all`, `recv_exactly`, `transfer`, `wait_closed`, `http_request`.
  * HTTP/1.1 (L7 tests): `HttpOrigin` (a real keep-alive origin that echoes what it got as JSON, or serves
    N-byte bodies by Content-Length, chunked or close, streamed, slow, gated), `RawHttpBackend` (exact
    bytes per connection: malformed responses), `HttpConn` (a raw client: exact bytes out, one response
    at a time read by its framing, close detection), `HttpTestCase` (proxy in one call, assertions for
    drover's local responses); config helpers `http_listener`, `route`.
  * DNS and file discovery: `Dnsmasq` (a real dnsmasq on loopback: A/AAAA from a hosts file, SRV from
    its conf; change records, kill and restart it), `dns_query`, config helpers `dns_cluster`,
    `file_cluster`, `write_endpoints_file` (write + rename, as orchestrators do).
  * `DroverTestCase`: a unittest base class that registers cleanups and appends the drover stderr
    tail to the report of a failing test.

Run `python3 harness.py backend echo|tagged ID|blackhole` to serve one backend in this process
(prints `port N` on stdout); `BackendProcess` uses it.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

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


@functools.lru_cache(maxsize=None)
def sanitized_build() -> bool:
    """Whether DROVER_BIN is the AddressSanitizer build. Its runtime needs descriptors of its own for
    some checks (a pipe to test memory), so a process out of them reports false errors there."""
    path = os.environ.get("DROVER_BIN", "")
    if not path:
        return False
    linked = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    return "libasan" in linked


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


# Self-healing is on by default in drover (a TCP check and outlier detection per cluster). The tests of
# proxying behaviour count origin connections and provoke failures on purpose, so the cluster helpers
# below turn both off unless a test asks for them (self_healing=True, or its own health_check /
# outlier_detection blocks). test_health.py and tests/chaos run with the defaults.
HEALING_OFF = {"health_check": {"enabled": False}, "outlier_detection": {"enabled": False}}


def _healing(extra: dict, self_healing: bool) -> dict:
    if self_healing:
        return extra
    return {**{k: v for k, v in HEALING_OFF.items() if k not in extra}, **extra}


def static_cluster(name: str, hosts: Iterable[Any], self_healing: bool = False, **extra: Any) -> dict:
    """hosts: addresses ('127.0.0.1:9001'), backends (anything with .addr), or {address, weight}."""
    static = []
    for host in hosts:
        if isinstance(host, dict):
            static.append(host)
        elif isinstance(host, str):
            static.append(host)
        else:
            static.append(host.addr)
    return {"name": name, "discovery": {"static": static}, **_healing(extra, self_healing)}


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
    run_as: a uid (and gid) to run as, when the tests run as root.
    Start waits for `admin listening on`, every expected listener line, and GET /ready == 200.
    """

    def __init__(self, config: dict | str | None = None, *, args: Iterable[str] = (),
                 listeners: Iterable[str] | None = None, wait_ready: bool = True,
                 start_timeout: float = START_TIMEOUT, env: dict[str, str] | None = None,
                 binary: str | None = None, max_open_files: int | None = None, run_as: int | None = None):
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
        if run_as is not None:
            # The build may sit where another user cannot reach it (a clone in /root, mode 0700, as on a
            # fresh machine): that user runs a copy from the test's own folder.
            copy = os.path.join(self.dir, "drover")
            shutil.copy2(self.binary, copy)
            os.chmod(copy, 0o755)
            self.binary = copy
        argv = [self.binary]
        if self.config_path is not None:
            argv += ["-c", self.config_path]
        argv += list(args)
        self.argv = argv
        self.admin_address: tuple[str, int] | None = None
        self.listeners: dict[str, tuple[str, int]] = {}
        self.returncode: int | None = None
        echo = bool(os.environ.get("DROVER_TEST_ECHO"))
        if run_as is not None:   # another user (the caller is root) must be able to read the config
            os.chmod(self.dir, 0o755)
            if self.config_path is not None:
                os.chmod(self.config_path, 0o644)
        def limit_files() -> None:  # in the child only: the test process keeps its own limit
            if max_open_files is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))
            if run_as is not None:
                os.setgroups([])
                os.setgid(run_as)
                os.setuid(run_as)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.dir,
                                     env={**os.environ, **(env or {})}, preexec_fn=limit_files)
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
    """A TCP server on 127.0.0.1:0 (or `host`, e.g. '::1', and `port`) with one daemon thread per connection
    running `handle(conn)`.

    Counts connections (`connections`, `active`) and lets tests wait on them. `stop()` closes the
    listening socket and every live connection; it runs on cleanup too.
    """

    def __init__(self, name: str = "", backlog: int = 128, io_timeout: float = 30.0, host: str = "127.0.0.1",
                 port: int = 0):
        self.name = name or type(self).__name__
        self.io_timeout = io_timeout
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, port))  # a fixed port: several hosts behind one DNS name share it
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

    def __init__(self, name: str = "http", responder: Callable[[Any], tuple[int, dict, bytes]] | None = None,
                 port: int = 0):
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


def recv_head(sock: socket.socket) -> bytes | None:
    """Reads until the end of a message head (CRLF CRLF), maybe past it; None if EOF comes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def read_slowly(sock: socket.socket, batch: int = 128 << 10, pause: float = 0.03) -> bytes:
    """Reads until EOF like a client slower than its sender: `batch` bytes, then `pause` seconds, and
    again (about 4 MB/s by default). A TLS socket's recv returns one record at most: a batch is
    several reads."""
    got = bytearray()
    while True:
        taken = 0
        while taken < batch:
            data = sock.recv(batch)
            if not data:
                return bytes(got)
            got += data
            taken += len(data)
        time.sleep(pause)


def sending_script(data: bytes) -> Callable[[socket.socket, Any], None]:
    """A ScriptedBackend script: sends `data` at once, half-closes, and waits for the client to close."""
    def send(conn: socket.socket, _backend: Any) -> None:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        recv_all(conn)
    return send


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

    def assert_echoed_whole(self, echo: "EchoBackend", sock: socket.socket, data: bytes) -> None:
        """Sends `data` through `sock` to `echo` and half-closes: all of it must come back intact, and
        the client's EOF must reach the echo backend after every byte."""
        received = transfer(sock, data)
        self.assertEqual(len(received), len(data))
        self.assertEqual(sha256(received), sha256(data))
        wait_until(lambda: echo.eofs == 1, 5, message="echo backend saw the client's EOF")
        self.assertEqual(echo.bytes_received, len(data))

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
# HTTP/1.1: a real origin (`HttpOrigin`), a byte-exact scripted backend (`RawHttpBackend`), a raw client
# that reads one response at a time by its framing (`HttpConn`), and `HttpTestCase` tying them together.
# Everything here parses leniently and records exactly what arrived, so tests can assert what drover
# forwarded (and never forwarded) byte for byte.

CRLF = b"\r\n"
# What a desynchronised proxy would hand to the *next* client if it reused a connection too early.
EVIL_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Evil: smuggled\r\n\r\nEVIL!"
_PATTERN_BLOCK = random.Random(20240501).randbytes(65521)  # prime length: chunk boundaries never line up


def pattern_bytes(n: int, offset: int = 0) -> bytes:
    """n bytes of a fixed pseudo-random pattern starting at `offset`: bodies whose shifts and gaps show."""
    return b"".join(iter_pattern(n, 1 << 20, offset))


def iter_pattern(n: int, chunk: int = 65536, offset: int = 0) -> Iterator[bytes]:
    """`pattern_bytes(n, offset)` in pieces of at most `chunk` bytes, without building it whole."""
    block = _PATTERN_BLOCK
    doubled = block + block
    pos = offset
    left = n
    while left > 0:
        k = min(chunk, left, len(block))
        start = pos % len(block)
        yield doubled[start:start + k]
        pos += k
        left -= k


@functools.lru_cache(maxsize=32)
def pattern_sha256(n: int) -> str:
    h = hashlib.sha256()
    for piece in iter_pattern(n, chunk=1 << 20):
        h.update(piece)
    return h.hexdigest()


def vm_rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def http_listener(name: str, routes: list[dict], address: str = "127.0.0.1:0", **extra: Any) -> dict:
    return {"name": name, "address": address, "protocol": "http", "routes": routes, **extra}


def route(cluster: str, host: str | None = None, path_prefix: str | None = None) -> dict:
    """One `routes` entry; omit both to match everything."""
    match: dict[str, str] = {}
    if host is not None:
        match["host"] = host
    if path_prefix is not None:
        match["path_prefix"] = path_prefix
    return {"match": match, "cluster": cluster}


class PeerClosed(AssertionError):
    """The peer closed (EOF or reset) before a complete message arrived. `partial` holds what did."""

    def __init__(self, message: str, partial: Any = None, how: str = "eof"):
        super().__init__(message)
        self.partial = partial
        self.how = how


class _Reader:
    """Buffered reads from a socket; every recv is bounded by the socket timeout and an optional deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof: str | None = None  # 'eof' | 'reset' once the peer is gone
        self.deadline: float | None = None
        self.on_recv: Callable[[int], None] | None = None

    def fill(self) -> bool:
        """Reads more into buf; False on EOF/reset. Raises socket.timeout past the deadline."""
        if self.eof:
            return False
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("deadline passed")
            old = self.sock.gettimeout()
            self.sock.settimeout(min(remaining, old) if old else remaining)
        else:
            old = None
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = "reset"
            return False
        finally:
            if old is not None:
                self.sock.settimeout(old)
        if not data:
            self.eof = "eof"
            return False
        self.buf += data
        if self.on_recv:
            self.on_recv(len(data))
        return True

    def read_until(self, delim: bytes, limit: int = 1 << 20, what: str = "data") -> bytes | None:
        """Bytes up to and including `delim`; None if the peer closed before sending anything."""
        searched = 0
        while True:
            i = self.buf.find(delim, max(0, searched - len(delim)))
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            searched = len(self.buf)
            if len(self.buf) > limit:
                raise AssertionError(f"{what}: no {delim!r} within {limit} bytes: {bytes(self.buf[:200])!r}")
            if not self.fill():
                if not self.buf:
                    return None
                raise PeerClosed(f"peer closed ({self.eof}) in the middle of {what}: {bytes(self.buf[:300])!r}",
                                 bytes(self.buf), self.eof or "eof")

    def read_some(self, n: int) -> bytes:
        """Up to n bytes (at least one); b'' on EOF."""
        if not self.buf and not self.fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exactly(self, n: int, what: str = "body") -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise PeerClosed(f"peer closed ({self.eof}) after {len(self.buf)} of {n} bytes of {what}",
                                 bytes(self.buf), self.eof or "eof")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Start line and (name, value) pairs of a head ending in CRLFCRLF; lenient: names and values as sent
    (latin-1), value whitespace trimmed."""
    text = head[:-4].decode("iso-8859-1") if head.endswith(b"\r\n\r\n") else head.decode("iso-8859-1")
    lines = text.split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return lines[0], headers


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def _tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Comma-separated tokens of every `name` header, lowercased."""
    return [t.strip().lower() for v in _values(headers, name) for t in v.split(",") if t.strip()]


def _read_chunked(reader: _Reader, on_data: Callable[[bytes], None], what: str) -> list[tuple[str, str]]:
    """Reads a chunked body (RFC 9112 §7.1), handing data to on_data; returns the trailer fields."""
    while True:
        line = reader.read_until(CRLF, 4096, f"{what} chunk size")
        if line is None:
            raise PeerClosed(f"peer closed before a chunk size of {what}", None, reader.eof or "eof")
        size_text = line[:-2].split(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
            raise AssertionError(f"{what}: bad chunk size line {line!r}")
        size = int(size_text, 16)
        if size == 0:
            trailers = []
            while True:
                tline = reader.read_until(CRLF, 65536, f"{what} trailer")
                if tline is None:
                    raise PeerClosed(f"peer closed in the trailers of {what}", None, reader.eof or "eof")
                if tline == CRLF:
                    return trailers
                name, _, value = tline[:-2].decode("iso-8859-1").partition(":")
                trailers.append((name, value.strip()))
        left = size
        while left:
            piece = reader.read_some(min(left, 262144))
            if not piece:
                raise PeerClosed(f"peer closed ({reader.eof}) inside a chunk of {what}", None, reader.eof or "eof")
            on_data(piece)
            left -= len(piece)
        if reader.read_exactly(2, f"{what} chunk end") != CRLF:
            raise AssertionError(f"{what}: chunk data not followed by CRLF")


class _BodySink:
    """Counts and hashes a body as it streams; keeps it whole only up to `keep` bytes."""

    def __init__(self, keep: int = 1 << 20, on_data: Callable[[bytes], None] | None = None):
        self.len = 0
        self.hash = hashlib.sha256()
        self.keep = keep
        self.parts: list[bytes] = []
        self.on_data = on_data

    def __call__(self, data: bytes) -> None:
        self.len += len(data)
        self.hash.update(data)
        if self.len <= self.keep:
            self.parts.append(data)
        if self.on_data:
            self.on_data(data)

    @property
    def body(self) -> bytes | None:
        return b"".join(self.parts) if self.len <= self.keep else None


@dataclass
class ReceivedRequest:
    """One request as a backend received it."""
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes | None            # None when larger than the backend keeps
    body_len: int
    body_sha256: str
    framing: str                  # 'length' | 'chunked' | 'none'
    conn: int                     # 1-based connection number at the backend
    seq: int                      # 1-based request number on that connection
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """All values of `name` joined with ', ' (None when absent)."""
        vals = _values(self.headers, name)
        return ", ".join(vals) if vals else None

    def header_values(self, name: str) -> list[str]:
        return _values(self.headers, name)

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)


def _read_request(reader: _Reader, conn: int, seq: int, sink: _BodySink,
                  on_head: Callable[[ReceivedRequest], None] | None = None) -> ReceivedRequest | None:
    """Reads one request (head, then body by its framing); None on a clean EOF before it."""
    head = reader.read_until(b"\r\n\r\n", 1 << 20, "request head")
    if head is None:
        return None
    start, headers = _split_head(head)
    method, _, rest = start.partition(" ")
    target, _, version = rest.rpartition(" ")
    te = _tokens(headers, "transfer-encoding")
    cl = _values(headers, "content-length")
    req = ReceivedRequest(method, target, version, headers, head, None, 0, "", "none", conn, seq)
    if on_head:
        on_head(req)
    if te and te[-1] == "chunked":
        req.framing = "chunked"
        req.trailers = _read_chunked(reader, sink, "request body")
    elif cl:
        req.framing = "length"
        left = int(cl[0].split(",")[0].strip())
        while left:
            piece = reader.read_some(min(left, 262144))
            if not piece:
                raise PeerClosed(f"peer closed with {left} request body bytes missing", req, reader.eof or "eof")
            sink(piece)
            left -= len(piece)
    req.body, req.body_len, req.body_sha256 = sink.body, sink.len, sink.hash.hexdigest()
    return req


class HttpOrigin(Backend):
    """A real HTTP/1.1 origin: keep-alive, pipelining-safe (one request at a time per connection), chunked
    and Content-Length request bodies, `Expect: 100-continue`, WebSocket-style upgrades (answers 101,
    then echoes raw bytes after sending `upgraded\\n`).

    By default it answers 200 with JSON describing the request it got: method, target, version,
    headers ([name, value] pairs, exactly as received), body_bytes, body_sha256, conn (1-based connection
    number), seq (request number on that connection), origin (its name). The query string changes that:
      status=N         status code (204/304 and HEAD get no body)
      size=N           body of N `pattern_bytes` instead of JSON (fill=evil: EVIL_RESPONSE repeated)
      framing=F        cl (default) | chunked | close (no length: the body ends when the origin closes)
      chunk=N          write the body in pieces of N bytes (default 65536)
      delay=S          wait S seconds before the response head (a slow origin)
      drip=S           wait S seconds between body pieces (a slowly streaming origin)
      gate=NAME        after the head and the first piece, wait for `origin.gate(NAME).set()`
      close=1          close the connection after the response, without announcing it
      hdr=Name:Value   extra response header (repeatable; order and case kept)
      upgrade=decline  answer an upgrade request with a plain 200 instead of 101
      expect=ignore    do not send 100 Continue (read the body regardless)
    `requests` lists every ReceivedRequest, `heads` every request head (recorded before its body),
    `protocol_errors` what failed to parse; `body_progress` counts body bytes of the request being read
    (to prove streaming); `upgraded_bytes` counts bytes echoed on upgraded connections."""

    def __init__(self, name: str = "origin", keep_body: int = 1 << 20, **kw: Any):
        self.requests: list[ReceivedRequest] = []
        self.heads: list[ReceivedRequest] = []  # every request head, recorded before its body is read
        self.protocol_errors: list[str] = []
        self.body_progress = 0
        self.upgraded_bytes = 0
        self.keep_body = keep_body
        self._gates: dict[str, threading.Event] = {}
        self._conn_seq = 0
        super().__init__(name=name, **kw)

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self._gates.setdefault(name, threading.Event())

    def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        wait_until(lambda: len(self.requests) >= n, timeout,
                   message=lambda: f"{self.name}: {len(self.requests)} requests, want >= {n}")

    def handle(self, conn: socket.socket) -> None:
        with self.lock:
            self._conn_seq += 1
            conn_no = self._conn_seq
        reader = _Reader(conn)
        seq = 0
        while True:
            seq += 1
            with self.lock:
                self.body_progress = 0

            def progress(data: bytes) -> None:
                with self.lock:
                    self.body_progress += len(data)
                self._count_received(len(data))

            def on_head(req: ReceivedRequest) -> None:
                with self.lock:
                    self.heads.append(req)
                if "100-continue" in _tokens(req.headers, "expect") and req.query.get("expect") != ["ignore"]:
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

            sink = _BodySink(self.keep_body, progress)
            try:
                req = _read_request(reader, conn_no, seq, sink, on_head)
            except PeerClosed:
                return
            except AssertionError as exc:  # what drover forwarded does not parse
                with self.lock:
                    self.protocol_errors.append(str(exc))
                return
            if req is None:
                self._count_eof()
                return
            with self.lock:
                self.requests.append(req)
            if not self._respond(conn, reader, req):
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # FIN now, before `active` says this connection is over
                except OSError:
                    pass
                return

    def _respond(self, conn: socket.socket, reader: _Reader, req: ReceivedRequest) -> bool:
        """Writes the answer; False when the connection must end afterwards."""
        q = {k: v[-1] for k, v in req.query.items()}
        extra = [tuple(h.split(":", 1)) for h in req.query.get("hdr", []) if ":" in h]
        if "delay" in q:
            time.sleep(float(q["delay"]))
        wants_upgrade = "upgrade" in _tokens(req.headers, "connection") and _values(req.headers, "upgrade")
        if wants_upgrade and q.get("upgrade") != "decline":
            proto = _values(req.headers, "upgrade")[0]
            conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\n\r\n"
                         .encode() + b"upgraded\n")
            while True:
                data = reader.read_some(65536)
                if not data:
                    return False
                with self.lock:
                    self.upgraded_bytes += len(data)
                conn.sendall(data)
        status = int(q.get("status", "200"))
        framing = q.get("framing", "cl")
        chunk = int(q.get("chunk", "65536"))
        if "size" in q:
            size = int(q["size"])
            if q.get("fill") == "evil":
                body_iter: Iterable[bytes] = [(EVIL_RESPONSE * (size // len(EVIL_RESPONSE) + 1))[:size]]
            else:
                body_iter = iter_pattern(size, chunk)
            content_type = "application/octet-stream"
        else:
            echo = {"method": req.method, "target": req.target, "version": req.version,
                    "headers": [[k, v] for k, v in req.headers], "body_bytes": req.body_len,
                    "body_sha256": req.body_sha256, "framing": req.framing, "conn": req.conn, "seq": req.seq,
                    "origin": self.name, "trailers": [[k, v] for k, v in req.trailers]}
            data = json.dumps(echo).encode()
            size = len(data)
            body_iter = [data]
            content_type = "application/json"
        no_body = req.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Whatever')}",
                 f"Content-Type: {content_type}"]
        lines += [f"{k}: {v}" for k, v in extra]
        if status not in (204, 304) and not 100 <= status < 200:
            if framing == "cl":
                lines.append(f"Content-Length: {size}")
            elif framing == "chunked":
                lines.append("Transfer-Encoding: chunked")
        client_close = ("close" in _tokens(req.headers, "connection")
                        or (req.version == "HTTP/1.0" and "keep-alive" not in _tokens(req.headers, "connection")))
        if framing == "close" or client_close:
            lines.append("Connection: close")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
        if not no_body:
            first = True
            for piece in self._pieces(body_iter, chunk):
                if framing == "chunked":
                    conn.sendall(b"%x\r\n" % len(piece) + piece + CRLF)
                else:
                    conn.sendall(piece)
                if first and "gate" in q:
                    if not self.gate(q["gate"]).wait(30):
                        return False
                first = False
                if "drip" in q:
                    time.sleep(float(q["drip"]))
            if framing == "chunked":
                conn.sendall(b"0\r\n\r\n")
        if framing == "close" or client_close or q.get("close") == "1":
            return False
        return True

    @staticmethod
    def _pieces(parts: Iterable[bytes], chunk: int) -> Iterator[bytes]:
        for part in parts:
            for i in range(0, len(part), chunk):
                yield part[i:i + chunk]


class RawHttpBackend(Backend):
    """Sends exact bytes: connection i (0-based) runs `scripts[min(i, len(scripts) - 1)]`, a list of steps:
      READ            read one request (head and its framed body); recorded in `requests`
      bytes           sent as they are
      CLOSE           close the connection now
      callable        `step(conn, backend)`: anything else (wait for an event, pause, half-close...)
    After the last step it keeps reading until the peer closes; whatever arrives then is counted in
    `late_bytes[i]` (a connection drover should not have reused shows up there)."""

    READ = "READ"
    CLOSE = "CLOSE"

    def __init__(self, scripts: list[list[Any]], **kw: Any):
        self.scripts = scripts
        self.requests: list[ReceivedRequest] = []
        self.late_bytes: dict[int, int] = {}
        self.sent: dict[int, int] = {}  # connection index -> steps completed
        self._conn_seq = 0
        super().__init__(name=kw.pop("name", "raw-http"), **kw)

    @classmethod
    def replying(cls, *responses: bytes, **kw: Any) -> "RawHttpBackend":
        """Connection i reads one request and answers responses[i] (the last one repeats)."""
        return cls([[cls.READ, r] for r in responses], **kw)

    def wait_steps(self, conn_index: int, n: int, timeout: float = 5.0) -> None:
        wait_until(lambda: self.sent.get(conn_index, 0) >= n, timeout,
                   message=lambda: f"{self.name}: connection {conn_index} completed {self.sent.get(conn_index, 0)} "
                                   f"steps, want {n}")

    def handle(self, conn: socket.socket) -> None:
        with self.lock:
            index = self._conn_seq
            self._conn_seq += 1
            self.sent[index] = 0
        script = self.scripts[min(index, len(self.scripts) - 1)]
        reader = _Reader(conn)
        seq = 0
        for step in script:
            if step == self.READ:
                seq += 1
                try:
                    req = _read_request(reader, index + 1, seq, _BodySink())
                except (PeerClosed, AssertionError):
                    return
                if req is None:
                    return
                with self.lock:
                    self.requests.append(req)
            elif step == self.CLOSE:
                return
            elif isinstance(step, (bytes, bytearray)):
                conn.sendall(step)
            else:
                step(conn, self)
            with self.lock:
                self.sent[index] += 1
        with self.lock:
            self.late_bytes[index] = len(reader.buf)
        reader.buf.clear()
        while True:
            data = reader.read_some(65536)
            if not data:
                return
            with self.lock:
                self.late_bytes[index] += len(data)


@dataclass
class HttpMessage:
    """One response as the client read it, framed by its own headers."""
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes | None = b""     # None when larger than kept
    body_len: int = 0
    body_sha256: str = ""
    framing: str = "none"        # 'length' | 'chunked' | 'close' | 'none'
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list["HttpMessage"] = field(default_factory=list)  # 1xx responses read before this one

    def header(self, name: str, default: str | None = None) -> str | None:
        """All values of `name` joined with ', ' (case-insensitive); `default` when absent."""
        vals = _values(self.headers, name)
        return ", ".join(vals) if vals else default

    def header_values(self, name: str) -> list[str]:
        return _values(self.headers, name)

    def tokens(self, name: str) -> list[str]:
        return _tokens(self.headers, name)

    @property
    def text(self) -> str:
        return (self.body or b"").decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body or b"")

    def __repr__(self) -> str:
        body = self.body[:200] if self.body is not None else f"<{self.body_len} bytes>"
        return f"<HttpMessage {self.status} {self.reason!r} {self.headers!r} body={body!r}>"


class HttpConn:
    """A raw HTTP/1.1 client connection: send exact bytes, read one response at a time by its framing
    (Content-Length, chunked, close-delimited; none for HEAD/1xx/204/304), detect close. Every read is
    bounded by the socket timeout; `read_response(timeout=...)` bounds the whole response too."""

    def __init__(self, addr: tuple[str, int] | str, timeout: float = IO_TIMEOUT):
        self.sock = connect(addr, timeout)
        self.reader = _Reader(self.sock)

    @property
    def local_addr(self) -> str:
        return format_addr(self.sock.getsockname()[:2])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "HttpConn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes) -> bool:
        """Sends what the peer still accepts; False if it closed or reset first (it may have answered)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    @staticmethod
    def build_request(method: str = "GET", target: str = "/", host: str | None = "test",
                      headers: Iterable[tuple[str, str]] | dict[str, str] = (), body: bytes | None = None,
                      version: str = "HTTP/1.1", chunked: bool = False) -> bytes:
        """Request bytes. Host first (None: no Host); Content-Length added for a body unless `chunked`
        (then the body is sent as one chunk) or the headers already frame it."""
        items = list(headers.items()) if isinstance(headers, dict) else list(headers)
        lines = [f"{method} {target} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines += [f"{k}: {v}" for k, v in items]
        names = {k.lower() for k, _ in items}
        payload = body or b""
        if chunked:
            if "transfer-encoding" not in names:
                lines.append("Transfer-Encoding: chunked")
            payload = (b"%x\r\n" % len(payload) + payload + CRLF if payload else b"") + b"0\r\n\r\n"
        elif body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + payload

    def send_request(self, method: str = "GET", target: str = "/", **kw: Any) -> None:
        self.send(self.build_request(method, target, **kw))

    def request(self, method: str = "GET", target: str = "/", timeout: float | None = None,
                keep: int = 1 << 20, on_body: Callable[[bytes], None] | None = None, **kw: Any) -> HttpMessage:
        """Sends one request (`build_request` arguments) and reads its final response."""
        self.send_request(method, target, **kw)
        return self.read_response(method, timeout=timeout, keep=keep, on_body=on_body)

    # -- receiving ---------------------------------------------------------------------------------

    def read_head(self, timeout: float | None = None) -> HttpMessage:
        """The next response head (1xx included). PeerClosed if the connection ends first."""
        self.reader.deadline = time.monotonic() + timeout if timeout else None
        try:
            head = self.reader.read_until(b"\r\n\r\n", 1 << 20, "response head")
        finally:
            self.reader.deadline = None
        if head is None:
            raise PeerClosed(f"connection closed ({self.reader.eof}) before a response", None,
                             self.reader.eof or "eof")
        start, headers = _split_head(head)
        m = re.fullmatch(r"HTTP/(\d\.\d) (\d{3})(?: (.*))?", start)
        if not m:
            raise AssertionError(f"bad status line {start!r} (head {head[:300]!r})")
        return HttpMessage(f"HTTP/{m.group(1)}", int(m.group(2)), m.group(3) or "", headers, head)

    def read_response(self, method: str = "GET", timeout: float | None = None, skip_interim: bool = True,
                      keep: int = 1 << 20, on_body: Callable[[bytes], None] | None = None) -> HttpMessage:
        """The next response, body read by its framing. 1xx heads are collected in `.interim` (or returned
        when skip_interim is False; a 101 is always returned). PeerClosed (with `.partial`, the message
        so far) if the connection ends mid-response."""
        deadline = time.monotonic() + timeout if timeout else None
        interim = []
        while True:
            msg = self.read_head(timeout=(deadline - time.monotonic()) if deadline else None)
            if 100 <= msg.status < 200 and msg.status != 101 and skip_interim:
                interim.append(msg)
                continue
            break
        msg.interim = interim
        if 100 <= msg.status < 200:
            return msg
        return self.read_body(msg, method, timeout=(deadline - time.monotonic()) if deadline else None,
                              keep=keep, on_body=on_body)

    def read_body(self, msg: HttpMessage, method: str = "GET", timeout: float | None = None,
                  keep: int = 1 << 20, on_body: Callable[[bytes], None] | None = None) -> HttpMessage:
        """Reads the body of a response whose head `read_head` returned; fills in `msg` and returns it."""
        sink = _BodySink(keep, on_body)
        self.reader.deadline = time.monotonic() + timeout if timeout else None
        try:
            te = msg.tokens("transfer-encoding")
            cl = msg.header_values("content-length")
            if method == "HEAD" or msg.status in (204, 304):
                msg.framing = "none"
            elif te and te[-1] == "chunked":
                msg.framing = "chunked"
                msg.trailers = _read_chunked(self.reader, sink, "response body")
            elif cl:
                msg.framing = "length"
                if len(cl) != 1 or not cl[0].isdigit():
                    raise AssertionError(f"response with an invalid Content-Length: {msg!r}")
                left = int(cl[0])
                while left:
                    piece = self.reader.read_some(min(left, 262144))
                    if not piece:
                        raise PeerClosed(f"connection closed with {left} of {cl[0]} body bytes missing", msg,
                                         self.reader.eof or "eof")
                    sink(piece)
                    left -= len(piece)
            else:
                msg.framing = "close"
                while True:
                    piece = self.reader.read_some(262144)
                    if not piece:
                        break
                    sink(piece)
        except PeerClosed as exc:
            msg.body, msg.body_len, msg.body_sha256 = sink.body, sink.len, sink.hash.hexdigest()
            exc.partial = msg
            raise
        finally:
            self.reader.deadline = None
        msg.body, msg.body_len, msg.body_sha256 = sink.body, sink.len, sink.hash.hexdigest()
        return msg

    def wait_closed(self, timeout: float = 3.0) -> str:
        """Waits for EOF or reset; returns 'eof' or 'reset'. AssertionError if bytes arrive first (they are
        in the message) or if the connection is still open after `timeout`."""
        if self.reader.buf:
            raise AssertionError(f"unexpected bytes instead of a close: {bytes(self.reader.buf[:300])!r}")
        self.reader.deadline = time.monotonic() + timeout
        try:
            if self.reader.fill():
                raise AssertionError(f"unexpected bytes instead of a close: {bytes(self.reader.buf[:300])!r}")
        except (socket.timeout, TimeoutError):
            raise AssertionError(f"connection still open after {timeout:.1f}s") from None
        finally:
            self.reader.deadline = None
        return self.reader.eof or "eof"

    def is_open(self, grace: float = 0.05) -> bool:
        """True when nothing (no byte, no EOF, no reset) arrives within `grace` seconds."""
        if self.reader.eof:
            return False
        if self.reader.buf:
            return True
        self.reader.deadline = time.monotonic() + grace
        try:
            return self.reader.fill()
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.reader.deadline = None


class HttpTestCase(DroverTestCase):
    """DroverTestCase plus HTTP pieces: origins, raw backends and raw clients cleaned up after the test,
    a one-call proxy, and assertions for drover's locally generated responses."""

    LOCAL_STATUS = {"bad_request": 400, "no_route": 404, "request_header_timeout": 408, "request_body_timeout": 408,
                    "body_too_large": 413,
                    "uri_too_long": 414, "headers_too_large": 431, "upstream_connect_failed": 502,
                    "bad_upstream_response": 502, "no_healthy_host": 503, "upstream_timeout": 504,
                    "shed": 503, "not_implemented": 501, "too_many_services": 503}

    def origin(self, name: str = "origin", **kw: Any) -> HttpOrigin:
        return self.backend(HttpOrigin(name, **kw))

    def raw_backend(self, scripts: list[list[Any]], **kw: Any) -> RawHttpBackend:
        return self.backend(RawHttpBackend(scripts, **kw))

    def replying_backend(self, *responses: bytes, **kw: Any) -> RawHttpBackend:
        return self.backend(RawHttpBackend.replying(*responses, **kw))

    def http_proxy(self, hosts: Iterable[Any] = (), *, routes: list[dict] | None = None,
                   clusters: list[dict] | None = None, listener_extra: dict | None = None,
                   cluster_extra: dict | None = None, **config_extra: Any) -> tuple[Drover, tuple[str, int]]:
        """drover with one http listener `web`; by default every request goes to cluster `back` over
        `hosts` (round robin, so rotation is exact). Returns (drover, listener address)."""
        if clusters is None:
            clusters = [static_cluster("back", hosts, **{"load_balancing": "round_robin", **(cluster_extra or {})})]
        if routes is None:
            routes = [route("back", path_prefix="/")]
        config = make_config([http_listener("web", routes, **(listener_extra or {}))], clusters, **config_extra)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("web")

    def client(self, addr: tuple[str, int], timeout: float = IO_TIMEOUT) -> HttpConn:
        conn = HttpConn(addr, timeout)
        self.addCleanup(conn.close)
        return conn

    def get(self, addr: tuple[str, int], target: str = "/", **kw: Any) -> HttpMessage:
        """One request on a fresh connection (kept open until cleanup)."""
        return self.client(addr).request(kw.pop("method", "GET"), target, **kw)

    def assertLocalResponse(self, resp: HttpMessage, reason: str, status: int | None = None) -> None:
        """A response drover made itself: the status for `reason`, `drover-error: reason`, a short
        text/plain body saying why."""
        want = status if status is not None else self.LOCAL_STATUS[reason]
        self.assertEqual((resp.status, resp.header("drover-error")), (want, reason), resp)
        self.assertTrue((resp.header("content-type") or "").startswith("text/plain"), resp)
        self.assertGreater(resp.body_len, 0, f"empty body: {resp!r}")
        self.assertLess(resp.body_len, 1024, f"not a short body: {resp!r}")

    def assertRejected(self, conn: HttpConn, reason: str = "bad_request", status: int | None = None,
                       closed: bool = True, timeout: float = 5.0) -> HttpMessage:
        """Reads drover's local answer for `reason`; with `closed`, the connection must then be closed."""
        try:
            resp = conn.read_response(timeout=timeout)
        except PeerClosed as exc:
            raise self.failureException(f"connection closed without the {reason} response: {exc}") from None
        except (socket.timeout, TimeoutError):
            raise self.failureException(f"no {reason} response within {timeout:.1f}s (connection still open)") from None
        self.assertLocalResponse(resp, reason, status)
        if closed:
            try:
                conn.wait_closed(3.0)
            except AssertionError as exc:
                raise self.failureException(f"after {resp.status} {reason}: {exc}") from None
        return resp


# --------------------------------------------------------------------------------------------------
# DNS: a real dnsmasq on loopback (`Dnsmasq`), serving A/AAAA records from an addn-hosts file and SRV
# records from its own conf file, plus `dns_query` (a minimal UDP DNS client to check what it serves)
# and config helpers `dns_cluster`, `file_cluster`, `write_endpoints_file`.

DNS_TYPES = {"A": 1, "AAAA": 28, "SRV": 33}
DNS_RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


@dataclass
class SrvRecord:
    service: str        # e.g. "_svc._tcp.drover.test"
    target: str         # a name with A/AAAA records in the same dnsmasq
    port: int
    priority: int = 0
    weight: int = 1


def _dns_name(data: bytes, pos: int) -> tuple[str, int]:
    """Decodes a (possibly compressed) name at `pos`; returns it and the position after it."""
    labels, end, jumps = [], None, 0
    while True:
        n = data[pos]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | data[pos + 1]
            jumps += 1
            if jumps > 32:
                raise ValueError("DNS name pointer loop")
            continue
        if n == 0:
            return ".".join(labels), (end if end is not None else pos + 1)
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n


def dns_query(server: tuple[str, int], name: str, qtype: str = "A", timeout: float = 1.0) -> tuple[str, list[Any]]:
    """One UDP query; returns (rcode name, answers): addresses for A/AAAA, (priority, weight, port,
    target) for SRV. Raises OSError/TimeoutError when nothing answers."""
    qid = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    packet += DNS_TYPES[qtype].to_bytes(2, "big") + b"\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, server)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and int.from_bytes(data[:2], "big") == qid:
                break
    rcode = DNS_RCODES.get(data[3] & 0x0F, str(data[3] & 0x0F))
    qdcount, ancount = int.from_bytes(data[4:6], "big"), int.from_bytes(data[6:8], "big")
    pos = 12
    for _ in range(qdcount):
        _, pos = _dns_name(data, pos)
        pos += 4
    answers: list[Any] = []
    for _ in range(ancount):
        _, pos = _dns_name(data, pos)
        rtype, rdlength = int.from_bytes(data[pos:pos + 2], "big"), int.from_bytes(data[pos + 8:pos + 10], "big")
        rdata = data[pos + 10:pos + 10 + rdlength]
        if rtype == 1:
            answers.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        elif rtype == 33:
            target, _ = _dns_name(data, pos + 16)
            answers.append((int.from_bytes(rdata[0:2], "big"), int.from_bytes(rdata[2:4], "big"),
                            int.from_bytes(rdata[4:6], "big"), target))
        pos += 10 + rdlength
    return rcode, answers


def ephemeral_port_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def restartable_port(*, udp: bool = False) -> int:
    """A free TCP (and, with `udp`, UDP) port on 127.0.0.1 outside the kernel's ephemeral range, for a
    server that a test kills and starts again on the same port. A port picked by binding port 0 comes
    from the ephemeral range, so while its server is down any socket in any test (a connect(), a DNS
    client's UDP socket) may be given it, and the restart then fails with "Address already in use".
    The kernel never hands out a port outside that range on its own, so such a port stays free for the
    restart. Only another caller of this function could pick the same port: random over thousands."""
    lo, hi = ephemeral_port_range()
    spans = [(s, e) for s, e in ((10000, lo - 1), (hi + 1, 65535)) if e - s >= 1000]
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    rng = random.SystemRandom()
    for _ in range(200):
        if spans:
            start, end = rng.choice(spans)
            port = rng.randint(start, end)
        else:
            port = 0  # the ephemeral range covers nearly everything: the best left is a port it gives
        socks = [socket.socket(socket.AF_INET, kind) for kind in kinds]
        try:
            socks[0].bind(("127.0.0.1", port))
            port = socks[0].getsockname()[1]
            for sock in socks[1:]:
                sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port on 127.0.0.1")


class Dnsmasq:
    """A real dnsmasq on 127.0.0.1 and a free port, authoritative for `domain` (unknown names there are
    NXDOMAIN, nothing is forwarded), with a `ttl`-second TTL on everything it serves.

    hosts: name -> addresses (A and AAAA, from an addn-hosts file; `set_hosts` rewrites it and sends
    SIGHUP, which makes dnsmasq re-read it). srv: SRV records (from dnsmasq's own conf file; `set_srv`
    rewrites it and restarts dnsmasq on the same port, since srv-host= lines are only read at start).
    `stop()` kills it (queries then go unanswered: ICMP port unreachable), `start()` brings it back on the
    same port (one outside the ephemeral range, so nothing takes it meanwhile). Each change waits until
    dnsmasq actually serves it, so tests never race the server.
    Skips the test when dnsmasq is not installed (scripts/install-deps.sh installs dnsmasq-base).
    """

    BINARY_CANDIDATES = ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq")

    def __init__(self, hosts: dict[str, list[str]] | None = None, srv: Iterable[SrvRecord] = (), *,
                 ttl: int = 1, domain: str = "drover.test", start: bool = True):
        self.binary = next((b for b in self.BINARY_CANDIDATES if os.access(b, os.X_OK)), None)
        if self.binary is None:
            raise unittest.SkipTest("dnsmasq is not installed (apt-get install dnsmasq-base)")
        self.ttl = ttl
        self.domain = domain
        self._tmp = tempfile.TemporaryDirectory(prefix="drover-dns-")
        self.dir = self._tmp.name
        os.chmod(self.dir, 0o755)  # readable by the user dnsmasq may switch to
        self.hosts_path = os.path.join(self.dir, "hosts")
        self.conf_path = os.path.join(self.dir, "dnsmasq.conf")
        self.hosts: dict[str, list[str]] = dict(hosts or {})
        self.srv: list[SrvRecord] = list(srv)
        self.port = restartable_port(udp=True)
        self.proc: subprocess.Popen | None = None
        self._log: _StreamReader | None = None
        self._write_hosts()
        self._write_conf()
        if start:
            self.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def addr(self) -> str:
        return format_addr(self.address)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "dnsmasq already running"
        argv = [self.binary, "--no-daemon", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}",
                f"--conf-file={self.conf_path}", f"--addn-hosts={self.hosts_path}", f"--local-ttl={self.ttl}",
                f"--local=/{self.domain}/", "--pid-file="]
        if os.geteuid() == 0:
            argv.append("--user=root")  # else it drops to nobody, who may not read the test's files
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
            self._log = _StreamReader(self.proc.stderr, "dnsmasq", bool(os.environ.get("DROVER_TEST_ECHO")))
            try:
                wait_until(self._answers, max(0.1, deadline - time.monotonic()), interval=0.02,
                           message="dnsmasq answers queries")
                return
            except AssertionError:
                # Restarting on the same port can briefly find it still held by the old process.
                exited = self.proc.poll() is not None
                self._kill()
                if not exited or time.monotonic() >= deadline:
                    raise AssertionError(f"dnsmasq did not start: {self.log_tail()}") from None

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError("dnsmasq exited")
        try:
            dns_query(self.address, f"probe.{self.domain}", "A", timeout=0.2)
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """Kills dnsmasq (SIGKILL: no goodbye); `start()` brings it back on the same port."""
        self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if self._log is not None:
                self._log.join(1.0)
            if self.proc.stderr:
                self.proc.stderr.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        self._kill()
        self._tmp.cleanup()

    def log_tail(self, n: int = 20) -> str:
        lines = self._log.lines[-n:] if self._log else []
        return "\n".join(lines) if lines else "(no dnsmasq output)"

    # -- records ---------------------------------------------------------------------------------------

    def _write_hosts(self) -> None:
        lines = [f"{address} {name}" for name, addresses in self.hosts.items() for address in addresses]
        tmp = self.hosts_path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.hosts_path)

    def _write_conf(self) -> None:
        lines = [f"srv-host={r.service},{r.target},{r.port},{r.priority},{r.weight}" for r in self.srv]
        with open(self.conf_path, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")

    def set_hosts(self, hosts: dict[str, list[str]], timeout: float = 5.0) -> None:
        """Replaces every A/AAAA record (SIGHUP) and waits until dnsmasq serves the new ones (and answers
        NXDOMAIN for names no longer listed)."""
        gone = [name for name in self.hosts if name not in hosts]
        self.hosts = dict(hosts)
        self._write_hosts()
        assert self.proc is not None and self.proc.poll() is None, "dnsmasq is not running"
        self.proc.send_signal(signal.SIGHUP)
        for name, addresses in self.hosts.items():
            v4 = sorted(a for a in addresses if ":" not in a)
            wait_until(lambda: sorted(dns_query(self.address, name, "A")[1]) == v4, timeout,
                       message=lambda: f"dnsmasq serves A {name} = {v4}")
        for name in gone:
            wait_until(lambda: dns_query(self.address, name, "A")[0] == "NXDOMAIN", timeout,
                       message=lambda: f"dnsmasq answers NXDOMAIN for {name}")

    def set_srv(self, srv: Iterable[SrvRecord], timeout: float = 5.0) -> None:
        """Replaces every SRV record: rewrites the conf file and restarts dnsmasq on the same port."""
        self.srv = list(srv)
        self._write_conf()
        self._kill()
        self.start(timeout)

    def __enter__(self) -> "Dnsmasq":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


def dns_cluster(name: str, dns_name: str, server: Dnsmasq, *, type: str = "a", port: int | None = None,
                refresh_min: str = "100ms", refresh_max: str = "1s", max_stale: str | None = None,
                self_healing: bool = False, **extra: Any) -> dict:
    """A cluster discovered through `server`; short refresh bounds so tests follow changes quickly."""
    dns: dict[str, Any] = {"name": dns_name, "type": type, "servers": [server.addr],
                           "refresh": {"min": refresh_min, "max": refresh_max}}
    if port is not None:
        dns["port"] = port
    if max_stale is not None:
        dns["max_stale"] = max_stale
    return {"name": name, "discovery": {"dns": dns}, **_healing(extra, self_healing)}


def file_cluster(name: str, path: str, self_healing: bool = False, **extra: Any) -> dict:
    return {"name": name, "discovery": {"file": path}, **_healing(extra, self_healing)}


def endpoints_yaml(hosts: Iterable[Any]) -> str:
    """An endpoints file: hosts are addresses, backends (anything with .addr) or (address, weight)."""
    lines = ["endpoints:"]
    for host in hosts:
        if isinstance(host, tuple):
            lines.append(f"  - {{ address: \"{host[0]}\", weight: {host[1]} }}")
        else:
            lines.append(f"  - \"{host if isinstance(host, str) else host.addr}\"")
    return "\n".join(lines) + "\n"


def write_endpoints_file(path: str, hosts: Iterable[Any]) -> None:
    """Publishes an endpoints file the way orchestrators do: write a temporary file, rename it over."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(endpoints_yaml(hosts))
    os.replace(tmp, path)


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
