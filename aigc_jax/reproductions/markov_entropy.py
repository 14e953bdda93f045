"""Item 2: cross-entropy meets entropy.

A Transformer LM trained (on the one loop, aigc_jax.train.loop.train) on windows of a random
order-k Markov source (aigc_jax/data/markov.py) cannot beat the source: its expected
next-token loss is >= H(X_t | what it sees). Position t of a window sees t symbols, so
  loss at a position with >= k symbols seen  ->  H, the entropy rate (exact);
  the loop's validation loss  ->  (1/T) sum_{t=1..T} H_min(t, k)  (the window limit);
  a model with context c < k  ->  H_c = H(X_t | previous c symbols) at its last position.
Noise: every validation window is an independent stationary sample, so the standard error
of a validation loss is std(per-window mean loss) / sqrt(#windows).
"""
from __future__ import annotations

import math
import os

import jax
import numpy as np

from aigc_jax.families.lm import inference
from aigc_jax.data import markov
from aigc_jax.reproductions import ItemReport, at_least, close_abs, close_rel, training_time
from aigc_jax import families
from aigc_jax.train.metrics import read_metrics

ITEM = "2"
NOISE_SIGMAS = 3.0


def train_lm(config, workdir: str, echo=None) -> dict:
    """Trains (or resumes, or finds finished) the run through the one training loop."""
    return families.train(config, workdir, echo=echo or (lambda *_: None))


