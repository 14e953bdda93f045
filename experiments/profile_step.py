"""Per-kernel profile of the training loop's compiled step for an LM config.

  python -m experiments.profile_step --config=configs/gpt_char.py:shakespeare_cpu
  python -m experiments.profile_step --config=configs/gpt_char.py:speedrun --top=60

Traces a few calls of the step that `experiments/train.py` would run (the config's model,
optimizer, steps per call and xla_flags) with `jax.profiler`, sums each XLA kernel's time per
optimizer step, and prints the largest with the shape and the JAX operation (HLO metadata) they
come from, plus the time per kind of kernel (fusion kind, dot, copy, ...). Kernel times on the
CPU's worker threads; per step = summed over the traced calls / optimizer steps in them. This
is how the slow reductions of experiments/results/performance.md were found.
"""
from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile


def kernel_times(trace_dir: str) -> collections.Counter:
    """Nanoseconds per kernel name over every non-Python thread of the trace.

    A kernel that completes asynchronously also leaves an "end: NAME" event (its completion work);
    that time counts towards NAME, so the kernel keeps one row under its HLO name.
    """
    import jax
    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    totals = collections.Counter()
    wrappers = ("ThunkExecutor", "SlinkyThreadPool", "$", "PjitFunction")  # spans around kernels
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                if not event.name.startswith(wrappers):
                    totals[event.name.removeprefix("end: ")] += event.duration_ns
    return totals


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
        for batch in batches[2:]:
            state, metrics = compiled(state, batch, rng)
        jax.block_until_ready((state, metrics))  # the state's last updates may finish after the metrics
        jax.profiler.stop_trace()
        totals = kernel_times(trace_dir)
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


if __name__ == "__main__":
    main()
