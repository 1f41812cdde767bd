#!/usr/bin/python3
"""End-to-end benchmark: Drover against HAProxy and NGINX, same origin, same load, as ratios.

Driven by run.sh (which installs the tools, checks the binary and owns the cleanup trap); standard
library only. run.sh starts it inside a private network namespace whose TCP congestion control is
cubic unless told otherwise (--congestion-control; the report names it). One run:

  * an NGINX origin on loopback serves /small (100 bytes), /16k and /1m from a temporary folder;
  * every round starts each proxy fresh (one worker, pinned to core 0 with taskset; wrk and the origin
    share core 1) and runs every case against every target -- direct, Drover, HAProxy, NGINX -- in an
    order that rotates from round to round, so slow drifts of the shared machine hit everyone alike;
  * per run: requests/s, p50/p99 latency, bytes/s (wrk, exact numbers from report.lua) and the CPU
    time the proxy used during the run (utime+stime from /proc, NGINX master and workers summed);
  * per round and proxy: RSS right after start, and per idle connection: a fresh proxy, N keep-alive
    connections that each made one request and then sit idle, (RSS after - RSS before) / N;
  * with --callgrind: instructions per request under valgrind --tool=callgrind for a fixed number of
    sequential requests (counters zeroed after a warm-up and dumped right after, via callgrind_control,
    so start-up and shutdown are not counted).

Medians over rounds go to stdout and to results/latest.md; every raw number and the proxies' logs go
to results/raw/<stamp>/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROXY_CORE = "0"
CLIENT_CORE = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 15.0
VALGRIND_START_TIMEOUT = 120.0
IO_TIMEOUT = 10.0

FILES = {"/small": 100, "/16k": 16 * 1024, "/1m": 1024 * 1024}
PROXIES = ["drover", "haproxy", "nginx"]
# "floor" is a bare byte relay (floor_relay.cpp): each client connection gets an upstream connection
# of its own and bytes go through untouched. No proxy can spend less per request than it does.
TARGETS = ["direct", "floor"] + PROXIES
LABEL = {"direct": "direct (no proxy)", "floor": "floor: bare byte relay", "drover": "Drover",
         "haproxy": "HAProxy", "nginx": "NGINX"}


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    mode: str            # "http" or "tcp": which listener of the proxy
    path: str
    connections: int
    close: bool = False  # a new connection per request ("Connection: close")
    # The floor relay runs too: keep-alive and small responses only. It copies large bodies where the
    # proxies splice, and it opens upstream connections with a blocking connect, no tuning: no floor
    # for those.
    floor: bool = False


CASES = [
    Case("http-small", "HTTP keep-alive, 100-byte responses", "http", "/small", 50, floor=True),
    Case("http-16k", "HTTP keep-alive, 16 KiB responses", "http", "/16k", 50),
    Case("http-1m", "HTTP keep-alive, 1 MiB responses", "http", "/1m", 10),
    Case("tcp-small", "TCP relay, keep-alive, 100-byte responses", "tcp", "/small", 50, floor=True),
    Case("tcp-1m", "TCP relay, keep-alive, 1 MiB responses", "tcp", "/1m", 10),
    Case("tcp-conn", "TCP relay, a new connection per request, 100-byte responses", "tcp", "/small", 50,
         close=True),
]

CALLGRIND_PHASES = [
    ("http-keepalive", "HTTP keep-alive, one connection, sequential 100-byte requests", "http", False),
    ("tcp-keepalive", "TCP relay, one connection, sequential 100-byte requests", "tcp", False),
    ("tcp-conn", "TCP relay, a new connection per 100-byte request", "tcp", True),
]


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Small HTTP/1.1 client (precheck, idle connections, callgrind load).

def request_bytes(path: str, close: bool) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def read_response(f) -> tuple[int, dict[bytes, bytes], bytes]:
    """Reads one response framed by Content-Length, chunked, or close."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ConnectionError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        body = f.read(n)
        if len(body) != n:
            raise ConnectionError(f"body cut short: {len(body)} of {n} bytes")
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(f.read(size))
            f.readline()
        body = b"".join(chunks)
    else:
        body = f.read()
    return status, headers, body


