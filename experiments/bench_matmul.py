"""The training step's matrix products alone: XLA against PyTorch and NumPy, on one core and on all.

  python experiments/bench_matmul.py                 # the shakespeare_cpu step's products
  python experiments/bench_matmul.py --libraries=xla --xla_flags=--xla_cpu_use_onednn=true

Each product of the shakespeare_cpu step (batch 12 x context 64 = 768 rows, width 128, MLP 512,
fused QKV 384) is timed in float32 by each library in its own subprocess: XLA (`jax.jit` of
`a @ b`, the loop's backend and its default matmul kernels), PyTorch (`torch.matmul`, the
reference of bench_lm.py) and NumPy (its BLAS), first pinned to one core, then on every core
of the machine (`os.sched_setaffinity` before the library starts its threads). The table gives
GFLOP/s (median call time over --calls calls, median over --repeats alternating runs) and the
speed-up from one core to all: how well each library spreads a product of this size over the
cores, which is where the step's time on a 2-core machine goes (experiments/results/
performance.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (rows, contraction, columns, where in the step)
SHAPES = [
    (768, 128, 384, "attention QKV, forward"),
    (768, 128, 512, "MLP up, forward"),
    (768, 512, 128, "MLP down, forward; MLP up, input gradient"),
    (128, 768, 512, "MLP up, weight gradient (x^T dy as a plain product)"),
]
LIBRARIES = ("xla", "torch", "numpy")


def worker(library: str, calls: int) -> list[float]:
    """Median seconds per call of each shape's product in `library`, in this process."""
    import numpy as np
    if library == "xla":
        import jax
        product = jax.jit(lambda a, b: a @ b)
        run = lambda a, b: product(a, b).block_until_ready()  # noqa: E731
        to_array = jax.numpy.asarray
    elif library == "torch":
        import torch
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        run, to_array = torch.matmul, torch.from_numpy
    else:
        run, to_array = np.matmul, np.asarray
    rng = np.random.default_rng(0)
    medians = []
    for m, k, n, _ in SHAPES:
        a = to_array(rng.standard_normal((m, k), dtype=np.float32))
        b = to_array(rng.standard_normal((k, n), dtype=np.float32))
        for _ in range(10):
            run(a, b)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            run(a, b)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return medians


def run_child(library: str, cores: int, calls: int, xla_flags: str = "") -> list[float]:
    """The worker in a fresh process limited to the first `cores` cores of this process's set."""
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(cores), OMP_NUM_THREADS=str(cores),
               MKL_NUM_THREADS=str(cores))
    if xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    code = (f"import os, json, sys; os.sched_setaffinity(0, {allowed}); sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import bench_matmul; print(json.dumps(bench_matmul.worker({library!r}, {calls})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{library} on {cores} core(s) failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per shape and run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each library")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--xla_flags", default="", help="extra XLA_FLAGS for the XLA runs (another matmul backend)")
    args = parser.parse_args()
    libraries = args.libraries.split(",")
    unknown = set(libraries) - set(LIBRARIES)
    if unknown:
        raise SystemExit(f"unknown --libraries {sorted(unknown)}; choose from {LIBRARIES}")
    all_cores = len(os.sched_getaffinity(0))
    runs = {(lib, c): [] for lib in libraries for c in (1, all_cores)}
    for _ in range(args.repeats):
        for cores in (1, all_cores):
            for lib in libraries:
                runs[lib, cores].append(run_child(lib, cores, args.calls, args.xla_flags))
    median = {key: [statistics.median(r[i] for r in rs) for i in range(len(SHAPES))] for key, rs in runs.items()}
    print(f"float32 products, median of {args.calls} calls, median of {args.repeats} alternating runs; "
          f"GFLOP/s on 1 core and on {all_cores}, and the speed-up between them"
          + (f"; XLA_FLAGS {args.xla_flags}" if args.xla_flags else ""))
    print("| product (m x k x n) | where | " + " | ".join(f"{lib} 1 core | {lib} {all_cores} cores | speed-up"
                                                        for lib in libraries) + " |")
    print("| --- | --- |" + " --- | --- | --- |" * len(libraries))
    for i, (m, k, n, where) in enumerate(SHAPES):
        cells = []
        for lib in libraries:
            one, every = median[lib, 1][i], median[lib, all_cores][i]
            cells += [f"{2 * m * k * n / one / 1e9:.0f}", f"{2 * m * k * n / every / 1e9:.0f}", f"{one / every:.2f}x"]
        print(f"| {m} x {k} x {n} | {where} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
