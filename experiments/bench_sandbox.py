"""Executions per second of the sandbox (aigc_jax/sandbox.py), by worker count.

  python experiments/bench_sandbox.py --programs=400 --rounds=3 --json=experiments/results/bench_sandbox.json

Workloads: a small passing program (a function and three asserts, HumanEval-sized); a failing
one; and a mix of 90% passing, 5% failing and 5% timing out (0.5 s wall limit), as sampled
programs are. Also the cost of the parts: a bare fork-and-wait in a worker-like process.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aigc_jax.sandbox import Limits, Sandbox  # noqa: E402

PASSING = ("def running_max(xs):\n    out, best = [], None\n    for x in xs:\n        best = x if best is None or "
           "x > best else best\n        out.append(best)\n    return out\n\nassert running_max([1, 3, 2]) == [1, 3, 3]\n"
           "assert running_max([]) == []\nassert running_max([5, 4]) == [5, 5]\n")
FAILING = PASSING.replace("x > best", "x < best")
SLEEPING = "import time\ntime.sleep(10)\n"


def workload(name: str, count: int) -> list[str]:
    if name == "passing":
        return [PASSING] * count
    if name == "failing":
        return [FAILING] * count
    return [SLEEPING if i % 20 == 0 else FAILING if i % 20 == 10 else PASSING for i in range(count)]


def measure(workers: int, name: str, count: int, rounds: int) -> dict:
    limits = Limits(wall_seconds=0.5 if name == "mix" else 5.0)
    rates, statuses = [], {}
    with Sandbox(workers=workers, limits=limits) as box:
        box.run_many([PASSING] * workers)  # the workers are up and warm
        for _ in range(rounds):
            programs = workload(name, count)
            start = time.perf_counter()
            verdicts = box.run_many(programs)
            rates.append(count / (time.perf_counter() - start))
            for v in verdicts:
                statuses[v.status] = statuses.get(v.status, 0) + 1
    return {"workers": workers, "workload": name, "programs": count, "rounds": rounds,
            "median_per_second": statistics.median(rates), "min": min(rates), "max": max(rates), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    rows = []
    print("| workers | workload | programs / s (median) | min-max | verdicts |\n|---|---|---|---|---|")
    for workers in [int(w) for w in args.workers.split(",")]:
        for name in ("passing", "failing", "mix"):
            row = measure(workers, name, args.programs, args.rounds)
            rows.append(row)
            print(f"| {workers} | {name} | {row['median_per_second']:.0f} | {row['min']:.0f}-{row['max']:.0f} | "
                  f"{row['statuses']} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
