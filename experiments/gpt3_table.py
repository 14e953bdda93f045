"""GPT-3's eight sizes on paper and compiled: parameters, training FLOPs per token, the bytes of
parameters + optimizer state each device holds on an 8-device mesh and on a plausible pod, and
the train step compiled ahead of time on 8 simulated CPU devices.

  python experiments/gpt3_table.py --output=experiments/results/gpt3_scaling.md
  python experiments/gpt3_table.py --sizes=small,xl --no-compile      # the arithmetic only, in seconds

Nothing is allocated: the state is jax.eval_shape of the LM task's init, the step is lowered from
abstract shapes with shardings (aigc_jax/families/lm/scaling.py). The host CPU is split into 8
XLA devices (XLA_FLAGS=--xla_force_host_platform_device_count=8, set here before JAX starts
unless XLA_FLAGS already names a device count). The persistent compilation cache stays off, so
the compile seconds are XLA's full compile.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from aigc_jax.host import machine

DEVICES = 8
MESH_8 = (1, 4, 2)  # data, fsdp, tensor
COUNT_FLAG = "--xla_force_host_platform_device_count"


def split_host_into_devices() -> None:
    """Must run before JAX is imported: XLA reads XLA_FLAGS once, when its CPU backend starts."""
    flags = os.environ.get("XLA_FLAGS", "")
    if COUNT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {COUNT_FLAG}={DEVICES}".strip()


def gib(num_bytes: float) -> str:
    return f"{num_bytes / 2 ** 30:,.2f}"


def rows(sizes, compile_step: bool, sequences_per_shard: int, remat: bool, echo: bool = True):
    import jax
    from aigc_jax import parallel
    from aigc_jax.config import load_config
    from aigc_jax.families.lm import scaling
    from configs import gpt3

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pod = scaling.PodAssumptions()
    mesh8 = parallel.make_mesh(dict(zip(parallel.MESH_AXES, MESH_8)), jax.devices()[:DEVICES])
    for size in sizes:
        config = load_config(os.path.join(root, "configs", f"gpt3.py:{size}"))
        state = scaling.abstract_state(config)
        n = scaling.num_params(state)
        per_token = scaling.training_flops_per_token(config, n)
        total_flops = per_token * gpt3.TOTAL_TOKENS
        on8 = scaling.state_bytes_per_device(state, scaling.state_shardings(state, mesh8))
        devices = scaling.pod_devices(total_flops, pod)
        pod_shape = scaling.pod_mesh_shape(devices, config.train.batch_size, pod)
        on_pod = scaling.state_bytes_per_device(state, scaling.state_shardings(state, scaling.abstract_mesh(*pod_shape)))
        row = {"size": size, "layers": config.model.num_layers, "width": config.model.embed_dim,
               "heads": config.model.num_heads, "params": n, "flops_per_token": per_token,
               "total_flops": total_flops, "unsharded": on8["unsharded"], "state8": on8["total"],
               "pod_devices": devices, "pod_shape": pod_shape, "pod_state": on_pod["total"],
               "pod_state_grads": on_pod["total"] + on_pod["params"], "pod_days": scaling.training_days(
                   total_flops, devices, pod), "compiled": None}
        if compile_step:
            try:
                result = scaling.compile_train_step(config, mesh8, sequences_per_shard=sequences_per_shard,
                                                    remat=remat)
                row["compiled"] = {"batch": result.batch_shape, "lower": result.lower_seconds,
                                   "compile": result.compile_seconds, "memory": result.memory}
            except Exception as e:  # reported in the table, not hidden
                row["compiled"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        if echo:
            print(format_row(row), flush=True)
        yield row


HEADER = ("| size | layers x width (heads) | parameters | training GFLOPs / token | state, 1 device (GiB) "
          "| state / device, 8 devices (GiB) | XLA argument / temp per device, 8 devices (GiB) "
          "| AOT compile on 8 devices (s) | pod: devices (data x fsdp x tensor) "
          "| state / device on pod (GiB) | + gradients (GiB) | days for 300B tokens |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")


def format_row(r) -> str:
    c = r["compiled"]
    if c is None:
        xla, compiled = "not compiled", "not run"
    elif "error" in c:
        xla, compiled = "-", f"failed: {c['error']}"
    else:
        m = c["memory"]
        xla = f"{gib(m['argument'])} / {gib(m['temp'])}" if m else "not given by the backend"
        compiled = f"yes, {c['compile']:.1f} (+ {c['lower']:.1f} lowering)"
    data, fsdp, tensor = r["pod_shape"]
    return (f"| {r['size']} | {r['layers']} x {r['width']:,} ({r['heads']}) | {r['params'] / 1e9:,.3f}B "
            f"| {r['flops_per_token'] / 1e9:,.2f} | {gib(r['unsharded'])} | {gib(r['state8'])} | {xla} | {compiled} "
            f"| {r['pod_devices']:,} ({data} x {fsdp} x {tensor}) | {gib(r['pod_state'])} "
            f"| {gib(r['pod_state_grads'])} | {r['pod_days']:.1f} |")


def report(table_rows, command: str, args, seconds: float, remat_check=None) -> str:
    from aigc_jax.families.lm import scaling
    pod = scaling.PodAssumptions()
    batch = next((r["compiled"]["batch"] for r in table_rows if r["compiled"] and "batch" in r["compiled"]), None)
    lines = [
        "# GPT-3's sizes: memory per device, FLOPs per token, and the train step compiled for a mesh",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; jax {__import__('jax').__version__}; XLA_FLAGS=`{os.environ.get('XLA_FLAGS', '')}`; "
        f"{seconds / 60:.1f} minutes in all.",
        "",
        "Every number is computed by `aigc_jax/families/lm/scaling.py` from `configs/gpt3.py` "
        "(the paper's Table 2.1, float32 parameters, AdamW, vocabulary 50,257 with the embedding padded to "
        "50,304 = 393 x 128 rows, context 2,048); nothing is "
        "allocated (the state is `jax.eval_shape` of the LM task's init).",
        "",
        HEADER,
        *[format_row(r) for r in table_rows],
        "",
        "What each column is:",
        "",
        "- **parameters**: counted from the abstract state; **training GFLOPs / token**: 6 N + 12 L C T at "
        "T = 2,048 (forward + backward matmuls, N without the position-embedding lookup, plus attention; "
        "`aigc_jax.nn.transformer.flops_per_token`).",
        "- **state**: parameters + optimizer state (Adam's two moments, its step counters) + the step, "
        "by *sharding arithmetic*: for each leaf, the shape of the shard one device holds under the training "
        "loop's shardings (`aigc_jax.parallel.state_sharding` with the Transformer's rules) times 4 bytes, summed. "
        "Every device holds the same (the rules split a dimension only where the mesh axis divides it). "
        "`state, 1 device` is the unsharded total: 12 bytes per parameter (float32 parameter and two moments).",
        f"- **8 devices**: a mesh of data x fsdp x tensor = {' x '.join(map(str, MESH_8))} simulated CPU "
        "devices. Weight matrices and the token embedding are split 8 ways (embed over fsdp, heads / MLP "
        "width / vocabulary over tensor), the position table 4 ways (over fsdp); biases of the fused QKV and "
        "MLP-up layers 2 ways; norms and the other biases replicated.",
        "- **XLA argument / temp**: *XLA's analysis* (`compiled.memory_analysis()`) of the compiled step, per "
        "device. The argument bytes equal the state arithmetic plus the device's shard of the token batch "
        "(checked in tests/test_gpt3_scaling.py). The temp bytes are what XLA:CPU's buffer assignment "
        "keeps live for gradients, gathered FSDP weights and activations; they are not a GPU estimate"
        + (f": on this backend they hardly move with remat (small, compiled again with remat "
           f"{'off' if args.remat else 'on'}: {gib(remat_check['temp'])} GiB temp against "
           f"{gib(next(r['compiled']['memory']['temp'] for r in table_rows if r['size'] == 'small'))} GiB)."
           if remat_check else "."),
    ]
    if batch is not None:
        accum, micro, window = batch
        lines.append(
            f"- **AOT compile**: `jax.jit(train_step).lower(abstract state, batch, rng).compile()` of the LM "
            f"family's own train step, jitted as the training loop jits it (state donated, every sharding "
            f"explicit), with `model.remat={args.remat}` (each block recomputed in the backward pass). The batch "
            f"is the paper's global batch as micro-batches of {args.sequences_per_shard} sequence(s) of 2,048 "
            f"tokens per fsdp shard ([A, {micro}, {window}], A = batch / {micro}, e.g. 175B: A = "
            f"{1536 // micro}); A is the length of a `lax.scan`, so the compiled program does not grow with it. Seconds are one compile "
            "each, on an empty compilation cache, the sizes compiled one after another in one process.")
    lines += [
        f"- **pod**: the fewest GPUs of {pod.device_memory / 1e9:.0f} GB, a power of two and at least one node "
        f"of {pod.node}, that train the paper's 300B tokens in {pod.days:.0f} days at "
        f"{pod.utilisation:.0%} of an A100's {pod.peak_flops / 1e12:.0f} TFLOP/s bf16 dense peak "
        "(`scaling.pod_devices`), as tensor 8 inside a node and FSDP across nodes. For 175B that is 1,024 "
        "A100s of 80 GB, the cluster on which Narayanan et al. 2021 (Megatron-LM) estimate GPT-3 175B's "
        "training at 34 days. **+ gradients** adds one float32 gradient per parameter shard (gradients "
        "sharded like their parameters); activations are not in it. **days**: total FLOPs / (devices x "
        "peak x utilisation), 175B's total being "
        f"{next((r['total_flops'] for r in table_rows if r['size'] == '175b'), float('nan')):.3g} FLOPs "
        "(the paper's Table D.1: 3.14e23, its 6 N without attention).",
    ]
    big = next((r for r in table_rows if r["size"] == "175b"), None)
    if big is not None:
        lines += ["", f"Reading it: 175B's parameters and Adam state alone are {gib(big['unsharded'])} GiB, "
                  f"{big['unsharded'] / pod.device_memory:.0f}x an {pod.device_memory / 1e9:.0f} GB device; on "
                  f"{big['pod_devices']:,} devices each holds {gib(big['pod_state'])} GiB of it, "
                  f"{gib(big['pod_state_grads'])} GiB with gradients ({big['pod_state_grads'] / pod.device_memory:.1%} "
                  "of the device), leaving the rest for activations, whose size depends on the micro-batch "
                  "and remat and which this table does not claim."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from configs import gpt3
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(gpt3.TABLE_2_1), help="comma-separated sizes of configs/gpt3.py")
    parser.add_argument("--output", default="", help="also write the report (markdown) here")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="the arithmetic only")
    parser.add_argument("--sequences_per_shard", type=int, default=1, help="micro-batch sequences per fsdp shard")
    parser.add_argument("--no-remat", dest="remat", action="store_false", help="compile without model.remat")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(HEADER)
    table_rows = list(rows(args.sizes.split(","), args.compile, args.sequences_per_shard, args.remat))
    remat_check = None
    small = next((r for r in table_rows if r["size"] == "small" and r["compiled"] and r["compiled"].get("memory")), None)
    if small is not None:  # how much XLA:CPU's temp bytes respond to remat
        remat_check = next(rows(["small"], True, args.sequences_per_shard, not args.remat, echo=False))["compiled"]["memory"]
    if args.output:
        command = "python experiments/gpt3_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(args.output, "w") as f:
            f.write(report(table_rows, command.strip(), args, time.perf_counter() - start, remat_check))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    split_host_into_devices()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