class Conn:
    def __init__(self, port: int, timeout: float = IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def get(self, path: str, close: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
        self.sock.sendall(request_bytes(path, close))
        return read_response(self.file)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def sequential_requests(port: int, path: str, n: int, new_connection: bool) -> None:
    """n requests one after another; raises on anything but a 200 of the expected size."""
    conn = None if new_connection else Conn(port)
    try:
        for _ in range(n):
            c = Conn(port) if new_connection else conn
            status, _, body = c.get(path, close=new_connection)
            if new_connection:
                c.close()
            if status != 200 or len(body) != FILES[path]:
                raise RuntimeError(f"GET {path}: status {status}, {len(body)} body bytes")
    finally:
        if conn:
            conn.close()


# ----------------------------------------------------------------------------------------------------
# Processes.

def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not listening on {port} after {timeout:.0f}s")
            time.sleep(0.05)


def children_of(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
    return kids


def cpu_seconds(pids: list[int], user_only: bool = False) -> float:
    """CPU time of the processes: utime+stime, or utime alone (user space: the proxy's own code, not
    the kernel's TCP work it causes)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + (0 if user_only else int(fields[12]))  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


class Service:
    """One process we started (in its own session, so its whole group can be stopped)."""

    registry: list["Service"] = []
    pid_file: Path | None = None

    def __init__(self, name: str, argv: list[str], log_path: Path, ports: list[int],
                 start_timeout: float = START_TIMEOUT):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        Service.registry.append(self)
        if Service.pid_file:
            with open(Service.pid_file, "a") as f:
                f.write(f"{self.proc.pid}\n")
        try:
            for port in ports:
                wait_for_port(port, self.proc, start_timeout)
        except Exception as e:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{name} did not start: {e}\n  {' '.join(argv)}\n{tail}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        """The process and, for NGINX, its workers."""
        return [self.pid] + children_of(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join("    | " + line for line in text)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.log_file.close()
        if self in Service.registry:
            Service.registry.remove(self)
        return self.proc.returncode

    @classmethod
    def stop_all(cls) -> None:
        for s in list(cls.registry):
            s.stop(timeout=5)


# ----------------------------------------------------------------------------------------------------
# The bench.

@dataclass
class Failure:
    where: str
    what: str


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    rawdir: Path
    drover_bin: Path
    floor_bin: Path | None = None   # None: no floor rows (the relay was not built)
    ports: dict[str, int] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    memory: list[dict] = field(default_factory=list)
    callgrind: dict[str, dict[str, float]] = field(default_factory=dict)
    scaling: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stream_module: str = ""

    # -- setup ----------------------------------------------------------------------------------------

    def prepare(self) -> None:
        os.chmod(self.workdir, 0o755)  # NGINX workers run as nobody and must read the docroot
        docroot = self.workdir / "docroot"
        docroot.mkdir()
        for path, size in FILES.items():
            pattern = b"drover-e2e-0123456789abcdefghijklmnopqrstuvwxyz\n"
            (docroot / path.lstrip("/")).write_bytes((pattern * (size // len(pattern) + 1))[:size])
        for d in ("origin-tmp", "nginx-proxy-tmp"):
            (self.workdir / d).mkdir()
        names = ["origin", "drover_http", "drover_tcp", "drover_admin", "haproxy_http", "haproxy_tcp",
                 "nginx_http", "nginx_tcp", "floor"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.stream_module = find_stream_module()

    def render(self, template: str, out_name: str, **values: str | int) -> Path:
        text = (HERE / template).read_text()
        for k, v in values.items():
            text = text.replace("{{" + k + "}}", str(v))
        left = re.findall(r"\{\{[A-Z_]+\}\}", text)
        if left:
            raise RuntimeError(f"{template}: unfilled placeholders {left}")
        path = self.workdir / out_name
        path.write_text(text)
        return path

    def port(self, target: str, mode: str) -> int:
        if target == "direct":
            return self.ports["origin"]
        if target == "floor":   # a byte relay: the same port serves either mode
            return self.ports["floor"]
        return self.ports[f"{target}_{mode}"]

    def targets(self, case: Case | None = None) -> list[str]:
        """What runs: every case, or one case (the floor only where it means something)."""
        return [t for t in TARGETS
                if t != "floor" or (self.floor_bin is not None and (case is None or case.floor))]

    # -- processes ------------------------------------------------------------------------------------

    def start_origin(self) -> Service:
        conf = self.render("nginx-origin.conf.tmpl", "nginx-origin.conf", WORKDIR=self.workdir,
                           DOCROOT=self.workdir / "docroot", ORIGIN_PORT=self.ports["origin"])
        return Service("origin", ["taskset", "-c", CLIENT_CORE, "nginx", "-p", str(self.workdir),
                                  "-e", str(self.workdir / "origin.error.log"), "-c", str(conf)],
                       self.workdir / "origin.log", [self.ports["origin"]])

    def proxy_argv(self, proxy: str, single_process: bool = False, workers: int = 1) -> list[str]:
        if proxy == "drover":
            conf = self.render("drover.yaml.tmpl", f"drover-{workers}w.yaml", ORIGIN_PORT=self.ports["origin"],
                               HTTP_PORT=self.ports["drover_http"], TCP_PORT=self.ports["drover_tcp"],
                               ADMIN_PORT=self.ports["drover_admin"], WORKERS=workers)
            return [str(self.drover_bin), "-c", str(conf)]
        if proxy == "haproxy":
            conf = self.render("haproxy.cfg.tmpl", "haproxy.cfg", ORIGIN_PORT=self.ports["origin"],
                               HTTP_PORT=self.ports["haproxy_http"], TCP_PORT=self.ports["haproxy_tcp"])
            return ["haproxy", "-db", "-f", str(conf)]
        conf = self.render("nginx-proxy.conf.tmpl", "nginx-proxy.conf", ORIGIN_PORT=self.ports["origin"],
                           HTTP_PORT=self.ports["nginx_http"], TCP_PORT=self.ports["nginx_tcp"],
                           WORKDIR=self.workdir, LOAD_STREAM_MODULE=self.stream_module,
                           MASTER_PROCESS="off" if single_process else "on")
        return ["nginx", "-p", str(self.workdir), "-e", str(self.workdir / "nginx-proxy.error.log"),
                "-c", str(conf)]

    def start_proxy(self, proxy: str, tag: str) -> Service:
        if proxy == "floor":
            return Service("floor", ["taskset", "-c", PROXY_CORE, str(self.floor_bin), str(self.ports["floor"]),
                                     str(self.ports["origin"])],
                           self.rawdir / f"floor-{tag}.log", [self.ports["floor"]])
        argv = ["taskset", "-c", PROXY_CORE] + self.proxy_argv(proxy)
        return Service(proxy, argv, self.rawdir / f"{proxy}-{tag}.log",
                       [self.ports[f"{proxy}_http"], self.ports[f"{proxy}_tcp"]])

    # -- checks ---------------------------------------------------------------------------------------

    def precheck(self, services: dict[str, Service]) -> None:
        """Every target answers every path with 200 and the exact file; a failure is reported, not fixed."""
        expected = {p: (self.workdir / "docroot" / p.lstrip("/")).read_bytes() for p in FILES}
        for target in self.targets():
            for mode in ("http", "tcp"):
                if target in ("direct", "floor") and mode == "tcp":
                    continue
                for path in FILES:
                    for close in (False, True):
                        where = f"precheck {LABEL[target]} {mode} GET {path}" + (" (close)" if close else "")
                        try:
                            c = Conn(self.port(target, mode))
                            try:
                                status, _, body = c.get(path, close=close)
                                if not close:
                                    status2, _, body2 = c.get(path)  # the connection is reusable
                                    if (status2, body2) != (200, expected[path]):
                                        raise RuntimeError(f"second request on the connection: status "
                                                           f"{status2}, {len(body2)} body bytes")
                            finally:
                                c.close()
                            if status != 200 or body != expected[path]:
                                raise RuntimeError(f"status {status}, {len(body)} body bytes "
                                                   f"(expected 200 and the {FILES[path]}-byte file)")
                        except Exception as e:
                            self.fail(where, f"{type(e).__name__}: {e}")
        for name, svc in services.items():
            if not svc.alive():
                self.fail(f"precheck {LABEL[name]}", f"exited with status {svc.proc.returncode}\n"
                                                     f"{svc.log_tail()}")

    def fail(self, where: str, what: str) -> None:
        log(f"FAILURE {where}: {what}")
        self.failures.append(Failure(where, what))

    # -- throughput -----------------------------------------------------------------------------------

    def wrk(self, case: Case, port: int, duration: int, raw_name: str | None, threads: int = 1,
            cores: str = CLIENT_CORE) -> dict:
        argv = ["taskset", "-c", cores, "wrk", f"-t{threads}", f"-c{case.connections}", f"-d{duration}s",
                "--timeout", "5s", "--latency", "-s", str(HERE / "report.lua")]
        if case.close:
            argv += ["-H", "Connection: close"]
        argv.append(f"http://127.0.0.1:{port}{case.path}")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
        if raw_name:
            (self.rawdir / f"{raw_name}.wrk.txt").write_text(shlex.join(argv) + "\n" + out.stdout + out.stderr)
        m = re.search(r"^WRK_JSON (\{.*\})$", out.stdout, re.M)
        if out.returncode != 0 or not m:
            raise RuntimeError(f"wrk failed (status {out.returncode}): {out.stderr.strip()[-400:]}")
        return json.loads(m.group(1))

    def run_case(self, rnd: int, case: Case, target: str, services: dict[str, Service]) -> None:
        port = self.port(target, case.mode)
        svc = services.get(target)
        raw = f"r{rnd}-{case.name}-{target}"
        try:
            if self.args.warmup > 0:
                self.wrk(case, port, self.args.warmup, None)
            pids = svc.pids() if svc else []
            cpu0, user0 = cpu_seconds(pids), cpu_seconds(pids, user_only=True)
            res = self.wrk(case, port, self.args.duration, raw)
            cpu1, user1 = cpu_seconds(pids), cpu_seconds(pids, user_only=True)
        except Exception as e:
            self.fail(f"round {rnd} {case.name} {LABEL[target]}", str(e))
            res, cpu0, cpu1, user0, user1 = None, 0.0, 0.0, 0.0, 0.0
        if res is not None:
            secs = res["duration_us"] / 1e6
            res.update(round=rnd, case=case.name, target=target, rps=res["requests"] / secs,
                       bytes_per_s=res["bytes"] / secs,
                       proxy_cpu_s=(cpu1 - cpu0) if svc else None)
            res["cpu_per_100k"] = (res["proxy_cpu_s"] / res["requests"] * 1e5
                                   if svc and res["requests"] else None)
            res["user_cpu_per_100k"] = ((user1 - user0) / res["requests"] * 1e5
                                        if svc and res["requests"] else None)
            self.runs.append(res)
            errs = {k: res[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors",
                                        "timeout_errors") if res[k]}
            if errs:
                self.fail(f"round {rnd} {case.name} {LABEL[target]}",
                          "wrk counted " + ", ".join(f"{v} {k.replace('_errors', '')}" for k, v in errs.items())
                          + f" in {res['requests']} requests (status = non-2xx/3xx responses)")
            log(f"round {rnd} {case.name:10} {LABEL[target]:18} {res['rps']:10.0f} req/s  "
                f"p99 {res['p99_us'] / 1000:7.2f} ms  "
                + (f"cpu {res['cpu_per_100k']:.3f} s/100k" if svc else ""))
        if svc and not svc.alive():
            self.fail(f"round {rnd} {case.name} {LABEL[target]}",
                      f"{LABEL[target]} exited with status {svc.proc.returncode} during the run; restarted\n"
                      f"{svc.log_tail()}")
            svc.stop()
            services[target] = self.start_proxy(target, f"r{rnd}-restart-{case.name}")

    # -- scaling --------------------------------------------------------------------------------------

    def scaling_test(self, rnd: int) -> None:
        """http-small through Drover with workers: 1 and 2, nothing pinned (wrk -t2 and the origin share
        both cores with the proxy), and direct for the ceiling the machine allows."""
        case = next(c for c in CASES if c.name == "http-small")
        all_cores = f"{PROXY_CORE},{CLIENT_CORE}"
        order = ["direct", 1, 2] if rnd % 2 else [2, 1, "direct"]
        for what in order:
            where = f"round {rnd} scaling {'direct' if what == 'direct' else f'{what} worker(s)'}"
            svc = None
            try:
                if what == "direct":
                    port = self.ports["origin"]
                else:
                    argv = ["taskset", "-c", all_cores] + self.proxy_argv("drover", workers=what)
                    svc = Service("drover", argv, self.rawdir / f"drover-r{rnd}-scaling-{what}w.log",
                                  [self.ports["drover_http"], self.ports["drover_tcp"]])
                    port = self.ports["drover_http"]
                if self.args.warmup > 0:
                    self.wrk(case, port, self.args.warmup, None, threads=2, cores=all_cores)
                pids = svc.pids() if svc else []
                cpu0 = cpu_seconds(pids)
                res = self.wrk(case, port, self.args.duration, f"r{rnd}-scaling-{what}", threads=2, cores=all_cores)
                cpu1 = cpu_seconds(pids)
                secs = res["duration_us"] / 1e6
                row = {"round": rnd, "workers": what, "rps": res["requests"] / secs, "p99_us": res["p99_us"],
                       "cpu_per_100k": (cpu1 - cpu0) / res["requests"] * 1e5 if svc and res["requests"] else None,
                       "errors": sum(res[k] for k in ("status_errors", "connect_errors", "read_errors",
                                                      "write_errors", "timeout_errors"))}
                self.scaling.append(row)
                if row["errors"]:
                    self.fail(where, f"wrk counted {row['errors']} errors in {res['requests']} requests")
                log(f"{where}: {row['rps']:10.0f} req/s  p99 {row['p99_us'] / 1000:7.2f} ms")
            except Exception as e:
                self.fail(where, f"{type(e).__name__}: {e}")
            finally:
                if svc:
                    if not svc.alive():
                        self.fail(where, f"Drover exited with status {svc.proc.returncode}\n{svc.log_tail()}")
                    svc.stop()

    # -- memory ---------------------------------------------------------------------------------------

    def memory_test(self, rnd: int, proxy: str) -> None:
        n = self.args.idle_connections
        row = {"round": rnd, "proxy": proxy}
        for mode in ("http", "tcp"):
            where = f"round {rnd} memory {mode} {LABEL[proxy]}"
            svc = self.start_proxy(proxy, f"r{rnd}-memory-{mode}")
            conns: list[Conn] = []
            try:
                port = self.port(proxy, mode)
                row.setdefault("rss_start_kib", settled_rss(svc))
                # Warm-up: pools, buffers and lazily built tables exist before the baseline.
                sequential_requests(port, "/small", 100, new_connection=False)
                sequential_requests(port, "/small", 20, new_connection=True)
                before = settled_rss(svc)
                for _ in range(n):
                    c = Conn(port)
                    conns.append(c)
                    status, _, body = c.get("/small")
                    if status != 200 or len(body) != FILES["/small"]:
                        raise RuntimeError(f"idle connection {len(conns)}: status {status}, {len(body)} bytes")
                after = settled_rss(svc)
                row[f"{mode}_per_conn_bytes"] = (after - before) * 1024 / n
                row[f"{mode}_rss_before_kib"], row[f"{mode}_rss_after_kib"] = before, after
                log(f"{where}: {before} KiB -> {after} KiB with {n} idle connections = "
                    f"{row[f'{mode}_per_conn_bytes']:.0f} B each")
            except Exception as e:
                self.fail(where, f"{type(e).__name__}: {e}\n{svc.log_tail()}")
            finally:
                for c in conns:
                    c.close()
                if not svc.alive():
                    self.fail(where, f"{LABEL[proxy]} exited with status {svc.proc.returncode}\n{svc.log_tail()}")
                svc.stop()
        self.memory.append(row)

    # -- callgrind ------------------------------------------------------------------------------------

    def callgrind_test(self, proxy: str) -> None:
        n = self.args.callgrind_requests
        out = self.rawdir / f"callgrind.{proxy}.out"
        argv = ["taskset", "-c", PROXY_CORE, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                ] + self.proxy_argv(proxy, single_process=True)
        svc = Service(proxy, argv, self.rawdir / f"{proxy}-callgrind.log",
                      [self.ports[f"{proxy}_http"], self.ports[f"{proxy}_tcp"]], VALGRIND_START_TIMEOUT)
        results: dict[str, float] = {}
        try:
            for dump, (phase, _, mode, new_conn) in enumerate(CALLGRIND_PHASES, start=1):
                where = f"callgrind {LABEL[proxy]} {phase}"
                try:
                    port = self.port(proxy, mode)
                    sequential_requests(port, "/small", max(20, n // 10), new_conn)  # warm-up
                    callgrind_control(svc.pid, "-z")
                    sequential_requests(port, "/small", n, new_conn)
                    callgrind_control(svc.pid, "-d")
                    dump_file = Path(f"{out}.{dump}")
                    ir = callgrind_total(dump_file)
                    results[phase] = ir / n
                    log(f"{where}: {ir} Ir / {n} requests = {ir / n:.0f}")
                except Exception as e:
                    self.fail(where, f"{type(e).__name__}: {e}\n{svc.log_tail()}")
                    break
        finally:
            svc.stop(timeout=60)
        self.callgrind[proxy] = results

    # -- main -----------------------------------------------------------------------------------------

    def run(self) -> None:
        self.prepare()
        origin = self.start_origin()
        try:
            status, _, body = Conn(self.ports["origin"]).get("/small", close=True)
            if status != 200 or len(body) != 100:
                raise RuntimeError(f"origin answered {status} with {len(body)} bytes")
            cases = [c for c in CASES if c.name in self.args.cases]
            for rnd in range(1, self.args.rounds + 1):
                log(f"round {rnd}/{self.args.rounds}")
                services = {p: self.start_proxy(p, f"r{rnd}") for p in self.targets() if p != "direct"}
                try:
                    if rnd == 1:
                        self.precheck(services)
                    for ci, case in enumerate(cases):
                        targets = self.targets(case)
                        shift = (rnd - 1 + ci) % len(targets)
                        for target in targets[shift:] + targets[:shift]:
                            self.run_case(rnd, case, target, services)
                finally:
                    for p, svc in services.items():
                        if not svc.alive():
                            self.fail(f"round {rnd} {LABEL[p]}", f"exited with status {svc.proc.returncode}"
                                                                 f"\n{svc.log_tail()}")
                        svc.stop()
                if self.args.scaling:
                    self.scaling_test(rnd)
                if self.args.idle_connections > 0:
                    shift = (rnd - 1) % len(PROXIES)
                    for proxy in PROXIES[shift:] + PROXIES[:shift]:
                        self.memory_test(rnd, proxy)
            if self.args.callgrind:
                for proxy in PROXIES:
                    self.callgrind_test(proxy)
        finally:
            origin.stop()
            Service.stop_all()


def settled_rss(svc: Service, timeout: float = 3.0) -> int:
    """RSS once two reads 200 ms apart agree (the proxy may still be finishing the last accepts)."""
    last = rss_kib(svc.pids())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_kib(svc.pids())
        if now == last:
            return now
        last = now
    return last


def callgrind_control(pid: int, flag: str) -> None:
    out = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or "OK." not in out.stdout:
        raise RuntimeError(f"callgrind_control {flag} {pid}: {out.stdout.strip()} {out.stderr.strip()}")


def callgrind_total(path: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            m = re.search(r"^totals:\s*(\d+)", path.read_text(errors="replace"), re.M)
            if m:
                return int(m.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"no callgrind dump at {path}")


def find_stream_module() -> str:
    """NGINX's stream module: built in, or Debian's dynamic libnginx-mod-stream."""
    v = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    if re.search(r"--with-stream(\s|$)", v):
        return ""
    for so in ("/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"):
        if os.path.exists(so):
            return f"load_module {so};"
    raise RuntimeError("NGINX has no stream module: apt-get install libnginx-mod-stream "
                       "(scripts/install-deps.sh --bench does)")


# ----------------------------------------------------------------------------------------------------
# Report.

def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "–"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v / 1000:.2f}"
    if kind == "cpu":
        return f"{v:.3f}"
    if kind == "mibs":
        return f"{v / 1048576:,.0f}"
    if kind == "bytes":
        return f"{v:,.0f}"
    if kind == "ir":
        return f"{v:,.0f}"
    if kind == "kib":
        return f"{v / 1024:.1f}"
    return str(v)


def tool_version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def environment(drover_bin: Path) -> dict[str, str]:
    cpu = "?"
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1) if m else "?"
    except OSError:
        pass
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git": git + (" with uncommitted changes" if dirty else ""),
        "drover": tool_version([str(drover_bin), "--version"], r"drover\s+(\S+)"),
        "haproxy": tool_version(["haproxy", "-v"], r"version\s+(\S+)"),
        "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        "wrk": tool_version(["wrk", "--version"], r"wrk\s+(\S+)"),
        "valgrind": tool_version(["valgrind", "--version"], r"valgrind-(\S+)"),
        "kernel": platform.release(),
        "cpu": f"{os.cpu_count()} × {cpu}",
    }


def report(b: Bench, env: dict[str, str]) -> str:
    a = b.args
    cases = [c for c in CASES if c.name in a.cases]
    L: list[str] = []
    L.append(f"_{env['date']} · git {env['git']} · Drover {env['drover']} (binary built {env['drover_built']}) · HAProxy {env['haproxy']} · "
             f"NGINX {env['nginx']} · wrk {env['wrk']}_  ")
    L.append(f"_Machine: {env['cpu']}, Linux {env['kernel']}; shared with other work while this ran._  ")
    if "congestion_control" in env:   # tables before this line was added do not have it
        where = (f"a private network namespace ({env['netns']})" if env.get("netns")
                 else "the machine's own network namespace")
        L.append(f"_Network: loopback in {where}, TCP congestion control {env['congestion_control']} "
                 f"(the machine's: {env['machine_congestion_control']})._")
    L.append("")
    L.append(f"Medians of {a.rounds} round(s); each run is `wrk -t1` for {a.duration} s after a {a.warmup} s "
             f"warm-up. Each proxy runs one worker pinned to core {PROXY_CORE}; wrk and the NGINX origin "
             f"share core {CLIENT_CORE}. Latency in ms; proxy CPU = utime+stime of the proxy process(es) "
             "during the run, per 100k requests (lower is better); user = utime alone, the proxy's own "
             "code without the kernel's TCP work it causes (on loopback the kernel's share is most of "
             "it, and about the same for every proxy: each moves the same bytes through the same "
             "syscalls). Ratios are Drover ÷ the other, from "
             "the medians: below 1 means Drover is lower (better for latency, CPU, memory; worse for "
             "requests/s and throughput). With several rounds, (min–max) follows the median. "
             "Requests/s and latency are mostly set by the shared client core and by whatever else runs "
             "on the machine; proxy CPU per request and the callgrind counts are the numbers to compare.")
    L.append("")

    by = {}
    for r in b.runs:
        by.setdefault((r["case"], r["target"]), []).append(r)

    def m(case: str, target: str, key: str) -> float | None:
        return med([r.get(key) for r in by.get((case, target), [])])

    def with_range(case: str, target: str, key: str, kind: str) -> str:
        vals = [r.get(key) for r in by.get((case, target), []) if r.get(key) is not None]
        text = fmt(m(case, target, key), kind)
        if len(vals) > 1:
            text += f" ({fmt(min(vals), kind)}–{fmt(max(vals), kind)})"
        return text

    for case in cases:
        L.append(f"### {case.title}")
        L.append("")
        close = ' -H "Connection: close"' if case.close else ""
        L.append(f"`wrk -t1 -c{case.connections}{close}`, `GET {case.path}` "
                 f"({'TCP listener' if case.mode == 'tcp' else 'HTTP listener'}).")
        L.append("")
        L.append("| target | requests/s | MiB/s | p50 ms | p99 ms | proxy CPU-s per 100k req | of which user | wrk errors |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for t in TARGETS:
            runs = by.get((case.name, t), [])
            if t == "floor" and (not runs or not case.floor):   # not built, or not a case for it
                continue
            errs = {k: sum(r[k] for r in runs) for k in ("status_errors", "connect_errors", "read_errors",
                                                         "write_errors", "timeout_errors")}
            err_txt = ", ".join(f"{v} {k.replace('_errors', '').replace('status', 'non-2xx')}"
                                for k, v in errs.items() if v) or ("0" if runs else "no run")
            L.append(f"| {LABEL[t]} | {with_range(case.name, t, 'rps', 'rps')} | "
                     f"{fmt(m(case.name, t, 'bytes_per_s'), 'mibs')} | {fmt(m(case.name, t, 'p50_us'), 'ms')} | "
                     f"{fmt(m(case.name, t, 'p99_us'), 'ms')} | {with_range(case.name, t, 'cpu_per_100k', 'cpu')} | "
                     f"{fmt(m(case.name, t, 'user_cpu_per_100k'), 'cpu') if t != 'direct' else '–'} | {err_txt} |")
        for other in ("haproxy", "nginx", "floor"):
            if other == "floor" and (not by.get((case.name, "floor")) or not case.floor):
                continue
            cells = [ratio(m(case.name, "drover", k), m(case.name, other, k))
                     for k in ("rps", "bytes_per_s", "p50_us", "p99_us", "cpu_per_100k", "user_cpu_per_100k")]
            L.append(f"| **Drover ÷ {'the floor' if other == 'floor' else LABEL[other]}** | " + " | ".join(cells) + " | |")
        if case.name == "http-1m":
            L.append(f"| **Drover ÷ direct** | {ratio(m(case.name, 'drover', 'rps'), m(case.name, 'direct', 'rps'))}"
                     f" | {ratio(m(case.name, 'drover', 'bytes_per_s'), m(case.name, 'direct', 'bytes_per_s'))}"
                     " | | | | | |")
        L.append("")

    mem = {p: [r for r in b.memory if r["proxy"] == p] for p in PROXIES}

    def mm(p: str, key: str) -> float | None:
        return med([r.get(key) for r in mem[p]])

    if b.memory:
        n = a.idle_connections
        L.append("### Memory")
        L.append("")
        L.append(f"RSS of a fresh proxy (NGINX: master + worker), and the growth per idle connection: after a "
                 f"warm-up, {n:,} connections each make one `GET /small` and then stay open and idle; "
                 f"(RSS after − RSS before) ÷ {n:,}. A TCP connection includes its upstream connection.")
        L.append("")
        L.append("| proxy | RSS at start, MiB | per idle HTTP keep-alive connection, bytes | "
                 "per idle TCP connection, bytes |")
        L.append("|---|---:|---:|---:|")
        for p in PROXIES:
            L.append(f"| {LABEL[p]} | {fmt(mm(p, 'rss_start_kib'), 'kib')} | "
                     f"{fmt(mm(p, 'http_per_conn_bytes'), 'bytes')} | {fmt(mm(p, 'tcp_per_conn_bytes'), 'bytes')} |")
        for other in ("haproxy", "nginx"):
            L.append(f"| **Drover ÷ {LABEL[other]}** | "
                     + " | ".join(ratio(mm("drover", k), mm(other, k))
                                  for k in ("rss_start_kib", "http_per_conn_bytes", "tcp_per_conn_bytes")) + " |")
        L.append("")

    if b.callgrind:
        L.append("### Instructions per request (callgrind)")
        L.append("")
        L.append(f"`valgrind --tool=callgrind`, one worker (NGINX with `master_process off`), "
                 f"{a.callgrind_requests:,} sequential `GET /small` per phase from one client; counters are "
                 "zeroed after a warm-up and dumped right after the phase (`callgrind_control`), so start-up "
                 "and shutdown are not counted. Deterministic, unlike the timings above; all threads counted.")
        L.append("")
        L.append("| proxy | " + " | ".join(title for _, title, _, _ in CALLGRIND_PHASES) + " |")
        L.append("|---|" + "---:|" * len(CALLGRIND_PHASES))
        for p in PROXIES:
            L.append(f"| {LABEL[p]} | " + " | ".join(fmt(b.callgrind.get(p, {}).get(ph), "ir")
                                                     for ph, _, _, _ in CALLGRIND_PHASES) + " |")
        for other in ("haproxy", "nginx"):
            L.append(f"| **Drover ÷ {LABEL[other]}** | " + " | ".join(
                ratio(b.callgrind.get("drover", {}).get(ph), b.callgrind.get(other, {}).get(ph))
                for ph, _, _, _ in CALLGRIND_PHASES) + " |")
        L.append("")

    if b.scaling:
        L.append("### Scaling with `workers: 2`")
        L.append("")
        L.append(f"HTTP keep-alive, 100-byte responses, `wrk -t2 -c50` for {a.duration} s per run; nothing is pinned: "
                 "Drover, wrk and the NGINX origin share both cores, so this shows what the machine has left "
                 "for a second worker, not the proxy's own ceiling. Direct is the client and origin alone.")
        L.append("")
        L.append("| target | requests/s | p99 ms | proxy CPU-s per 100k req |")
        L.append("|---|---:|---:|---:|")

        def sc(what, key):
            return med([r[key] for r in b.scaling if r["workers"] == what])
        for what, label in (("direct", "direct (no proxy)"), (1, "Drover, `workers: 1`"), (2, "Drover, `workers: 2`")):
            L.append(f"| {label} | {fmt(sc(what, 'rps'), 'rps')} | {fmt(sc(what, 'p99_us'), 'ms')} | "
                     f"{fmt(sc(what, 'cpu_per_100k'), 'cpu') if what != 'direct' else '–'} |")
        L.append(f"| **`workers: 2` ÷ `workers: 1`** | {ratio(sc(2, 'rps'), sc(1, 'rps'))} | "
                 f"{ratio(sc(2, 'p99_us'), sc(1, 'p99_us'))} | {ratio(sc(2, 'cpu_per_100k'), sc(1, 'cpu_per_100k'))} |")
        L.append("")

    # Targets from issue 8, checked against this run.
    checks = []

    def check(name: str, value: float | None, limit: float, text: str) -> None:
        if value is None:
            checks.append(f"| {name} | not measured | {text} | – |")
        else:
            checks.append(f"| {name} | {value:.2f} | {text} | {'met' if value <= limit else 'not met'} |")

    def rel(x, y):
        return None if x is None or y in (None, 0) else x / y

    def inv(x):
        return None if x is None or x == 0 else 1 / x

    check("HTTP small: CPU per request, Drover ÷ HAProxy",
          rel(m("http-small", "drover", "cpu_per_100k"), m("http-small", "haproxy", "cpu_per_100k")), 0.8, "≤ 0.80")
    checks.append("| (for context) HTTP small: user-space CPU per request, Drover ÷ HAProxy | "
                  + (lambda v: "not measured" if v is None else f"{v:.2f}")(
                      rel(m("http-small", "drover", "user_cpu_per_100k"), m("http-small", "haproxy", "user_cpu_per_100k")))
                  + " | – | |")
    floor = m("http-small", "floor", "cpu_per_100k")
    drover, haproxy = m("http-small", "drover", "cpu_per_100k"), m("http-small", "haproxy", "cpu_per_100k")
    if None not in (floor, drover, haproxy):
        checks.append(f"| (for context) HTTP small: CPU per request of the floor relay (no HTTP work) ÷ HAProxy's | "
                      f"{rel(floor, haproxy):.2f} | – | |")
        above = rel(drover - floor, haproxy - floor) if haproxy > floor else None
        checks.append("| (for context) HTTP small: CPU per request above the floor (a proxy's own work), "
                      f"Drover ÷ HAProxy | {'–' if above is None else f'{above:.2f}'} | – | |")
    cg = b.callgrind
    check("HTTP keep-alive: instructions per request, Drover ÷ NGINX",
          rel(cg.get("drover", {}).get("http-keepalive"), cg.get("nginx", {}).get("http-keepalive")), 0.9999, "< 1")
    check("TCP: instructions per connection-request, Drover ÷ NGINX stream",
          rel(cg.get("drover", {}).get("tcp-conn"), cg.get("nginx", {}).get("tcp-conn")), 0.9999, "< 1")
    tp = rel(m("http-1m", "drover", "bytes_per_s"), m("http-1m", "direct", "bytes_per_s"))
    checks.append(f"| HTTP 1 MiB: throughput, Drover ÷ direct | {'not measured' if tp is None else f'{tp:.2f}'}"
                  f" | ≥ 0.90 | {'–' if tp is None else ('met' if tp >= 0.9 else 'not met')} |")
    for mode, limit in (("http", 1024), ("tcp", 4096)):
        v = mm("drover", f"{mode}_per_conn_bytes")
        checks.append(f"| Drover bytes per idle {mode.upper()} connection | "
                      f"{'not measured' if v is None else f'{v:,.0f}'} | < {limit:,} | "
                      f"{'–' if v is None else ('met' if v < limit else 'not met')} |")
    L.append("### Against the targets of issue 8")
    L.append("")
    L.append("| target | this run | goal | |")
    L.append("|---|---:|---|---|")
    L.extend(checks)
    L.append("")

    L.append("### Failures and errors seen")
    L.append("")
    if b.failures:
        for f in b.failures:
            first, *rest = f.what.splitlines()
            L.append(f"- **{f.where}**: {first}")
            if rest:
                L.append("")
                L.append("  ```")
                L.extend("  " + line.strip().lstrip("|").rstrip() for line in rest)
                L.append("  ```")
    else:
        L.append("None: every precheck answered 200 with the exact file, wrk counted no errors and no "
                 "proxy exited.")
    L.append("")
    return "\n".join(L)


def rerender(results_json: Path, out: Path) -> int:
    data = json.loads(results_json.read_text())
    a = argparse.Namespace(**data["args"])
    b = Bench(a, results_json.parent, results_json.parent, Path(a.drover), runs=data["runs"],
              memory=data["memory"], callgrind=data["callgrind"], scaling=data.get("scaling", []),
              failures=[Failure(**f) for f in data["failures"]])
    text = f"## End-to-end results\n\n{report(b, data['env'])}"
    out.write_text(text)
    print(text)
    return 0


# ----------------------------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run")
    p.add_argument("--idle-connections", type=int, default=2000)
    p.add_argument("--callgrind", action="store_true", help="also measure instructions per request")
    p.add_argument("--callgrind-requests", type=int, default=2000)
    p.add_argument("--no-scaling", dest="scaling", action="store_false",
                   help="skip the workers: 1 vs 2 runs (http-small, nothing pinned)")
    p.add_argument("--cases", default=",".join(c.name for c in CASES),
                   help="comma-separated subset of: " + ", ".join(c.name for c in CASES))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round of 2 s, 200 idle connections, 200 callgrind requests")
    p.add_argument("--drover", default=str(REPO / "build/release/drover"))
    p.add_argument("--floor", help="the bare relay of the floor rows (default: benchmarks/drover_floor_relay "
                                   "next to --drover; built by the drover_floor_relay target)")
    p.add_argument("--no-floor", dest="use_floor", action="store_false", help="skip the floor rows")
    p.add_argument("--workdir", help="scratch folder (run.sh creates and removes it)")
    p.add_argument("--netns", default="", help="the private network namespace run.sh runs this in, if any")
    p.add_argument("--machine-congestion-control", default="",
                   help="the machine's TCP congestion control, for the report (run.sh passes it)")
    p.add_argument("--out", default=str(HERE / "results/latest.md"))
    p.add_argument("--rerender", metavar="RESULTS_JSON",
                   help="measure nothing: rewrite the table from a results/raw/*/results.json")
    a = p.parse_args()
    if a.rerender:
        return rerender(Path(a.rerender), Path(a.out))
    if not a.workdir:
        p.error("--workdir is required (run.sh passes it)")
    if a.quick:
        a.rounds, a.duration, a.warmup = 1, 2, 1
        a.idle_connections, a.callgrind_requests = 200, 200
    a.cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    unknown = set(a.cases) - {c.name for c in CASES}
    if unknown:
        p.error(f"unknown case(s) {', '.join(sorted(unknown))}")
    if not 0 <= a.idle_connections <= 6000:
        p.error("--idle-connections must be 0..6000 (descriptor limits in run.sh and the templates)")
    if a.rounds < 1 or a.duration < 1 or a.warmup < 0:
        p.error("--rounds and --duration must be at least 1, --warmup at least 0")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rawdir = HERE / "results/raw" / stamp
    rawdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(a.workdir)
    Service.pid_file = workdir / "pids"
    # A private copy: a rebuild of build/release during the run must not mix two versions in one table.
    drover_copy = workdir / "drover"
    shutil.copy2(a.drover, drover_copy)
    b = Bench(a, workdir, rawdir, drover_copy)
    floor = Path(a.floor) if a.floor else Path(a.drover).parent / "benchmarks/drover_floor_relay"
    if a.use_floor and os.access(floor, os.X_OK):
        b.floor_bin = workdir / "drover_floor_relay"
        shutil.copy2(floor, b.floor_bin)
    elif a.use_floor:
        log(f"no floor relay at {floor} (cmake --build build/release --target drover_floor_relay): "
            "the floor rows are left out")
    env = environment(b.drover_bin)
    env["netns"] = a.netns
    env["congestion_control"] = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    env["machine_congestion_control"] = a.machine_congestion_control or env["congestion_control"]
    env["drover_built"] = datetime.datetime.fromtimestamp(
        os.stat(a.drover).st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = Path(a.out)
    try:
        b.run()
    except (KeyboardInterrupt, SystemExit):
        # A partial table must not replace the last complete one.
        out = rawdir / "partial.md"
        log(f"interrupted: what was measured goes to {out}")
        b.fail("run", "interrupted before the end")
    except Exception as e:
        b.fail("run", f"{type(e).__name__}: {e}")
    finally:
        Service.stop_all()
    for name in ("origin.error.log", "nginx-proxy.error.log"):
        if (workdir / name).exists():
            shutil.copy(workdir / name, rawdir / name)
    for f in rawdir.glob("*.log"):
        if f.stat().st_size == 0:
            f.unlink()
    (rawdir / "results.json").write_text(json.dumps(
        {"env": env, "args": {k: v for k, v in vars(a).items()}, "runs": b.runs, "memory": b.memory,
         "callgrind": b.callgrind, "scaling": b.scaling, "failures": [f.__dict__ for f in b.failures]}, indent=1))
    text = f"## End-to-end results\n\n{report(b, env)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    log(f"table in {out}; raw numbers and logs in {rawdir}")
    return 1 if any(f.where == "run" for f in b.failures) else 0


if __name__ == "__main__":
    sys.exit(main())
