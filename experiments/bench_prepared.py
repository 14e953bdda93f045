"""Prepared token datasets against the in-memory path (issue 19, item 2): training speed, and
resident memory as the dataset grows.

  python experiments/bench_prepared.py --rounds=3 --steps=300 --corpus_gb=2 --json=experiments/results/bench_prepared.json

1. Speed: the same model and tokenization (UTF-8 bytes of tiny Shakespeare, so both paths draw the
   very same windows) trained from the text in memory and from a prepared dataset, as separate
   processes, alternating, `rounds` times; the loop's own step seconds (summary phase_seconds).
2. Memory: a generated corpus (standard-library sources, each file of it a fresh random order of
   them) prepared with BPE and trained from, at a small size and at `corpus_gb`; the peak resident
   memory (ru_maxrss) of each preparation and each training process, and their wall times.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aigc_jax.data.text import stdlib_source_files  # noqa: E402


def run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of a child process; its failure stops the benchmark."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def train(workdir: str, steps: int, data_flags: list[str]) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    wall, rss = run([sys.executable, "-m", "experiments.train", "--config=configs/gpt_char.py:shakespeare_cpu",
                     f"--workdir={workdir}", f"--config.train.num_steps={steps}", f"--config.train.eval_every={steps}",
                     "--config.eval.at_start=False", "--config.eval.num_windows=64", "--config.optimizer.warmup_steps=10", "--config.train.progress_bar=False",
                     *data_flags])
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    return {"wall": wall, "rss_mib": rss, "steps_seconds": summary["phase_seconds"]["steps"],
            "loss": summary["last_train"]["loss"]}


def prepare(inputs: str, out: str, flags: list[str], reuse: bool = False) -> dict:
    """Prepares from scratch, or with `reuse` finishes an earlier preparation (keeping its shards)."""
    if not reuse:
        shutil.rmtree(out, ignore_errors=True)
    wall, rss = run([sys.executable, "-m", "experiments.prepare_data", f"--input={inputs}", f"--output={out}", *flags])
    index = json.load(open(os.path.join(out, "index.json")))
    size = sum(os.path.getsize(os.path.join(out, s["file"])) for s in index["shards"])
    return {"wall": wall, "rss_mib": rss, "tokens": index["train_tokens"] + index["validation_tokens"],
            "shard_bytes": size}


def speed(args) -> dict:
    shakespeare = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))
    data = os.path.join(args.scratch, "shakespeare_bytes")
    prepare(shakespeare, data, ["--tokenizer=byte", "--val_fraction=0.1"])
    sides = {"in memory": [f"--config.data.path={shakespeare}", "--config.data.tokenizer=byte"],
             "prepared": [f"--config.data.prepared={data}", "--config.data.tokenizer=byte"]}
    runs = {side: [] for side in sides}
    for round_ in range(args.rounds):
        for side in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
            result = train(os.path.join(args.scratch, "run"), args.steps, sides[side])
            print(f"round {round_} {side}: {result}", flush=True)
            runs[side].append(result)
    return runs


def generate_corpus(directory: str, total_bytes: int, file_bytes: int = 64 << 20, seed: int = 0,
                    reuse: bool = False) -> int:
    """Files of about file_bytes each: the standard library's sources in a fresh random order per file."""
    if reuse and os.path.isdir(directory):
        return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_source_files()]
    rng, written, number = np.random.default_rng(seed), 0, 0
    while written < total_bytes:
        with open(os.path.join(directory, f"part{number:04d}.txt"), "w", encoding="utf-8") as f:
            size = 0
            target = min(file_bytes, total_bytes - written)
            while size < target:
                for i in rng.permutation(len(texts)):
                    size += f.write(texts[i])
                    if size >= target:
                        break
        written += os.path.getsize(os.path.join(directory, f"part{number:04d}.txt"))
        number += 1
    return written


def memory(args) -> dict:
    rows = {}
    small = os.path.join(args.scratch, "corpus_small")
    generate_corpus(small, 32 << 20)
    small_data = os.path.join(args.scratch, "prepared_small")
    tokenizer_flags = [f"--vocab_size={args.vocab_size}", "--sample_mb=32"]
    rows["small prepare"] = {**prepare(small, small_data, tokenizer_flags), "text_bytes": 32 << 20}
    train_flags = ["--config.data.tokenizer=bpe", f"--config.data.vocab_size={args.vocab_size}"]
    rows["small train"] = train(os.path.join(args.scratch, "run"), args.steps,
                                [f"--config.data.prepared={small_data}", *train_flags])
    big = os.path.join(args.scratch, "corpus_big")
    text_bytes = generate_corpus(big, int(args.corpus_gb * (1 << 30)), reuse=args.reuse)
    big_data = os.path.join(args.scratch, "prepared_big")
    # the small run's vocabulary, so the two datasets differ only in size
    rows["big prepare"] = {**prepare(big, big_data, [f"--tokenizer_from={small_data}"], reuse=args.reuse),
                           "text_bytes": text_bytes, "resumed": args.reuse}
    rows["big train"] = train(os.path.join(args.scratch, "run"), args.steps,
                              [f"--config.data.prepared={big_data}", *train_flags])
    for name, row in rows.items():
        print(f"{name}: {row}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--corpus_gb", type=float, default=2.0)
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--scratch", default="/tmp/aigc_bench_prepared")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the generated corpus and finish an interrupted big preparation")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    os.makedirs(args.scratch, exist_ok=True)
    result = {"args": vars(args)}
    if not args.skip_speed:
        runs = speed(args)
        medians = {side: statistics.median(r["steps_seconds"] for r in rs) for side, rs in runs.items()}
        result["speed"] = {"runs": runs, "median_steps_seconds": medians,
                           "prepared_over_in_memory": medians["prepared"] / medians["in memory"]}
        print(f"median step seconds: {medians}; prepared / in memory = {result['speed']['prepared_over_in_memory']:.3f}")
    if not args.skip_memory:
        result["memory"] = memory(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
