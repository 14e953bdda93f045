"""The shakespeare_cpu recipe in PyTorch, run the way nanoGPT's train.py runs it: the reference
side of experiments/bench_recipe.py.

  python experiments/recipe_torch.py --text=../shared/data/tinyshakespeare.txt --out=DIR

The protocol (nanoGPT's train.py with its documented CPU settings for tiny Shakespeare:
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0 --eval_iters=20): characters as tokens, the first 90% of the
text trains and the rest validates; each step a batch of 12 random windows of 64; AdamW (lr 1e-3,
betas 0.9/0.99, weight decay 0.1 on matrices), 100 warm-up steps then cosine to 1e-4 at step 2000,
gradient clipping at 1.0; at step 0 and every 250 steps the mean loss of 20 random batches of
each split (eval mode, no gradients), and a checkpoint (model and optimizer) whenever the
validation loss improves; steps 0..2000 inclusive, as its loop runs.

The model is experiments/bench_lm.py's torch_gpt: the architecture of configs/gpt_char.py
(learned positions, biases, tanh-GELU, tied output projection), so both sides train the same
network. The time of each phase goes to OUT/summary.json (see aigc_jax/train/phases.py for
what each phase holds on our side).
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before the imports it measures
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.bench_lm import torch_gpt  # noqa: E402
from aigc_jax.train.phases import PhaseClock, process_age_seconds  # noqa: E402


def lr_at(step: int, peak=1e-3, floor=1e-4, warmup=100, decay=2000) -> float:
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)  # nanoGPT's get_lr
    if step > decay:
        return floor
    ratio = (step - warmup) / (decay - warmup)
    return floor + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak - floor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max_iters", type=int, default=2000)
    parser.add_argument("--eval_interval", type=int, default=250)
    parser.add_argument("--eval_iters", type=int, default=20)
    parser.add_argument("--warmup_iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    os.makedirs(args.out, exist_ok=True)
    clock = PhaseClock()

    text = open(args.text, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(data))
    splits = {"train": torch.from_numpy(data[:split]), "val": torch.from_numpy(data[split:])}
    block, batch = 64, 12

    def get_batch(name):
        source = splits[name]
        starts = torch.randint(len(source) - block, (batch,))
        x = torch.stack([source[i:i + block] for i in starts])
        y = torch.stack([source[i + 1:i + 1 + block] for i in starts])
        return x, y

    shape = types.SimpleNamespace(preset="shakespeare_cpu", context=block, batch=batch)
    model = torch_gpt(shape)
    if len(chars) != model.token.num_embeddings:
        raise SystemExit(f"the text has {len(chars)} characters; the model takes {model.token.num_embeddings}")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99), eps=1e-8)

    def loss_of(x, y):
        logits = model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {name: float(torch.stack([loss_of(*get_batch(name)) for _ in range(args.eval_iters)]).mean())
               for name in ("train", "val")}
        model.train()
        return out

    to_first_step = process_age_seconds()
    steps_start = time.perf_counter()
    best, evals, iteration = math.inf, [], 0
    x, y = get_batch("train")
    while True:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(iteration, warmup=args.warmup_iters, decay=args.max_iters)
        if iteration % args.eval_interval == 0:
            with clock("eval"):
                losses = estimate_loss()
            evals.append({"step": iteration, **losses})
            print(f"step {iteration}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            if losses["val"] < best:
                best = losses["val"]
                if iteration > 0:
                    with clock("checkpoint"):
                        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "iter_num": iteration, "best_val_loss": best}, os.path.join(args.out, "ckpt.pt"))
        loss = loss_of(x, y)
        x, y = get_batch("train")  # the next batch, as nanoGPT fetches it while the GPU works
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        iteration += 1
        if iteration > args.max_iters:
            break
    steps_wall = time.perf_counter() - steps_start
    summary = {"evals": evals, "best_val_loss": best, "final_step": iteration - 1,
               "phase_seconds": {"startup": to_first_step, "compile_wait": 0.0,
                                 "steps": steps_wall - clock.seconds["eval"] - clock.seconds["checkpoint"],
                                 "eval": clock.seconds["eval"], "checkpoint": clock.seconds["checkpoint"]},
               "script_seconds": time.perf_counter() - STARTED}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
