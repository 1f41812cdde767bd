#!/usr/bin/env python3
"""Exclusive (self) cost per function of a callgrind dump, per request.

    benchmarks/profile/callgrind_exclusive.py /tmp/cg.out.1 [-n 2000] [--top 60] [--callers REGEX]

callgrind_annotate's exclusive view puts almost everything on clone for these dumps (the worker
threads' stacks); this reads the file itself. A cost line right after `calls=` is the inclusive cost
of that call and is not the caller's own. --callers REGEX lists, for callees matching REGEX, the
calls per request and inclusive Ir per request by caller (e.g. 'awaitable_frame_base.*operator new'
for coroutine frames, '^malloc$' for allocations).
"""
import argparse, collections, re

NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")


def parse(path):
    names = {}

    def name(text):
        m = NAME.match(text)
        if not m:
            return text
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]

    own = collections.Counter()
    calls = collections.defaultdict(lambda: [0, 0])   # (caller, callee) -> [calls, inclusive Ir]
    fn = callee = None
    pending = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        if line.startswith("fn="):
            fn = name(line[3:])
        elif line.startswith("cfn="):
            callee = name(line[4:])
        elif line.startswith("calls="):
            pending = int(line[6:].split()[0])
        elif line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            if len(parts) < 2:
                pending = None
                continue
            cost = int(parts[1])
            if pending is not None:
                calls[(fn, callee)][0] += pending
                calls[(fn, callee)][1] += cost
                pending = None
            else:
                own[fn] += cost
    return own, calls


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dump")
    p.add_argument("-n", type=int, default=2000, help="requests in the dump")
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--callers", help="callee regex: calls and inclusive cost by caller")
    a = p.parse_args()
    own, calls = parse(a.dump)
    if a.callers:
        pattern = re.compile(a.callers)
        rows = [(k, v) for k, v in calls.items() if pattern.search(k[1] or "")]
        for (caller, callee), (count, cost) in sorted(rows, key=lambda kv: -kv[1][1])[: a.top]:
            print(f"{count / a.n:7.2f} calls {cost / a.n:8.0f} Ir  {caller[:110]}  ->  {callee[:70]}")
        return
    total = sum(own.values())
    print(f"total {total} Ir = {total / a.n:.0f} Ir per request")
    for fn, cost in own.most_common(a.top):
        print(f"{cost / a.n:8.0f}  {fn[:200]}")


if __name__ == "__main__":
    main()
