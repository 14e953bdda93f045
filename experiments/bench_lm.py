"""Training-speed benchmark of the LM: ours (JAX) against a PyTorch eager reference.

  python experiments/bench_lm.py                       # shakespeare_cpu shape
  python experiments/bench_lm.py --preset=gpt2_small   # GPT-2 small shape, shorter context
  python experiments/bench_lm.py --config=configs/gpt_char.py:speedrun   # any LM config, JAX only

Both sides train the identical architecture (pre-norm GPT, learned positions, tied
embeddings, tanh-GELU) with the identical optimizer (AdamW, decay on matrices, global-norm
clipping, warm-up + cosine) on the same shapes and batch. Each measurement runs in its own
subprocess, JAX and PyTorch alternating, so neither inherits the other's threads or
memory; the table gives medians over the repeats. The matmul peak that MFU refers to is
measured in the same invocation (a large float32 matmul in JAX).

With --config, the JAX side is the training loop's own compiled step (`placement`), built from
that config (its architecture, optimizer, steps per call, `xla_flags` and CPU devices), on the
config's data; there is no PyTorch reference for it, since the architectures differ.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

PRESETS = {
    # name: (layers, heads, width, context, batch, vocab, bias)
    "shakespeare_cpu": (4, 4, 128, 64, 12, 65, True),  # as configs/gpt_char.py:shakespeare_cpu (biases on)
    "gpt2_small": (12, 12, 768, 128, 4, 50304, False),
}
# The loop's config of a preset: by default our side runs the batch in that config's micro-batches
PRESET_CONFIGS = {"shakespeare_cpu": "configs/gpt_char.py:shakespeare_cpu"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_shape(args) -> tuple:
    """The preset's shape with --context / --batch applied."""
    layers, heads, width, context, batch, vocab, bias = PRESETS[args.preset]
    return layers, heads, width, args.context or context, args.batch or batch, vocab, bias


@functools.lru_cache
def config_micro_batches(preset: str) -> int:
    """Unrolled micro-batches the loop's config of the preset runs its batch in (1: none)."""
    if preset not in PRESET_CONFIGS:
        return 1
    from aigc_jax import config as config_lib  # the config alone: JAX is not started here
    train = config_lib.load_config(os.path.join(REPO, PRESET_CONFIGS[preset])).train
    return int(train.grad_accum_steps) if train.unroll_micro_batches else 1


def micro_batches(args) -> int:
    """--micro_batches, or by default as the loop's config runs the preset's own batch (1 with --batch)."""
    if args.micro_batches >= 0:
        return args.micro_batches
    return 1 if args.batch else config_micro_batches(args.preset)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def random_batches(args, count):
    import numpy as np
    layers, heads, width, context, batch, vocab, bias = bench_shape(args)
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, size=(count, batch, context + 1)).astype(np.int32)


def model_flops_per_step(args) -> float:
    """6N + 12LCT per token (PaLM appendix B), N without the position-embedding lookup."""
    layers, heads, width, context, batch, vocab, bias = bench_shape(args)
    per_block = 12 * width * width + (13 * width if bias else 4 * width)
    n = vocab * width + layers * per_block + (2 if bias else 1) * width
    return (6.0 * n + 12.0 * layers * width * context) * batch * context


def time_calls(compiled, state, batches, rng, steps_per_call: int, warmup_calls: int):
    """Runs the compiled step over the batches; per-step seconds of each call after the warm-up
    calls (waiting for each call's metrics), and the last metrics."""
    import jax
    times = []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready(metrics)
        if i >= warmup_calls:
            times.append((time.perf_counter() - t0) / steps_per_call)
    return times, metrics


