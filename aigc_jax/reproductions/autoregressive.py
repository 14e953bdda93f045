"""Item 1: the autoregressive factorisation P(x_1..x_n | x_0) = prod_t P(x_t | x_0..x_{t-1}).

(a) For a tiny Transformer LM over 3 symbols, the probabilities of all 3^5 sequences of
    length 5 (each the product of the conditionals read from ONE causal forward pass)
    sum to 1, for every first token x_0 (the model has no start-of-text token, so x_0 is
    given). Control: the same product with the causal mask removed (position t sees the
    future) is not a distribution, so the check has teeth.
(b) The per-step log-probabilities recorded while sampling with the KV cache
    (aigc_jax.decoding.sampling.generate, one single-token forward pass per step) sum to the
    log-likelihood of the sampled sequence from one full forward pass.
"""
from __future__ import annotations

import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.reproductions import Check, ItemReport, close_abs

ITEM = "1"


def random_lm(seed: int = 0, vocab_size: int = 3, context_length: int = 16):
    """A tiny LM whose weight matrices are redrawn ~ N(0, 1 / fan_in) (instead of GPT-2's
    0.02), so its conditionals are far from uniform. -> (model, params)."""
    model = TransformerLM(vocab_size=vocab_size, num_layers=2, num_heads=2, embed_dim=16,
                          context_length=context_length)
    params = model.init(jax.random.key(seed), jnp.zeros((1, context_length), jnp.int32))["params"]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    redrawn = [jax.random.normal(k, x.shape) / math.sqrt(x.shape[0]) if x.ndim == 2 else x
               for k, x in zip(keys, leaves)]
    return model, jax.tree_util.tree_unflatten(treedef, redrawn)


def all_sequences(vocab_size: int, length: int) -> np.ndarray:
    """Every sequence over the vocabulary: [V**length, length] int32, in lexicographic order."""
    return np.array(list(itertools.product(range(vocab_size), repeat=length)), np.int32)


