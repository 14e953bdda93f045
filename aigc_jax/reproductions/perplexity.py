"""Item 3: perplexity = exp(cross-entropy in nats), bits per token = nats / ln 2.

Checked on the trained Markov LM's evaluation output (the loop's final eval record in
metrics.jsonl) two ways: (i) the loop's own numbers satisfy the identities; (ii) they equal
values computed independently from the model's per-token probabilities p_t on the same
validation tokens: perplexity as the geometric mean (prod_t p_t)^(-1/N), the product kept
exactly as a mantissa and a binary exponent, and bits as -(1/N) sum_t log2 p_t.
"""
from __future__ import annotations

import math
import os

import jax
import numpy as np

from aigc_jax.reproductions import ItemReport, close_rel

ITEM = "3"
MANTISSA_CHUNK = 512  # 512 mantissas in [1/2, 1) multiply to >= 2^-512, far from underflow


def geometric_mean_perplexity(probs: np.ndarray) -> float:
    """(prod_t p_t)^(-1/N) for probabilities [N] in (0, 1], without logarithms of the p_t:
    prod p_t = M * 2^E with the integer E summed exactly and M renormalised chunk by chunk."""
    probs = np.asarray(probs, np.float64).ravel()
    mantissas, exponents = np.frexp(probs)
    total_exponent = int(exponents.astype(np.int64).sum())
    mantissa = 1.0
    for start in range(0, len(mantissas), MANTISSA_CHUNK):
        mantissa, extra = np.frexp(mantissa * np.prod(mantissas[start:start + MANTISSA_CHUNK]))
        total_exponent += int(extra)
    log2_product = total_exponent + math.log2(mantissa)
    return 2.0 ** (-log2_product / len(probs))


def token_probabilities(model, params, tokens: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """p(x_{t+1} | x_<=t) from the softmax (not log-softmax) of windows [N, T + 1] -> [N, T] float64."""
    apply = jax.jit(lambda p, x: jax.nn.softmax(model.apply({"params": p}, x).astype(np.float32), axis=-1))
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        probs = np.asarray(apply(params, chunk[:, :-1]), np.float64)
        out.append(np.take_along_axis(probs, chunk[:, 1:, None], axis=-1)[..., 0])
    return np.concatenate(out)


def reproduce(out_dir: str, run: dict, *, identity_tolerance: float = 1e-6, independent_tolerance: float = 1e-4,
              source_tolerance: float = 0.02) -> ItemReport:
    """run: item 2's analysis of the trained full-context model (markov_entropy.analyse_run)."""
    final = run["final_eval"]
    loss, bits, perplexity = final["loss"], final["bits_per_token"], final["perplexity"]
    probs = token_probabilities(run["lm"].model, run["lm"].params, run["windows"])
    independent_perplexity = geometric_mean_perplexity(probs)
    independent_bits = float(-np.mean(np.log2(probs)))
    source = run["source"]
    checks = [
        close_rel("3: the loop's reported perplexity vs exp(its loss)", "perplexity = exp(CE nats)",
                  perplexity, math.exp(loss), identity_tolerance),
        close_rel("3: the loop's reported bits per token vs its loss / ln 2", "bits = nats / ln 2",
                  bits, loss / math.log(2), identity_tolerance),
        close_rel(f"3: reported perplexity vs (prod_t p_t)^(-1/N), N = {probs.size:,} tokens",
                  "exp(CE) = geometric mean of 1/p", perplexity, independent_perplexity, independent_tolerance),
        close_rel("3: reported bits per token vs -mean log2 p_t", "bits = -(1/N) sum log2 p",
                  bits, independent_bits, independent_tolerance),
        close_rel("3: perplexity vs the source's, exp(window limit)", "exp(CE) -> exp(H_window)",
                  perplexity, math.exp(run["window_limit"]), source_tolerance),
    ]
    figure = _plot(out_dir, run)
    notes = (f"The trained context-{run['context']} model of item 2, final validation record: loss {loss:.6f} nats, "
             f"{bits:.6f} bits per token, perplexity {perplexity:.6f}. Independently from its {probs.size:,} "
             f"softmax probabilities: perplexity {independent_perplexity:.6f}, bits {independent_bits:.6f}. The "
             f"source itself has perplexity exp(H) = {math.exp(source.entropy_rate):.4f} per symbol once k symbols "
             f"are seen (an effective choice among {math.exp(source.entropy_rate):.2f} of the "
             f"{source.alphabet_size} symbols) and {2 ** (source.entropy_rate / math.log(2)):.4f} = 2^(H bits). "
             f"Tolerances: {identity_tolerance:g} relative for the identities on the logged numbers, "
             f"{independent_tolerance:g} for the float32 model recomputed independently, 2% against the source.")
    return ItemReport(ITEM, "Perplexity and bits", checks, [figure], notes)


def _plot(out_dir: str, run: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps, losses = run["eval_steps"], run["eval_loss"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(steps, np.exp(losses), "o-", ms=3, label="exp(logged validation loss)")
    axes[0].plot(steps, [r["perplexity"] for r in run["evals"]], "kx", ms=5, label="logged perplexity")
    axes[0].axhline(math.exp(run["window_limit"]), color="k", ls="--", lw=1,
                    label=f"source: exp(window limit) = {math.exp(run['window_limit']):.4f}")
    axes[0].set(xlabel="step", ylabel="perplexity", title="Perplexity")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, losses / math.log(2), "o-", ms=3, label="logged validation loss / ln 2")
    axes[1].plot(steps, [r["bits_per_token"] for r in run["evals"]], "kx", ms=5, label="logged bits per token")
    axes[1].axhline(run["window_limit"] / math.log(2), color="k", ls="--", lw=1,
                    label=f"source: {run['window_limit'] / math.log(2):.4f} bits")
    axes[1].set(xlabel="step", ylabel="bits / token", title="Bits per token")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    name = "perplexity_bits.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
