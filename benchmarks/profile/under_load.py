#!/usr/bin/env python3
"""Per-request counts for Drover (and HAProxy) under wrk load: heap allocations, syscalls, context
switches, CPU. What callgrind's one sequential connection cannot show: how the paths behave with many
connections interleaved on a worker.

    benchmarks/profile/under_load.py --drover build/release/drover [--haproxy] [-c 50] [-d 4]
                                     [--mode http|tcp] [--path /small] [--rounds 1]

Starts an NGINX origin and Drover (the e2e benchmark's config, one worker, pinned to core 0; wrk on
core 1), preloads tests/support/alloc_count.c into Drover (built as liballoc_count.so next to the
tests; --alloc-lib to point elsewhere), and for each round prints requests/s, CPU (user) µs, syscalls
(`perf stat -e raw_syscalls:sys_enter`), context switches and allocations per request. CPU numbers
are as noisy as the machine; the counts are not. Needs perf and wrk (scripts/install-deps.sh --bench).
"""
import argparse, os, re, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_keepalive_callgrind import free_port, render, start_origin, stop_all, wait_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])   # utime, stime


class Counter:
    """The shared 8-byte count alloc_count.c keeps (ALLOC_COUNT_FILE)."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> int:
        return int.from_bytes(self.path.read_bytes()[:8].ljust(8, b"\0"), "little")


def measure(name: str, pid: int, url: str, args, counter: Counter | None) -> None:
    wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}"]
    subprocess.run(wrk + ["-d1s", url], capture_output=True, check=True)   # warm-up
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "-p", str(pid)],
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    u0, s0 = cpu_ticks(pid)
    a0 = counter.read() if counter else 0
    out = subprocess.run(wrk + [f"-d{args.duration}s", url], capture_output=True, text=True, check=True).stdout
    u1, s1 = cpu_ticks(pid)
    a1 = counter.read() if counter else 0
    perf.send_signal(2)
    err = perf.communicate()[1]
    n = int(re.search(r"(\d+) requests in", out).group(1))
    syscalls = int(re.search(r"^(\d+),,raw_syscalls", err, re.M).group(1))
    switches = int(re.search(r"^(\d+),,context-switches", err, re.M).group(1))
    per = lambda ticks: ticks / TICK / n * 1e6
    allocs = f"{(a1 - a0) / n:8.4f}" if counter else "       -"
    print(f"{name:8s} {n / args.duration:9.0f} {per(u1 - u0 + s1 - s0):7.2f} ({per(u1 - u0):5.2f}) "
          f"{syscalls / n:8.2f} {switches / n:8.3f} {allocs}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drover", default="build/release/drover")
    ap.add_argument("--alloc-lib", help="liballoc_count.so (default: next to the tests of --drover's build)")
    ap.add_argument("--haproxy", action="store_true", help="HAProxy too (the e2e config), alternating")
    ap.add_argument("-c", "--connections", type=int, default=50)
    ap.add_argument("-d", "--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--mode", choices=("http", "tcp"), default="http")
    ap.add_argument("--path", default="/small")
    args = ap.parse_args()
    drover = Path(args.drover).resolve()
    lib = Path(args.alloc_lib) if args.alloc_lib else drover.parent / "tests" / "liballoc_count.so"
    if not lib.exists():
        sys.exit(f"under_load: no {lib} (build the alloc_count target, or pass --alloc-lib)")
    procs: list = []
    with tempfile.TemporaryDirectory(prefix="drover-load.") as tmp:
        work = Path(tmp)
        try:
            ports, dconf = start_origin(work, procs)
            for name, size in (("16k", 16384), ("1m", 1 << 20)):
                (work / "docroot" / name).write_bytes(b"x" * size)
            counter = Counter(work / "allocs")
            env = dict(os.environ, LD_PRELOAD=str(lib), ALLOC_COUNT_FILE=str(counter.path))
            procs.append(subprocess.Popen(["taskset", "-c", "0", str(drover), "-c", str(dconf)], env=env,
                                          start_new_session=True))
            targets = [("drover", procs[-1].pid, ports[args.mode], counter)]
            if args.haproxy:
                hports = {"http": free_port(), "tcp": free_port()}
                hconf = render("haproxy.cfg.tmpl", work / "haproxy.cfg", ORIGIN_PORT=ports["origin"],
                               HTTP_PORT=hports["http"], TCP_PORT=hports["tcp"])
                procs.append(subprocess.Popen(["taskset", "-c", "0", "haproxy", "-db", "-f", str(hconf)],
                                              stdout=subprocess.DEVNULL, start_new_session=True))
                targets.append(("haproxy", procs[-1].pid, hports[args.mode], None))
            for _, _, port, _ in targets:
                wait_port(port, 10)
            print(f"{args.mode} {args.path}, {args.connections} connections, {args.duration} s per round")
            print(f"{'':8s} {'req/s':>9s} {'CPU µs (user)':>15s} {'syscalls':>8s} {'switches':>8s} {'allocs':>8s}"
                  "   (per request)")
            for _ in range(args.rounds):
                for name, pid, port, count in targets:
                    measure(name, pid, f"http://127.0.0.1:{port}{args.path}", args, count)
        finally:
            stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
