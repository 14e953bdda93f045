"""Item 4: why attention divides by sqrt(d) (Vaswani et al. 2017, section 3.2.1).

For q, k in R^d with independent zero-mean unit-variance entries, q . k = sum_i q_i k_i has
mean 0 and variance d; for Gaussian entries E[(q . k)^4] = 3 d^2 + 6 d, so the Monte Carlo
estimate mean((q . k)^2) over N samples has relative standard error sqrt((2 + 6 / d) / N).

Softmax over n keys: given q, the scores (q . k_j)_j are i.i.d. N(0, |q|^2) with |q|^2 ~ chi^2_d,
so the expected attention entropy is E_r[h(r / s)], h(sigma) = E_z[H(softmax(sigma z))],
z ~ N(0, I_n), r^2 ~ chi^2_d, s = sqrt(d) (scaled) or 1 (unscaled). Unscaled the scores'
spread grows like sqrt(d) and the softmax collapses onto one key (entropy -> 0, about like
1 / sqrt(d)); scaled the spread stays about 1 and so does the entropy.
"""
from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.reproductions import Check, ItemReport, close_rel

ITEM = "4"
DIMENSIONS = (16, 32, 64, 128, 256, 512, 1024)
SIGMAS = 4.0


def softmax_entropy(scores: jax.Array) -> jax.Array:
    """H(softmax(scores)) in nats over the last axis: [..., n] -> [...]."""
    log_p = jax.nn.log_softmax(scores, axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def dot_product_variance(key: jax.Array, dim: int, num_samples: int, chunk: int = 8192) -> float:
    """Monte Carlo E[(q . k)^2] (= Var, the mean being 0) over num_samples pairs of N(0, I_d) vectors."""
    total, done, index = 0.0, 0, 0
    while done < num_samples:
        size = min(chunk, num_samples - done)
        total += float(_sum_squares(jax.random.fold_in(key, index), size, dim))
        done, index = done + size, index + 1
    return total / num_samples


@functools.partial(jax.jit, static_argnums=(1, 2))
def _sum_squares(key, size: int, dim: int):
    """sum over `size` pairs of (q . k)^2, q, k ~ N(0, I_dim)."""
    q_key, k_key = jax.random.split(key)
    dots = jnp.sum(jax.random.normal(q_key, (size, dim)) * jax.random.normal(k_key, (size, dim)), axis=-1)
    return jnp.sum(dots ** 2)


def attention_entropies(key: jax.Array, dim: int, num_queries: int, num_keys: int, chunk: int = 256):
    """Per query: softmax entropy of the n scores q . k_j, unscaled and divided by sqrt(d).
    -> (unscaled [num_queries], scaled [num_queries]) numpy arrays."""
    @jax.jit
    def entropies(key):
        q_key, k_key = jax.random.split(key)
        q = jax.random.normal(q_key, (chunk, dim))
        k = jax.random.normal(k_key, (chunk, num_keys, dim))
        scores = jnp.einsum("md,mnd->mn", q, k)
        return softmax_entropy(scores), softmax_entropy(scores / math.sqrt(dim))

    unscaled, scaled = [], []
    for index in range(-(-num_queries // chunk)):
        u, s = entropies(jax.random.fold_in(key, index))
        unscaled.append(np.asarray(u))
        scaled.append(np.asarray(s))
    return np.concatenate(unscaled)[:num_queries], np.concatenate(scaled)[:num_queries]


def expected_entropy(key: jax.Array, dim: int, num_keys: int, num_samples: int, scale: float) -> tuple:
    """E_r[h(r / scale)] by Monte Carlo over r^2 ~ chi^2_d and z ~ N(0, I_n), without any
    d-dimensional vectors. -> (mean, standard error)."""
    r_key, z_key = jax.random.split(key)
    r = jnp.sqrt(2.0 * jax.random.gamma(r_key, dim / 2.0, (num_samples, 1)))  # chi_d
    z = jax.random.normal(z_key, (num_samples, num_keys))
    h = np.asarray(softmax_entropy(r * z / scale))
    return float(h.mean()), float(h.std(ddof=1) / math.sqrt(num_samples))


def reproduce(out_dir: str, *, dims=DIMENSIONS, num_samples: int = 100_000, num_queries: int = 4096,
              num_keys: int = 64, theory_samples: int = 100_000, seed: int = 0,
              stay_put_tolerance: float = 0.05, collapse_fraction: float = 0.05) -> ItemReport:
    key = jax.random.key(seed)
    rows, checks = [], []
    for dim in dims:
        var = dot_product_variance(jax.random.fold_in(key, dim), dim, num_samples)
        rel_se = math.sqrt((2.0 + 6.0 / dim) / num_samples)
        checks.append(close_rel(f"4: Var(q . k), d = {dim}, N = {num_samples:,}", "Var(q . k) = d", var, dim,
                                SIGMAS * rel_se))
        unscaled, scaled = attention_entropies(jax.random.fold_in(key, 10_000 + dim), dim, num_queries, num_keys)
        theory = {name: expected_entropy(jax.random.fold_in(key, 20_000 + 2 * dim + i), dim, num_keys,
                                         theory_samples, scale)
                  for i, (name, scale) in enumerate((("unscaled", 1.0), ("scaled", math.sqrt(dim))))}
        rows.append({"d": dim, "var": var, "rel_se": rel_se,
                     "unscaled": (float(unscaled.mean()), float(unscaled.std(ddof=1) / math.sqrt(num_queries))),
                     "scaled": (float(scaled.mean()), float(scaled.std(ddof=1) / math.sqrt(num_queries))),
                     "theory": theory})
    for name, label in (("unscaled", "q . k"), ("scaled", "q . k / sqrt(d)")):
        z = [abs(r[name][0] - r["theory"][name][0]) / math.hypot(r[name][1], r["theory"][name][1]) for r in rows]
        worst = rows[int(np.argmax(z))]
        tol = SIGMAS * math.hypot(worst[name][1], worst["theory"][name][1])
        ok = all(v <= SIGMAS for v in z)
        checks.append(Check(f"4: softmax entropy of {label} over {num_keys} keys vs theory, worst of d = "
                            f"{dims[0]}..{dims[-1]} (d = {worst['d']})", "E_r h(r / s), r^2 ~ chi^2_d",
                            worst[name][0], worst["theory"][name][0], f"{SIGMAS:g} SE = {tol:.2g} (each d)", ok))
    scaled_means = [r["scaled"][0] for r in rows]
    spread = max(scaled_means) - min(scaled_means)
    checks.append(Check("4: with 1/sqrt(d) the entropy stays put: max - min over d", "spread of H(softmax)",
                        spread, 0.0, f"abs {stay_put_tolerance:g} nats", bool(spread <= stay_put_tolerance)))
    unscaled_means = [r["unscaled"][0] for r in rows]
    falling = all(b < a for a, b in zip(unscaled_means, unscaled_means[1:]))
    ratio = unscaled_means[-1] / scaled_means[-1]
    checks.append(Check(f"4: without it the entropy collapses: at d = {dims[-1]} over scaled (falls at every d: "
                        f"{falling})", "H_unscaled / H_scaled -> 0", ratio, 0.0,
                        f"< {collapse_fraction:g}, falling", bool(falling and ratio < collapse_fraction)))
    figure = _plot(out_dir, rows, num_keys)
    table = ["| d | Var(q.k) | Var/d | entropy, unscaled | theory | entropy, scaled | theory |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        table.append(f"| {r['d']} | {r['var']:.2f} | {r['var'] / r['d']:.4f} +- {r['rel_se']:.4f} | "
                     f"{r['unscaled'][0]:.4f} +- {r['unscaled'][1]:.4f} | {r['theory']['unscaled'][0]:.4f} | "
                     f"{r['scaled'][0]:.4f} +- {r['scaled'][1]:.4f} | {r['theory']['scaled'][0]:.4f} |")
    notes = (f"q, k ~ N(0, I_d). Variance: N = {num_samples:,} pairs per d, estimator mean((q . k)^2), relative "
             f"standard error sqrt((2 + 6/d) / N) from E[(q . k)^4] = 3d^2 + 6d; tolerance {SIGMAS:g} standard "
             f"errors. Entropy: {num_queries:,} queries per d, each against {num_keys} keys (uniform attention "
             f"would have ln {num_keys} = {math.log(num_keys):.4f} nats); theory by a separate Monte Carlo of "
             f"{theory_samples:,} draws of r z (r^2 ~ chi^2_d, z ~ N(0, I_{num_keys})). Entropies in nats, +- one "
             f"standard error:\n\n" + "\n".join(table))
    return ItemReport(ITEM, "Attention scaling", checks, [figure], notes)


def _plot(out_dir: str, rows: list, num_keys: int) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = np.array([r["d"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].errorbar(d, [r["var"] for r in rows], yerr=[4 * r["rel_se"] * r["d"] for r in rows], fmt="o",
                     label="Var(q . k), Monte Carlo (+- 4 SE)")
    axes[0].plot(d, d, "k--", lw=1, label="d")
    axes[0].errorbar(d, [r["var"] / r["d"] for r in rows], yerr=[4 * r["rel_se"] for r in rows], fmt="s",
                     label="Var(q . k / sqrt(d))")
    axes[0].axhline(1.0, color="0.5", ls=":", lw=1)
    axes[0].set(xscale="log", yscale="log", xlabel="d", ylabel="variance", title="Var(q . k) = d")
    axes[0].legend(fontsize=8)
    for name, label, color in (("unscaled", "softmax(q . k)", "C3"), ("scaled", "softmax(q . k / sqrt(d))", "C0")):
        axes[1].errorbar(d, [r[name][0] for r in rows], yerr=[r[name][1] for r in rows], fmt="o", color=color,
                         label=label)
        axes[1].plot(d, [r["theory"][name][0] for r in rows], "--", color=color, lw=1, label=f"{label}: theory")
    axes[1].axhline(math.log(num_keys), color="k", ls=":", lw=1, label=f"uniform: ln {num_keys}")
    axes[1].set(xscale="log", xlabel="d", ylabel="attention entropy (nats)",
                title=f"Softmax entropy over {num_keys} keys")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    name = "attention_scaling.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