def sequence_log_probs(model: TransformerLM, params, tokens, *, causal: bool = True) -> jax.Array:
    """tokens [N, n + 1] = (x_0, x_1..x_n) -> log P(x_1..x_n | x_0) [N]: the sum over t of
    log P(x_t | x_<t), every conditional read from one forward pass. causal=False drops the
    causal mask (the control: position t then also sees x_t .. x_n)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    length = tokens.shape[1] - 1
    mask = None if causal else jnp.ones((1, length, length), bool)
    logits = model.apply({"params": params}, tokens[:, :-1], mask=mask)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0].sum(axis=1)


def total_probability(model: TransformerLM, params, first_token: int, length: int, *, causal: bool = True) -> float:
    """sum over all x_1..x_n of P(x_1..x_n | x_0 = first_token), accumulated in float64."""
    sequences = all_sequences(model.vocab_size, length)
    tokens = np.concatenate([np.full((len(sequences), 1), first_token, np.int32), sequences], axis=1)
    log_p = np.asarray(sequence_log_probs(model, params, tokens, causal=causal), np.float64)
    return float(np.exp(log_p).sum())


def cached_and_forward_log_likelihoods(model: TransformerLM, params, first_tokens, num_new: int, seed: int = 0):
    """Samples num_new tokens after each first token with KV-cache decoding and returns
    (sum of the per-step log-probabilities the decoder recorded [B], log-likelihood of the same
    sequences from one forward pass [B], the sampled tokens [B, num_new])."""
    from aigc_jax.decoding import sampling
    if num_new > model.context_length:
        raise ValueError(f"num_new {num_new} exceeds the context {model.context_length} (no sliding window here)")
    settings = sampling.SamplingSettings(max_new_tokens=num_new, temperature=1.0)
    generation = sampling.generate(model, params, [[int(t)] for t in first_tokens], jax.random.key(seed),
                                   settings, method="cached")
    if not np.all(generation.lengths == num_new):
        raise RuntimeError("decoding stopped early although no stop token was set")
    cached = generation.logprobs.astype(np.float64).sum(axis=1)
    sequences = np.concatenate([np.asarray(first_tokens, np.int32)[:, None], generation.tokens], axis=1)
    forward = np.asarray(sequence_log_probs(model, params, sequences), np.float64)
    return cached, forward, generation.tokens


def reproduce(out_dir: str, *, seed: int = 0, length: int = 5, num_decoded: int = 16,
              decode_length: int = 16, total_tolerance: float = 1e-5, loglik_tolerance: float = 1e-4) -> ItemReport:
    model, params = random_lm(seed, vocab_size=3, context_length=max(decode_length, length))
    vocab = model.vocab_size
    checks, causal_totals, leaky_totals = [], [], []
    for first in range(vocab):
        total = total_probability(model, params, first, length)
        causal_totals.append(total)
        checks.append(close_abs(f"1a: sum over all {vocab}^{length} sequences, x_0 = {first}",
                                "sum_x prod_t P(x_t | x_<t)", total, 1.0, total_tolerance))
    for first in range(vocab):
        leaky = total_probability(model, params, first, length, causal=False)
        leaky_totals.append(leaky)
    worst_leak = max(leaky_totals, key=lambda v: abs(v - 1.0))
    checks.append(Check("1a control: causal mask removed (future visible)", "sum_x prod_t P(x_t | x_all)",
                        worst_leak, "!= 1", f"|sum - 1| > {100 * total_tolerance:.0e}",
                        bool(abs(worst_leak - 1.0) > 100 * total_tolerance)))

    first_tokens = np.arange(num_decoded) % vocab
    cached, forward, _ = cached_and_forward_log_likelihoods(model, params, first_tokens, decode_length, seed)
    worst = int(np.argmax(np.abs(cached - forward)))
    checks.append(close_abs(f"1b: cached decoding vs one forward pass ({num_decoded} sampled sequences, "
                            f"{decode_length} steps; worst row)", "sum_t log P(x_t | x_<t) [cache]",
                            cached[worst], forward[worst], loglik_tolerance))
    figure = _plot(out_dir, model, params, length, causal_totals, leaky_totals, cached, forward)
    notes = (f"A random 2-layer, 16-wide Transformer LM over {vocab} symbols (weight matrices ~ N(0, 1/fan_in), "
             f"seed {seed}). (a) every sequence's probability is the product of the {length} conditionals from one "
             f"causal forward pass over (x_0, x_1..x_{length}); summed in float64 over all {vocab ** length} "
             f"sequences for each given x_0. Sums: {', '.join(f'{t:.7f}' for t in causal_totals)}; without the "
             f"causal mask: {', '.join(f'{t:.4f}' for t in leaky_totals)}. (b) {num_decoded} sequences sampled "
             f"(temperature 1) with aigc_jax.decoding.sampling.generate(method='cached'); largest |cached - forward| = "
             f"{np.max(np.abs(cached - forward)):.2e} nats over log-likelihoods of about "
             f"{np.mean(forward):.1f} nats.")
    return ItemReport(ITEM, "Autoregressive factorisation", checks, [figure], notes)


def _plot(out_dir, model, params, length, causal_totals, leaky_totals, cached, forward) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sequences = all_sequences(model.vocab_size, length)
    tokens = np.concatenate([np.zeros((len(sequences), 1), np.int32), sequences], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for causal, label in ((True, "causal (the model)"), (False, "causal mask removed")):
        p = np.exp(np.asarray(sequence_log_probs(model, params, tokens, causal=causal), np.float64))
        axes[0].plot(np.cumsum(np.sort(p)[::-1]), label=f"{label}: total {p.sum():.4f}")
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set(xlabel=f"sequences x_1..x_{length}, most likely first", ylabel="cumulative probability",
                title=f"all {len(sequences)} sequences given x_0 = 0")
    axes[0].legend(fontsize=8)
    axes[1].scatter(forward, cached, s=12)
    lo, hi = float(min(forward.min(), cached.min())), float(max(forward.max(), cached.max()))
    axes[1].plot([lo, hi], [lo, hi], "k--", lw=0.8)
    axes[1].set(xlabel="log-likelihood, one forward pass (nats)", ylabel="sum of cached per-step log-probs",
                title="KV-cache decoding = forward pass")
    fig.tight_layout()
    name = "autoregressive.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
