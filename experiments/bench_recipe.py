"""Time to result: the shakespeare_cpu recipe's whole run, process start to exit, ours against a
PyTorch script of the same recipe run the way nanoGPT's train.py runs it (experiments/recipe_torch.py).

  python experiments/bench_recipe.py --rounds=3 --json=experiments/results/bench_recipe.json
  python experiments/bench_recipe.py --rounds=3 --variant_flag=--config.train.grad_accum_steps=1 \
      --variant_flag=--config.train.unroll_micro_batches=false   # and the recipe before unrolled micro-batches

Each round runs our command and the PyTorch script as separate processes, one after the other
(alternating which goes first), and splits each wall time into start-up (process start to the
first step: imports, data, model, initialisation), waiting for the train step's compilation,
training steps, evaluation, checkpoint writes and the end (after the last step to exit); see
aigc_jax/train/phases.py. The table gives medians over the rounds, the spread (min-max) of the
total, and the ratio PyTorch / ours. Before the rounds our command runs once more on an empty
compilation cache (the "first run" row); the rounds then find the cache warm, as a user's second
run does. Last, the time to the first sampled character (`experiments.sample`, one token) on an
empty and on a warm cache.

The same recipe on both sides: the model (4 layers, 4 heads, width 128, context 64, biases,
tanh-GELU, tied output), AdamW 1e-3 with betas 0.9/0.99, weight decay 0.1 on matrices, clip 1.0,
100 warm-up steps and cosine to 1e-4 at step 2000, batch 12, an evaluation at step 0 and every
250 steps of 240 windows, a checkpoint every 250 steps. What still differs: nanoGPT evaluates
20 random batches of each split (480 windows), we evaluate 240 fixed validation windows; it runs
steps 0..2000 (2001 steps), we run 2000; it saves only when the validation loss improves.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("startup", "compile_wait", "steps", "eval", "checkpoint", "end")


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of `command`, from process start to exit."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall


def with_end(summary: dict, wall: float) -> dict:
    phases = dict(summary["phase_seconds"])
    phases["end"] = max(wall - sum(phases.values()), 0.0)
    return {**phases, "total": wall}


def run_ours(args, workdir: str, cache: str) -> dict:
    env = dict(os.environ, AIGC_JAX_COMPILATION_CACHE=cache)
    command = [sys.executable, "-m", "experiments.train", "--config=configs/gpt_char.py:shakespeare_cpu",
               f"--config.data.path={args.text}", f"--workdir={workdir}", "--config.train.progress_bar=false",
               f"--config.train.num_steps={args.steps}", f"--config.train.eval_every={args.eval_interval}",
               f"--config.train.checkpoint_every={args.eval_interval}", f"--config.eval.num_windows={args.eval_windows}",
               f"--config.optimizer.warmup_steps={args.warmup}", *args.ours_flag]
    wall = timed(command, env)
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    return {**with_end(summary, wall), "val_loss": summary["final_eval"]["loss"],
            "compile_seconds": summary.get("compile_seconds", 0.0)}


def run_torch(args, out: str) -> dict:
    command = [sys.executable, "experiments/recipe_torch.py", f"--text={args.text}", f"--out={out}",
               f"--max_iters={args.steps}", f"--eval_interval={args.eval_interval}",
               f"--eval_iters={args.eval_windows // 12}", f"--warmup_iters={args.warmup}"]
    wall = timed(command, dict(os.environ))
    summary = json.load(open(os.path.join(out, "summary.json")))
    return {**with_end(summary, wall), "val_loss": summary["evals"][-1]["val"]}


def time_to_first_character(workdir: str, cache: str) -> float:
    env = dict(os.environ, AIGC_JAX_COMPILATION_CACHE=cache)
    return timed([sys.executable, "-m", "experiments.sample", f"--workdir={workdir}", "--num_samples=1",
                  "--max_new_tokens=1"], env)


def median_row(runs: list[dict]) -> dict:
    row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    row["spread"] = [min(r["total"] for r in runs), max(r["total"] for r in runs)]
    return row


def table(rows: dict) -> str:
    lines = ["| side | start-up s | compile wait s | steps s | evaluation s | checkpoints s | end s | total s "
             "(min-max) | final val loss |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        spread = f" ({row['spread'][0]:.1f}-{row['spread'][1]:.1f})" if "spread" in row else ""
        lines.append(f"| {name} | " + " | ".join(f"{row[p]:.1f}" for p in PHASES)
                     + f" | {row['total']:.1f}{spread} | {row['val_loss']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "tinyshakespeare.txt"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval_interval", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps (fewer than --steps)")
    parser.add_argument("--eval_windows", type=int, default=240, help="per evaluation; a multiple of 12")
    parser.add_argument("--ours_flag", action="append", default=[], help="extra flags for our command")
    parser.add_argument("--variant_flag", action="append", default=[],
                        help="also run our command with these extra flags in every round (a second row: e.g. "
                             "the setting before a change, measured side by side)")
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if not os.path.exists(args.text):
        raise SystemExit(f"no text at {args.text!r}; pass --text=PATH (tiny Shakespeare)")
    scratch = tempfile.mkdtemp(prefix="bench_recipe_")
    cache = os.path.join(scratch, "xla_cache")
    try:
        first = run_ours(args, os.path.join(scratch, "ours_first"), cache)  # an empty cache
        print(f"ours, first run (empty cache): {first['total']:.1f} s, compile {first['compile_seconds']:.1f} s",
              flush=True)
        ours, variant, torch = [], [], []
        variant_args = argparse.Namespace(**{**vars(args), "ours_flag": args.ours_flag + args.variant_flag})
        variant_name = f"ours {' '.join(args.variant_flag)}"
        for r in range(args.rounds):
            order = ["ours", "variant", "torch"]
            for side in (order if r % 2 == 0 else order[::-1]):
                if side == "ours":
                    ours.append(run_ours(args, os.path.join(scratch, f"ours_{r}"), cache))
                elif side == "variant" and args.variant_flag:
                    variant.append(run_ours(variant_args, os.path.join(scratch, f"variant_{r}"), cache))
                elif side == "torch" and not args.skip_torch:
                    torch.append(run_torch(args, os.path.join(scratch, f"torch_{r}")))
            print(f"round {r + 1}: ours {ours[-1]['total']:.1f} s (compile {ours[-1]['compile_seconds']:.2f} s)"
                  + (f", {variant_name} {variant[-1]['total']:.1f} s" if variant else "")
                  + (f", PyTorch {torch[-1]['total']:.1f} s" if torch else ""), flush=True)
        sample_cold = time_to_first_character(os.path.join(scratch, "ours_0"), os.path.join(scratch, "empty_cache"))
        sample_warm = time_to_first_character(os.path.join(scratch, "ours_0"), cache)
        rows = {"ours, first run (empty cache)": first, "ours (warm cache)": median_row(ours)}
        if variant:
            rows[f"{variant_name} (warm cache)"] = median_row(variant)
        if torch:
            rows["PyTorch (nanoGPT protocol)"] = median_row(torch)
        print(table(rows))
        report = {"rows": rows, "rounds": {"ours": ours, "variant": variant, "torch": torch},
                  "sample_first_character_seconds": {"empty_cache": sample_cold, "warm_cache": sample_warm},
                  "settings": vars(args)}
        if torch:
            report["ratio_torch_over_ours"] = rows["PyTorch (nanoGPT protocol)"]["total"] / rows["ours (warm cache)"]["total"]
            print(f"PyTorch / ours (whole run, medians): {report['ratio_torch_over_ours']:.2f}x")
        if variant:
            report["ratio_variant_over_ours"] = rows[f"{variant_name} (warm cache)"]["total"] / rows["ours (warm cache)"]["total"]
            print(f"{variant_name} / ours (whole run, medians): {report['ratio_variant_over_ours']:.2f}x")
        print(f"time to the first sampled character: {sample_cold:.1f} s on an empty cache, {sample_warm:.1f} s warm")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
