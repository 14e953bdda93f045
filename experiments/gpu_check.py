"""The first thing to run on a new accelerator: GPT-3 Small (125M, configs/gpt3.py:small) trained in
bfloat16 for a few hundred steps on a prepared BPE dataset, with its tokens/s, model FLOP
utilisation against the chip's datasheet peak, peak device memory, and a sample of its text.

  python experiments/gpu_check.py --output=experiments/results/gpu.md      # 2.5 minutes on one H200
  python experiments/gpu_check.py --tiny                                  # the same path in seconds, on a CPU

The data: the Python standard library's top-level sources (on every machine), prepared once into
--scratch with a byte-level BPE of the paper's 50,257 entries (fewer if the corpus runs out of pairs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=64, help="sequences of 2,048 tokens per step")
    parser.add_argument("--vocab_size", type=int, default=50257)
    parser.add_argument("--grad_accum_steps", type=int, default=4,
                        help="micro-batches per step (64 x 2,048 tokens at once need 301 GiB with XLA attention)")
    parser.add_argument("--attention_impl", default="cudnn", choices=["einsum", "xla", "cudnn"])
    parser.add_argument("--scratch", default="/tmp/aigc_gpu_check")
    parser.add_argument("--output", default="", help="write the report (markdown) here")
    parser.add_argument("--tiny", action="store_true", help="configs/gpt3.py:tiny for a few steps (a CPU check)")
    return parser.parse_args(argv)


def prepare_corpus(scratch: str, vocab_size: int, tiny: bool) -> str:
    from aigc_jax.data import prepare
    files = prepare.input_files([prepare.STDLIB])
    data = os.path.join(scratch, f"stdlib_bpe{vocab_size}" + ("_tiny" if tiny else ""))
    if not os.path.exists(os.path.join(data, prepare.INDEX_FILE)):
        prepare.prepare(files[:8] if tiny else files, data, tokenizer="bpe", vocab_size=vocab_size,
                        val_fraction=0.05, unit_bytes=4 << 20, log=lambda m: print(m, flush=True))
    return data


def run_config(args, data: str):
    from aigc_jax.config import apply_overrides, load_config
    from aigc_jax.data.prepared import PreparedDataset
    vocab = PreparedDataset(data, verify=False).tokenizer.vocab_size
    config = load_config(os.path.join(ROOT, "configs", "gpt3.py:" + ("tiny" if args.tiny else "small")))
    steps = 20 if args.tiny else args.steps
    overrides = [f"data.prepared={data}", "data.tokenizer=bpe", f"data.vocab_size={vocab}",
                 f"train.num_steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
                 "train.log_every=10" if args.tiny else "train.log_every=50", "optimizer.decay_steps=0",
                 f"optimizer.warmup_steps={max(steps // 10, 1)}", "eval.num_windows=64"]
    if not args.tiny:
        overrides += [f"train.batch_size={args.batch_size}", "model.dtype=bfloat16",
                      f"train.grad_accum_steps={args.grad_accum_steps}", "train.steps_per_call=1",
                      f"model.attention_impl={args.attention_impl}", "eval.batch_size=16"]
    return apply_overrides(config, overrides)


def peak_memory_bytes() -> int:
    import jax
    stats = jax.devices()[0].memory_stats() or {}
    return int(stats.get("peak_bytes_in_use", 0))


def main(argv=None) -> dict:
    args = parse(argv)
    import jax
    from aigc_jax import families
    from aigc_jax.decoding.sampling import SamplingSettings
    from aigc_jax.families.lm import inference
    from aigc_jax.train.flops import peak_flops_per_device

    device = jax.devices()[0]
    print(f"devices: {jax.device_count()} x {device.device_kind} ({device.platform}); jax {jax.__version__}", flush=True)
    start = time.perf_counter()
    data = prepare_corpus(args.scratch, 300 if args.tiny else args.vocab_size, args.tiny)
    prepare_seconds = time.perf_counter() - start
    config = run_config(args, data)
    workdir = os.path.join(args.scratch, "run" + ("_tiny" if args.tiny else ""))
    shutil.rmtree(workdir, ignore_errors=True)
    summary = families.train(config, workdir)
    last = summary["last_train"]
    peak = peak_flops_per_device()
    lm = inference.load_language_model(workdir)
    texts = inference.sample_text(lm, "def ", num_samples=1, seed=0,
                                  settings=SamplingSettings(max_new_tokens=64 if args.tiny else 200, temperature=0.8,
                                                            top_k=40))
    result = {
        "device": f"{jax.device_count()} x {device.device_kind}", "platform": device.platform,
        "jax": jax.__version__, "host": platform.node(), "config": "gpt3.py:" + ("tiny" if args.tiny else "small"),
        "num_params": summary["num_params"], "vocab_size": lm.tokenizer.vocab_size,
        "batch_tokens": config.train.batch_size * config.model.context_length, "steps": summary["final_step"],
        "grad_accum_steps": config.train.grad_accum_steps,
        "dtype": config.model.dtype, "attention_impl": config.model.attention_impl,
        "tokens_per_second": last["tokens_per_second"], "step_seconds": last["step_seconds"],
        "mfu": last.get("mfu", 0.0), "datasheet_peak_flops": peak,
        "peak_memory_bytes": peak_memory_bytes(), "compile_seconds": summary["compile_seconds"],
        "prepare_seconds": prepare_seconds, "train_wall_seconds": summary["wall_seconds"],
        "final_train_loss": last["loss"], "final_val_loss": summary["final_eval"]["loss"],
        "final_val_bits_per_byte": summary["final_eval"].get("bits_per_byte", 0.0),
        "initial_val_loss": (summary.get("initial_eval") or {}).get("loss", math.nan),
        "sample": "def " + texts[0], "total_seconds": time.perf_counter() - start,
    }
    report = render(result)
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report)
        with open(os.path.splitext(args.output)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


def render(r: dict) -> str:
    memory = f"{r['peak_memory_bytes'] / 2**30:.1f} GiB" if r["peak_memory_bytes"] else "not reported by this backend"
    mfu = f"{r['mfu']:.1%} of {r['datasheet_peak_flops'] / 1e12:.0f} TFLOP/s" if r["mfu"] else "no datasheet peak"
    sample = r["sample"].replace("```", "'''")
    return f"""# GPU check: {r['config']} on {r['device']}

`python experiments/gpu_check.py` ({r['platform']}, jax {r['jax']}): {r['num_params']:,} parameters,
BPE vocabulary {r['vocab_size']:,}, {r['batch_tokens']:,} tokens per step in {r['grad_accum_steps']} micro-batches, {r['dtype']}, attention
{r['attention_impl']}, {r['steps']} steps on the standard library's sources.

| measure | value |
|---|---|
| tokens / s | {r['tokens_per_second']:,.0f} |
| step | {r['step_seconds'] * 1e3:.1f} ms |
| MFU | {mfu} |
| peak device memory | {memory} |
| compile | {r['compile_seconds']:.1f} s |
| preparing the data | {r['prepare_seconds']:.1f} s |
| training wall time | {r['train_wall_seconds']:.1f} s |
| validation loss: start, end | {r['initial_val_loss']:.3f}, {r['final_val_loss']:.3f} nats/token ({r['final_val_bits_per_byte']:.3f} bits/byte) |
| whole check | {r['total_seconds']:.0f} s |

Sample (prompt "def ", temperature 0.8, top-k 40):

```
{sample}
```
"""


if __name__ == "__main__":
    main()