def jax_worker(args) -> dict:
    import jax
    if args.cpu_devices > 1:  # before the first computation creates the CPU client
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from aigc_jax.nn.transformer import TransformerLM
    from aigc_jax.families.lm import task as lm
    from aigc_jax.train.optimizers import make_optimizer
    from aigc_jax.train.state import TrainState
    layers, heads, width, context, batch, vocab, bias = bench_shape(args)
    model = TransformerLM(vocab_size=vocab, num_layers=layers, num_heads=heads, embed_dim=width,
                          context_length=context, use_bias=bias, remat=args.remat,
                          attention_impl=args.attention_impl, dtype=args.dtype)
    opt = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-3, min_learning_rate=1e-4,
                                         schedule="cosine", warmup_steps=100, decay_steps=2000, beta1=0.9,
                                         beta2=0.99, eps=1e-8, weight_decay=0.1, grad_clip=1.0))
    tx, schedule = make_optimizer(opt, 2000)
    params = model.init(jax.random.key(0), jnp.zeros((1, context), jnp.int32))["params"]
    # Data parallel over the devices (on CPU, --cpu_devices splits the cores into that many
    # XLA devices, each running its share of the batch on its own thread).
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    state = jax.device_put(TrainState.create(params, tx), replicated)
    micro = micro_batches(args)  # > 1: the batch as independent parts of the step (unrolled micro-batches)
    step = lambda s, b, r: lm.train_step(s, b, r, model=model, tx=tx, schedule=schedule, z_loss_coef=0.0,  # noqa
                                         unroll=micro > 1)
    k = args.steps_per_call
    if k > 1:
        def multi(s, bs, r):
            s, metrics = jax.lax.scan(lambda carry, b: step(carry, b, r), s, bs)
            return s, jax.tree_util.tree_map(lambda m: m[-1], metrics)
        fn = jax.jit(multi, donate_argnums=(0,))
        shape = (k, micro, batch // micro, context + 1)
        batch_sharding = NamedSharding(mesh, PartitionSpec(None, None, "data"))
    else:
        fn = jax.jit(step, donate_argnums=(0,))
        shape = (micro, batch // micro, context + 1)
        batch_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    host = random_batches(args, args.warmup + args.steps)
    calls = (args.warmup + args.steps) // k
    batches = [jax.device_put(host[i * k:(i + 1) * k].reshape(shape), batch_sharding) for i in range(calls)]
    rng = jax.device_put(jax.random.key(1), replicated)
    start = time.perf_counter()
    compiled = fn.lower(state, batches[0], rng).compile()
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    times, metrics = time_calls(compiled, state, batches, rng, k, args.warmup // k)
    xla_bytes = None
    if memory is not None:
        xla_bytes = (memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
                     - memory.alias_size_in_bytes)
    from aigc_jax.train.flops import peak_flops_per_device
    return {"step_times": times, "compile_seconds": compile_seconds, "peak_rss_mb": peak_rss_mb(),
            "device": jax.devices()[0].device_kind, "datasheet_peak": peak_flops_per_device(),
            "xla_buffer_mb": xla_bytes / 2**20 if xla_bytes is not None else None,
            "final_loss": float(metrics["loss"])}


def place_config(config_path: str, overrides) -> tuple:
    """An LM config's task placed as the training loop places it: (config, task, placement,
    initial state, rng). Applies the config's xla_flags and CPU devices first, so it must run
    before anything else starts JAX. Shared with experiments/profile_step.py."""
    from aigc_jax import config as config_lib
    from aigc_jax import parallel
    config = config_lib.load_config(config_path, overrides)
    parallel.prepare_host(config)
    import jax
    from aigc_jax.families import build_task
    from aigc_jax.train.placement import place
    task = build_task(config, "")
    rng = jax.random.key(config.seed)
    placement = place(task, parallel.make_mesh(config.get("mesh")), rng, int(config.train.steps_per_call))
    return config, task, placement, placement.init(task, rng), rng


def config_worker(args) -> dict:
    """The loop's compiled train step for an LM config: (K steps per call) x calls, timed per step."""
    config, task, placement, state, rng = place_config(args.config, args.override)
    import jax
    k = int(config.train.steps_per_call)
    if args.warmup % k or args.steps % k:
        raise SystemExit(f"--warmup and --steps must be multiples of the config's steps_per_call ({k})")
    calls = (args.warmup + args.steps) // k
    batches = [placement.call_batch(task, i * k) for i in range(calls)]
    start = time.perf_counter()
    compiled = placement.jit_train_step(task).lower(state, batches[0], rng).compile()
    compile_seconds = time.perf_counter() - start
    times, _ = time_calls(compiled, state, batches, rng, k, args.warmup // k)
    return {"step_times": times, "compile_seconds": compile_seconds, "peak_rss_mb": peak_rss_mb(),
            "device": jax.devices()[0].device_kind, "datasheet_peak": None, "xla_buffer_mb": None,
            "tokens_per_step": task.items_per_step, "flops_per_step": task.flops_per_step,
            "description": f"{args.config} {' '.join(args.override)}: {task.num_params:,} parameters, "
                           f"{config.optimizer.name}, {k} steps per call, xla_flags {config.get('xla_flags', '')!r}"}


def torch_gpt(args):
    """The reference: the benchmark's architecture in plain PyTorch (pre-norm blocks, fused QKV,
    SDPA attention, tanh-GELU MLP, learned positions, tied output projection, GPT-2 init)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    layers, heads, width, context, batch, vocab, bias = bench_shape(args)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(width, bias=bias)
            self.qkv = nn.Linear(width, 3 * width, bias=bias)
            self.out = nn.Linear(width, width, bias=bias)
            self.norm2 = nn.LayerNorm(width, bias=bias)
            self.up = nn.Linear(width, 4 * width, bias=bias)
            self.down = nn.Linear(4 * width, width, bias=bias)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(y.transpose(1, 2).reshape(b, t, c))
            return x + self.down(F.gelu(self.up(self.norm2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Embedding(vocab, width)
            self.position = nn.Embedding(context, width)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = nn.LayerNorm(width, bias=bias)
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out.weight", "down.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx):
            x = self.token(idx) + self.position(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            return self.norm(x) @ self.token.weight.T  # tied output projection

    return GPT()


def torch_worker(args) -> dict:
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = bench_shape(args)[5]
    model = torch_gpt(args)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99), eps=1e-8)

    def lr_at(step):
        if step < 100:
            return 1e-3 * step / 100
        ratio = min((step - 100) / (2000 - 100), 1.0)
        return 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    host = torch.from_numpy(random_batches(args, args.warmup + args.steps)).long()
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i)
        logits = model(host[i, :, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), host[i, :, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return {"step_times": times, "peak_rss_mb": peak_rss_mb(), "final_loss": float(loss)}


def matmul_peak_worker(args) -> dict:
    """Measured matmul FLOP/s of this machine through XLA (median of 10), in the benchmark's
    compute dtype (float32 on CPU by default)."""
    import jax
    import jax.numpy as jnp
    n = 2048 if jax.default_backend() == "cpu" else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(args.dtype))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return {"flops": 2 * n ** 3 / statistics.median(times)}


def run_child(kind: str, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f"--worker={kind}", f"--preset={args.preset}",
               f"--steps={args.steps}", f"--warmup={args.warmup}", f"--threads={args.threads}",
               f"--steps_per_call={args.steps_per_call}", f"--attention_impl={args.attention_impl}",
               f"--cpu_devices={args.cpu_devices}", f"--dtype={args.dtype}", f"--micro_batches={args.micro_batches}",
               f"--context={args.context}", f"--batch={args.batch}", f"--config={args.config}",
               *[f"--override={o}" for o in args.override]]
    if args.remat:
        command.append("--remat")
    env = dict(os.environ)
    if args.xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict], tokens_per_step: int, flops_per_step: float, peak: float) -> dict:
    medians = [statistics.median(r["step_times"]) for r in runs]
    all_times = sorted(t for r in runs for t in r["step_times"])
    step = statistics.median(medians)
    return {"step_ms": 1e3 * step,
            "spread_ms": 1e3 * (all_times[int(0.9 * len(all_times))] - all_times[int(0.1 * len(all_times))]),
            "tokens_per_second": tokens_per_step / step, "mfu": flops_per_step / step / peak,
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "compile_seconds": statistics.median(r["compile_seconds"] for r in runs) if "compile_seconds" in runs[0] else None,
            "xla_buffer_mb": runs[0].get("xla_buffer_mb"), "per_repeat_tokens_per_second": [tokens_per_step / m for m in medians],
            "final_loss": statistics.median(r["final_loss"] for r in runs) if "final_loss" in runs[0] else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare_cpu")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating JAX / PyTorch runs of each")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--steps_per_call", type=int, default=10,
                        help="optimizer steps per compiled call (lax.scan), as train.steps_per_call")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="JAX compute dtype (parameters and optimizer state stay float32)")
    parser.add_argument("--attention_impl", default="einsum")
    parser.add_argument("--cpu_devices", type=int, default=1,
                        help="JAX on CPU: split the cores into this many XLA devices, data parallel")
    parser.add_argument("--micro_batches", type=int, default=-1,
                        help="JAX: the batch in this many micro-batches, run as independent parts of the step "
                             "(train.grad_accum_steps with train.unroll_micro_batches); the same gradient. "
                             "Default: as the loop's config of the preset runs its batch (1 with --batch)")
    parser.add_argument("--context", type=int, default=0, help="override the preset's context length")
    parser.add_argument("--batch", type=int, default=0, help="override the preset's batch size")
    parser.add_argument("--remat", action="store_true", help="recompute each block in the backward pass")
    parser.add_argument("--xla_flags", default="", help="extra XLA_FLAGS for the JAX runs")
    parser.add_argument("--config", default="", help="time the loop's step for this LM config (JAX only)")
    parser.add_argument("--override", action="append", default=[], help="config override field=value (repeatable)")
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = {"jax": jax_worker, "torch": torch_worker, "peak": matmul_peak_worker,
                  "config": config_worker}[args.worker]
        print(json.dumps(worker(args)))
        return
    if args.config:  # its steps per call come from the config (checked in the worker)
        return bench_config(args)
    if args.steps_per_call > 1 and (args.warmup % args.steps_per_call or args.steps % args.steps_per_call):
        parser.error("--warmup and --steps must be multiples of --steps_per_call")
    layers, heads, width, context, batch, vocab, bias = bench_shape(args)
    if micro_batches(args) < 1 or batch % micro_batches(args):
        parser.error(f"--micro_batches={args.micro_batches} must be positive and divide the batch ({batch})")
    peak = run_child("peak", args)["flops"]
    runs = {"jax": [], "torch": []}
    for _ in range(args.repeats):
        runs["jax"].append(run_child("jax", args))
        if not args.skip_torch:
            runs["torch"].append(run_child("torch", args))
    tokens = batch * context
    flops = model_flops_per_step(args)
    table = {name: summarize(r, tokens, flops, peak) for name, r in runs.items() if r}
    print(f"preset {args.preset}: {layers} layers, {heads} heads, width {width}, context {context}, batch {batch}, "
          f"vocab {vocab}; {args.steps} timed steps x {args.repeats} repeats; steps/call {args.steps_per_call}; "
          f"JAX on {runs['jax'][0]['device']} ({args.dtype}, {args.cpu_devices} CPU device(s), "
          f"{micro_batches(args)} micro-batch(es){' unrolled' if micro_batches(args) > 1 else ''}, attention "
          f"{args.attention_impl}{', remat' if args.remat else ''}); measured {args.dtype} matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s")
    print("| implementation | step ms (median) | spread p10-p90 ms | tokens/s | MFU (measured peak) | peak RSS MB "
          "| XLA buffers MB | compile s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, row in table.items():
        compile_s = f"{row['compile_seconds']:.1f}" if row["compile_seconds"] is not None else "-"
        buffers = f"{row['xla_buffer_mb']:.1f}" if row.get("xla_buffer_mb") is not None else "-"
        print(f"| {'aigc_jax (JAX/XLA)' if name == 'jax' else 'PyTorch eager'} | {row['step_ms']:.2f} | "
              f"{row['spread_ms']:.2f} | {row['tokens_per_second']:,.0f} | {row['mfu']:.1%} | "
              f"{row['peak_rss_mb']:.0f} | {buffers} | {compile_s} |")
    datasheet = runs["jax"][0]["datasheet_peak"]
    if datasheet:
        print(f"MFU against the {runs['jax'][0]['device']} data-sheet bf16 peak ({datasheet / 1e12:.0f} TFLOP/s): "
              f"{flops / (table['jax']['step_ms'] / 1e3) / datasheet:.1%}")
    if "torch" in table:
        print(f"ratio ours / reference (tokens/s): {table['jax']['tokens_per_second'] / table['torch']['tokens_per_second']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "peak_flops": peak, "table": table}, f, indent=2)


def bench_config(args) -> None:
    """JAX only: the loop's step for --config, median over --repeats fresh processes."""
    peak = run_child("peak", args)["flops"]
    runs = [run_child("config", args) for _ in range(args.repeats)]
    row = summarize(runs, runs[0]["tokens_per_step"], runs[0]["flops_per_step"] or 0.0, peak)
    print(f"{runs[0]['description']}; {args.steps} timed steps x {args.repeats} repeats; measured float32 "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print("| config | step ms (median) | spread p10-p90 ms | tokens/s | MFU (measured peak) | peak RSS MB "
          "| compile s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.config} {' '.join(args.override)} | {row['step_ms']:.2f} | {row['spread_ms']:.2f} | "
          f"{row['tokens_per_second']:,.0f} | {row['mfu']:.1%} | {row['peak_rss_mb']:.0f} | "
          f"{row['compile_seconds']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "peak_flops": peak, "table": {"config": row}}, f, indent=2)


if __name__ == "__main__":
    main()
