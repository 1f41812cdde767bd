#!/usr/bin/env python3
"""Memory per idle connection through Drover, with an optional heap profile to read.

    benchmarks/profile/idle_memory.py --drover build/perf/drover [-n 2000] [--mode http|tcp]
    benchmarks/profile/idle_memory.py --heaptrack /tmp/idle      # then: heaptrack_print /tmp/idle.*.zst

Starts one NGINX origin (100-byte file) and Drover (the e2e benchmark's config), warms up, then opens N
connections that each make one `GET /small` and stay open, and prints (RSS after - RSS before) / N, the
same method as benchmarks/e2e (memory). With --heaptrack, Drover runs under heaptrack and the
allocations still held per idle connection can be read by call site. About ten seconds.
"""
import argparse, os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_keepalive_callgrind import requests, start_origin, stop_all, wait_port  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int, timeout: float = 3.0) -> int:
    last = rss_kib(pid)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.3)
        now = rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def one_request(sock: socket.socket) -> None:
    sock.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 100:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response ended")
        data += chunk
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"bad status {data[:40]!r}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drover", default=str(Path(__file__).resolve().parents[2] / "build/release/drover"))
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--mode", choices=("http", "tcp"), default="http")
    p.add_argument("--heaptrack", metavar="PREFIX", help="run Drover under heaptrack, output to PREFIX.*")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="drover-mem."))
    procs = []
    conns = []
    drover = pid = None
    try:
        ports, dconf = start_origin(work, procs)
        argv = [a.drover, "-c", str(dconf)]
        if a.heaptrack:
            argv = ["heaptrack", "-o", a.heaptrack] + argv
        log = open(work / "drover.log", "w")
        drover = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(drover)
        port = ports[a.mode]
        wait_port(port, 60)
        pid = drover.pid
        if a.heaptrack:   # heaptrack's script runs the proxy as a child: measure and stop that one
            out = subprocess.run(["pgrep", "-g", str(drover.pid), "-x", "drover"], capture_output=True, text=True)
            pid = int(out.stdout.split()[0])
        requests(port, 100)
        before = settled_rss(pid)
        for _ in range(a.n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            conns.append(s)
            one_request(s)
        after = settled_rss(pid)
        print(f"{a.mode}: {before} KiB -> {after} KiB with {a.n} idle connections = "
              f"{(after - before) * 1024 / a.n:.0f} bytes each")
        return 0
    finally:
        for s in conns:
            s.close()
        if a.heaptrack and drover is not None and pid not in (None, drover.pid):
            os.kill(pid, signal.SIGTERM)   # heaptrack writes its file once the proxy exits
            drover.wait(timeout=60)
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
