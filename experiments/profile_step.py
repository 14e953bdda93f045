"""Per-kernel profile of the training loop's compiled step for an LM config.

  python -m experiments.profile_step --config=configs/gpt_char.py:shakespeare_cpu
  python -m experiments.profile_step --config=configs/gpt_char.py:speedrun --top=60

Traces a few calls of the step that `experiments/train.py` would run (the config's model,
optimizer, steps per call and xla_flags) with `jax.profiler`, sums each XLA kernel's time per
optimizer step, and prints the largest with the shape and the JAX operation (HLO metadata) they
come from, plus the time per kind of kernel (fusion kind, dot, copy, ...), and how busy each
thread was against the wall time (whether the kernels keep every core at work; a collective's
span counts as busy, and the waiting for the other devices inside it is also given apart).
Kernel times on the CPU's worker threads; per step = summed over the traced calls / optimizer
steps in them. This is how the slow reductions of experiments/results/performance.md were found.
"""
from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time


WRAPPERS = ("ThunkExecutor", "SlinkyThreadPool", "$", "PjitFunction", "ThreadpoolListener")  # spans around kernels
WAITS = ("Rendezvous", "Wait")  # a collective's threads waiting for each other: time, but no work


def kernel_events(trace_dir: str) -> dict:
    """Thread name -> [(kernel name, start ns, duration ns)] over every non-Python thread of the trace.

    A kernel that completes asynchronously also leaves an "end: NAME" event (its completion work);
    it is listed under NAME, so the kernel keeps one row under its HLO name.
    """
    import jax
    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    threads = collections.defaultdict(list)
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if not event.name.startswith(WRAPPERS):
                    threads[line.name].append((event.name.removeprefix("end: "), event.start_ns, event.duration_ns))
    return threads


def kernel_times(threads: dict) -> collections.Counter:
    """Nanoseconds per kernel name, summed over threads."""
    totals = collections.Counter()
    for events in threads.values():
        for name, _, duration in events:
            totals[name] += duration
    return totals


def busy_ns(events: list) -> int:
    """Nanoseconds in which a thread ran at least one kernel (the union of its kernels' spans)."""
    busy, end = 0, None
    for _, start, duration in sorted(events, key=lambda e: e[1]):
        stop = start + duration
        if end is None or start > end:
            busy, end = busy + duration, stop
        elif stop > end:
            busy, end = busy + stop - end, stop
    return busy


def hlo_origins(hlo_text: str) -> dict:
    """Kernel (HLO instruction) name -> (result shape, the JAX operation in its metadata)."""
    origins = {}
    pattern = r"^\s*(?:ROOT )?%(\S+) = (\(.*?\)|\S+) [a-z-]+\(.*?op_name=\"([^\"]*)\""  # shape: array or tuple
    for match in re.finditer(pattern, hlo_text, re.M):
        origins[match.group(1)] = (match.group(2), match.group(3).split("/")[-4:])
    return origins


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/gpt_char.py:shakespeare_cpu")
    parser.add_argument("--override", action="append", default=[], help="config override field=value (repeatable)")
    parser.add_argument("--calls", type=int, default=3, help="traced calls, after 2 untraced")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    from experiments.bench_lm import place_config
    config, task, placement, state, rng = place_config(args.config, args.override)  # before JAX starts
    import jax
    k = int(config.train.steps_per_call)
    batches = [placement.call_batch(task, i * k) for i in range(2 + args.calls)]
    compiled = placement.jit_train_step(task).lower(state, batches[0], rng).compile()
    for batch in batches[:2]:
        state, metrics = compiled(state, batch, rng)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        start = time.perf_counter()
        for batch in batches[2:]:
            state, metrics = compiled(state, batch, rng)
        jax.block_until_ready((state, metrics))  # the state's last updates may finish after the metrics
        wall = time.perf_counter() - start
        jax.profiler.stop_trace()
        threads = kernel_events(trace_dir)
    totals = kernel_times(threads)
    if not totals:
        raise SystemExit("the trace holds no kernel events (a backend whose profiler records none?)")
    steps = args.calls * k
    origins = hlo_origins(compiled.as_text())
    kinds = collections.Counter()
    for name, ns in totals.items():
        kinds[re.sub(r"[.\d]+$", "", name)] += ns
    print(f"{args.config} {' '.join(args.override)}: kernel time per optimizer step "
          f"({sum(totals.values()) / steps / 1e6:.2f} ms in all, {args.calls} calls x {k} steps)")
    print("| ms/step | kernel | shape | from |\n| --- | --- | --- | --- |")
    for name, ns in totals.most_common(args.top):
        shape, op = origins.get(name, ("", []))
        print(f"| {ns / steps / 1e6:.3f} | {name} | {shape} | {'/'.join(op)} |")
    print("\n| ms/step | kind of kernel |\n| --- | --- |")
    for kind, ns in kinds.most_common(15):
        print(f"| {ns / steps / 1e6:.3f} | {kind} |")
    # Whether the kernels keep every thread busy: XLA:CPU runs one device's kernels one at a time,
    # so on one device the threads' busy times add up to about the wall time, not a multiple of it.
    print(f"\nwall time per optimizer step {wall / steps * 1e3:.2f} ms (traced, so a little slower than untraced)")
    print("| thread | kernels | busy ms/step | busy share of the wall time | waiting in collectives ms/step |")
    print("| --- | --- | --- | --- | --- |")
    rows = []
    for name, events in threads.items():
        work = [e for e in events if not e[0].startswith(WAITS)]
        waits = sum(e[2] for e in events if e[0].startswith(WAITS))
        rows.append((busy_ns(work), name, len(work), waits))
    for busy, name, count, waits in sorted(rows, reverse=True):
        print(f"| {name} | {count} | {busy / steps / 1e6:.2f} | {busy / 1e9 / wall:.0%} | {waits / steps / 1e6:.2f} |")


if __name__ == "__main__":
    main()