def per_position_losses(model, params, tokens: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Next-token losses in nats of windows [N, T + 1] -> [N, T]; column t-1 saw t symbols."""
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        log_probs = jax.nn.log_softmax(apply(params, chunk[:, :-1]), axis=-1)
        out.append(-np.take_along_axis(np.asarray(log_probs, np.float64), chunk[:, 1:, None], axis=-1)[..., 0])
    return np.concatenate(out)


def standard_error(per_window: np.ndarray) -> float:
    """Standard error of the mean of independent per-window values [N]."""
    return float(np.std(per_window, ddof=1) / math.sqrt(len(per_window)))


def analyse_run(workdir: str) -> dict:
    """Everything item 2 (and item 3) reads from a finished run: its source, exact limits, curve,
    the final model's per-position losses on the validation windows, and the true source's."""
    lm = inference.load_language_model(workdir)
    config = lm.config
    source = markov.source_from_config(config.data)
    context = config.model.context_length
    windows = markov.windows(source, config.seed, "validation", 0, config.eval.num_windows, context + 1)
    model_nats = per_position_losses(lm.model, lm.params, windows)  # [N, T]
    source_nats = -source.log_probs(windows)  # [N, T], exact conditionals of the source
    evals = read_metrics(workdir, "eval")
    trains = read_metrics(workdir, "train")
    return {
        "lm": lm, "config": config, "source": source, "context": context, "windows": windows,
        "model_nats": model_nats, "source_nats": source_nats,
        "eval_steps": np.array([r["step"] for r in evals]), "eval_loss": np.array([r["loss"] for r in evals]),
        "train_steps": np.array([r["step"] for r in trains]), "train_loss": np.array([r["loss"] for r in trains]),
        "evals": evals, "final_eval": evals[-1],
        "window_limit": markov.window_entropy_limit(source, context),
        "position_limits": np.array([source.conditional_entropy(min(t, source.order)) for t in range(1, context + 1)]),
    }


def full_context_checks(run: dict, tolerance: float) -> list:
    source, context = run["source"], run["context"]
    k, H = source.order, source.entropy_rate
    model_k = run["model_nats"][:, k - 1:].mean(axis=1)  # positions that saw >= k symbols
    source_loss = run["source_nats"].mean(axis=1)  # the true source's per-window loss
    paired = run["model_nats"].mean(axis=1) - source_loss
    final = run["final_eval"]["loss"]
    sigmas = f"{NOISE_SIGMAS:g} SE"
    return [
        close_rel(f"2: loss at positions seeing >= k = {k} symbols, after training (the source's own loss "
                  f"there: {run['source_nats'][:, k - 1:].mean():.4f})", "-E log q(x_t | x_<t) -> H",
                  float(model_k.mean()), H, tolerance),
        close_rel(f"2: the loop's validation loss after training (window limit {run['window_limit']:.4f})",
                  "val loss -> H", final, H, tolerance),
        close_rel("2: the loop's validation loss vs its exact window limit", "(1/T) sum_t H_min(t,k)",
                  final, run["window_limit"], tolerance),
        close_abs("2: the true source's own loss on the validation windows vs the exact window limit",
                  "-mean log p(x_t | x_<t)", float(source_loss.mean()), run["window_limit"],
                  NOISE_SIGMAS * standard_error(source_loss), sigmas),
        at_least(f"2: lowest of {len(run['eval_loss'])} validation losses vs the source's loss on the same tokens "
                 f"({source_loss.mean():.4f}; never below)", "cross-entropy >= entropy",
                 float(run["eval_loss"].min()), float(source_loss.mean()),
                 NOISE_SIGMAS * standard_error(paired), f"{sigmas} (paired)"),
    ]


def short_context_checks(run: dict, tolerance: float) -> list:
    source, c = run["source"], run["context"]
    H_c = source.conditional_entropy(c)
    last = run["model_nats"][:, -1]
    paired = run["model_nats"][:, -1] - run["source_nats"][:, -1]
    return [
        close_rel(f"2: context {c} < k = {source.order}: loss at its last position (sees {c} symbols)",
                  f"-> H(X_t | previous {c})", float(last.mean()), H_c, tolerance),
        at_least(f"2: context {c}: the same vs the source's loss there given {c} symbols (never below)",
                 f"cross-entropy >= H(X_t | previous {c})", float(last.mean()),
                 float(run["source_nats"][:, -1].mean()), NOISE_SIGMAS * standard_error(paired),
                 f"{NOISE_SIGMAS:g} SE (paired)"),
        close_rel(f"2: context {c}: the loop's validation loss vs its window limit", "(1/c) sum_t H_t",
                  run["final_eval"]["loss"], run["window_limit"], tolerance),
    ]


def reproduce(out_dir: str, full_config, short_config, workdir: str, *, tolerance: float = 0.02,
              echo=None) -> tuple:
    """Trains both models (in workdir/full and workdir/short; an existing finished run is reused)
    and checks them. Returns (ItemReport, the full run's analysis for item 3)."""
    fields = [f"data.{name}" for name in markov.CONFIG_FIELDS
              if full_config.data.get(name) != short_config.data.get(name)]
    if fields:
        raise ValueError(f"the full and short-context configs must use the same Markov source; they differ in "
                         f"{', '.join(fields)}")
    if short_config.model.context_length >= short_config.data.markov_order:
        raise ValueError(f"the short config's context {short_config.model.context_length} is not shorter than "
                         f"the order {short_config.data.markov_order}")
    runs = {}
    for name, config in (("full", full_config), ("short", short_config)):
        run_dir = os.path.join(workdir, name)
        summary = train_lm(config, run_dir, echo)
        runs[name] = analyse_run(run_dir)
        runs[name]["training_time"] = training_time(summary)
    full, short = runs["full"], runs["short"]
    source = full["source"]
    checks = full_context_checks(full, tolerance) + short_context_checks(short, tolerance)
    figures = [_plot_curves(out_dir, full, short), _plot_positions(out_dir, full, short)]
    entropies = ", ".join(f"H_{c} = {source.conditional_entropy(c):.4f}" for c in range(source.order + 1))
    cfg = full["config"]
    notes = (f"Source: {markov.describe(source)}; transition rows ~ Dirichlet({cfg.data.markov_concentration}) "
             f"from seed {cfg.data.markov_seed}. Exact conditional entropies (nats, H_c = H(X_t | previous c "
             f"symbols)): {entropies} (= H). Models: {cfg.model.num_layers} layers x {cfg.model.embed_dim} wide, "
             f"context {full['context']} (full) and {short['context']} (short), {cfg.train.num_steps} AdamW steps "
             f"of {cfg.train.batch_size} fresh windows, lr {cfg.optimizer.learning_rate} cosine to "
             f"{cfg.optimizer.min_learning_rate}; trained by aigc_jax.train.loop.train ({full['training_time']}; "
             f"{short['training_time']}). Validation: "
             f"{len(full['windows'])} independent stationary windows. Window limit of the full model's "
             f"validation loss: {full['window_limit']:.4f} (its first {source.order - 1} positions see fewer than "
             f"k symbols); of the short model's: {short['window_limit']:.4f}. Noise: standard error (SE) = "
             f"std(per-window mean loss) / sqrt({len(full['windows'])}); the true source's own loss on the "
             f"validation windows is {full['source_nats'].mean():.4f} +- "
             f"{standard_error(full['source_nats'].mean(axis=1)):.4f} (1 SE). Tolerance: 2% relative for "
             f"'approaches'; {NOISE_SIGMAS:g} SE for 'never below'.")
    return ItemReport(ITEM, "Cross-entropy meets entropy (Markov source)", checks, figures, notes), full


def _plot_curves(out_dir: str, full: dict, short: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    source = full["source"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run, color, label in ((full, "C0", f"context {full['context']}"), (short, "C1", f"context {short['context']}")):
        ax.plot(run["train_steps"], run["train_loss"], color=color, alpha=0.3, lw=1)
        ax.plot(run["eval_steps"], run["eval_loss"], "o-", color=color, ms=3, label=f"{label}: validation loss")
        ax.axhline(run["window_limit"], color=color, ls=":", lw=1,
                   label=f"{label}: window limit {run['window_limit']:.4f}")
    ax.axhline(source.entropy_rate, color="k", ls="--", lw=1, label=f"entropy rate H = {source.entropy_rate:.4f}")
    c = short["context"]
    ax.axhline(source.conditional_entropy(c), color="C3", ls="--", lw=1,
               label=f"H(X_t | previous {c}) = {source.conditional_entropy(c):.4f}")
    low = source.entropy_rate - 0.05
    ax.set_ylim(low, max(1.15, low + 0.3))
    ax.set(xlabel="optimizer step", ylabel="nats / token", title=f"Transformer LM on an order-{source.order} "
           f"Markov source (faint: training loss)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "markov_loss_curves.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _plot_positions(out_dir: str, full: dict, short: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    seen = np.arange(1, full["context"] + 1)
    ax.step(seen, full["position_limits"], where="mid", color="k", lw=1.2, label="exact H(X_t | previous min(t, k))")
    for run, color, marker in ((full, "C0", "o"), (short, "C1", "s")):
        t = np.arange(1, run["context"] + 1)
        ax.plot(t, run["model_nats"].mean(axis=0), marker, color=color, ms=4,
                label=f"context {run['context']}: model's loss at the position")
        ax.plot(t, run["source_nats"].mean(axis=0), "x", color="0.5", ms=4)
    ax.set(xscale="log", xlabel="symbols seen t (position in the window)", ylabel="validation nats / token",
           title="Loss per position against the exact conditional entropies (x: the true source)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "markov_loss_per_position.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
