"""Item 5: the GAN game in one dimension (Goodfellow et al. 2014, section 4).

V(D, G) = E_{x ~ p_data}[log D(x)] + E_{x ~ p_g}[log(1 - D(x))].
(a) For fixed p_g the maximising discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x));
    a small MLP discriminator trained on samples converges to it.
(b) V(D*, G) = -log 4 + 2 JSD(p_data || p_g) (Proposition 1 / Theorem 1), so -log 4 when
    p_g = p_data. V is computed by quadrature and by Monte Carlo; JSD independently as
    H(m) - (H(p_data) + H(p_g)) / 2, m the mixture, with the Gaussians' closed-form entropies.
(c) The saturating generator objective log(1 - D(G(z))) has d/d logit = -D(G(z)): it vanishes
    where D rejects the samples; the non-saturating -log D(G(z)) has -(1 - D(G(z))): it does not.
Everything is written here from the formulas (the GAN family's losses are not needed).
"""
from __future__ import annotations

import dataclasses
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aigc_jax.reproductions import Check, ItemReport, close_abs

ITEM = "5"
LOG4 = math.log(4.0)


@dataclasses.dataclass(frozen=True)
class Gaussian:
    mean: float
    std: float

    def log_density(self, x):
        return -0.5 * ((x - self.mean) / self.std) ** 2 - math.log(self.std) - 0.5 * math.log(2 * math.pi)

    def entropy(self) -> float:
        """0.5 log(2 pi e sigma^2), nats."""
        return 0.5 * math.log(2 * math.pi * math.e * self.std ** 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mean + self.std * rng.standard_normal(n)


# ------------------------------------------------------------------ the value function (pure)

def log_d_and_log_one_minus_d(logits):
    """D = sigmoid(logit): (log D, log(1 - D)) = (-softplus(-l), -softplus(l)), stable for any l.
    NumPy arrays stay NumPy (float64 quadrature); jax arrays stay jax (differentiable)."""
    xp = jnp if isinstance(logits, jax.Array) else np
    return -xp.logaddexp(0.0, -logits), -xp.logaddexp(0.0, logits)


def optimal_logit(x, p_data: Gaussian, p_g: Gaussian):
    """logit of D*(x) = p_data / (p_data + p_g): log p_data(x) - log p_g(x)."""
    return p_data.log_density(x) - p_g.log_density(x)


def value_by_quadrature(logit_fn, p_data: Gaussian, p_g: Gaussian, num_points: int = 200_001) -> float:
    """V(D, G) = int p_data log D + p_g log(1 - D) dx, trapezoid rule in float64 over mean +- 40 std."""
    lo = min(p_data.mean - 40 * p_data.std, p_g.mean - 40 * p_g.std)
    hi = max(p_data.mean + 40 * p_data.std, p_g.mean + 40 * p_g.std)
    x = np.linspace(lo, hi, num_points)
    log_d, log_1md = (np.asarray(v, np.float64) for v in log_d_and_log_one_minus_d(np.asarray(logit_fn(x))))
    integrand = np.exp(p_data.log_density(x)) * log_d + np.exp(p_g.log_density(x)) * log_1md
    return float(np.trapezoid(integrand, x))


def value_by_monte_carlo(logit_fn, p_data: Gaussian, p_g: Gaussian, rng: np.random.Generator, n: int) -> tuple:
    """V(D, G) from n samples of each density -> (estimate, standard error)."""
    log_d, _ = log_d_and_log_one_minus_d(np.asarray(logit_fn(p_data.sample(rng, n)), np.float64))
    _, log_1md = log_d_and_log_one_minus_d(np.asarray(logit_fn(p_g.sample(rng, n)), np.float64))
    se = math.sqrt(log_d.var(ddof=1) / n + log_1md.var(ddof=1) / n)
    return float(log_d.mean() + log_1md.mean()), se


def jensen_shannon(p_data: Gaussian, p_g: Gaussian, num_points: int = 200_001) -> float:
    """JSD = H(m) - (H(p_data) + H(p_g)) / 2, m = (p_data + p_g) / 2; H(m) by quadrature."""
    lo = min(p_data.mean - 40 * p_data.std, p_g.mean - 40 * p_g.std)
    hi = max(p_data.mean + 40 * p_data.std, p_g.mean + 40 * p_g.std)
    x = np.linspace(lo, hi, num_points)
    log_m = np.logaddexp(p_data.log_density(x), p_g.log_density(x)) - math.log(2)
    mixture_entropy = float(np.trapezoid(-np.exp(log_m) * log_m, x))
    return mixture_entropy - 0.5 * (p_data.entropy() + p_g.entropy())


# ------------------------------------------------------------------ (a) training a discriminator

class Discriminator(nn.Module):
    """x [N] -> logit [N]: an MLP with two tanh layers."""
    width: int = 64

    @nn.compact
    def __call__(self, x):
        h = x[:, None]
        for _ in range(2):
            h = jnp.tanh(nn.Dense(self.width)(h))
        return nn.Dense(1)(h)[:, 0]


def train_discriminator(p_data: Gaussian, p_g: Gaussian, *, steps: int = 4000, batch: int = 4096,
                        learning_rate: float = 1e-2, seed: int = 0):
    """Maximises V(D, G) over D by Adam on fresh samples (cosine-decayed learning rate).
    Returns logit_fn: x -> logit of the trained D."""
    model = Discriminator()
    params = model.init(jax.random.key(seed), jnp.zeros((1,)))["params"]
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-3))

    def negative_value(params, key):
        real_key, fake_key = jax.random.split(key)
        real = p_data.mean + p_data.std * jax.random.normal(real_key, (batch,))
        fake = p_g.mean + p_g.std * jax.random.normal(fake_key, (batch,))
        log_d, _ = log_d_and_log_one_minus_d(model.apply({"params": params}, real))
        _, log_1md = log_d_and_log_one_minus_d(model.apply({"params": params}, fake))
        return -(jnp.mean(log_d) + jnp.mean(log_1md))

    def step(carry, key):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(negative_value)(params, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    keys = jax.random.split(jax.random.key(seed + 1), steps)
    (params, _), losses = jax.jit(lambda c, k: jax.lax.scan(step, c, k))((params, tx.init(params)), keys)
    apply = jax.jit(lambda x: model.apply({"params": params}, x))
    return lambda x: np.asarray(apply(jnp.asarray(x, jnp.float32)), np.float64), np.asarray(losses)


def support_grid(p_data: Gaussian, p_g: Gaussian, threshold: float = 0.01, num_points: int = 2001) -> np.ndarray:
    """Points where the mixture density (p_data + p_g) / 2 >= threshold (where training samples lie)."""
    lo = min(p_data.mean - 8 * p_data.std, p_g.mean - 8 * p_g.std)
    hi = max(p_data.mean + 8 * p_data.std, p_g.mean + 8 * p_g.std)
    x = np.linspace(lo, hi, 20 * num_points)
    mixture = 0.5 * (np.exp(p_data.log_density(x)) + np.exp(p_g.log_density(x)))
    inside = x[mixture >= threshold]
    return np.linspace(inside.min(), inside.max(), num_points)


# ------------------------------------------------------------------ (c) generator gradients

def generator_losses(logits):
    """(saturating E log(1 - D), non-saturating -E log D) of fake logits [N]; G minimises each."""
    log_d, log_1md = log_d_and_log_one_minus_d(logits)
    return jnp.mean(log_1md), -jnp.mean(log_d)


def shift_generator_gradients(theta: float, p_data: Gaussian, z: np.ndarray) -> dict:
    """G_s(z) = s + z at s = theta (p_g = N(theta, 1)) against its optimal discriminator D*, held
    fixed: d/ds of both generator losses by autodiff, and their closed forms. For unit variances
    D*'s logit is linear, l(x) = (mu_data - theta) x + const, so with a = mu_data - theta
    d/ds E log(1 - D) = -a E[D] and d/ds -E log D = -a E[1 - D]."""
    p_g = Gaussian(theta, 1.0)
    z = jnp.asarray(z, jnp.float32)

    def loss(shift, which):
        return generator_losses(optimal_logit(shift + z, p_data, p_g))[which]

    saturating = jax.grad(loss)(jnp.float32(theta), 0)
    nonsaturating = jax.grad(loss)(jnp.float32(theta), 1)
    d_fake = jax.nn.sigmoid(optimal_logit(theta + z, p_data, p_g))
    slope = p_data.mean - theta
    return {"theta": theta, "mean_d": float(jnp.mean(d_fake)), "saturating": float(saturating),
            "nonsaturating": float(nonsaturating), "saturating_closed": float(-slope * jnp.mean(d_fake)),
            "nonsaturating_closed": float(-slope * jnp.mean(1.0 - d_fake))}


# ------------------------------------------------------------------ the item

def reproduce(out_dir: str, *, steps: int = 4000, batch: int = 4096, mc_samples: int = 200_000, seed: int = 0,
              sup_tolerance: float = 0.05, thetas=(0.5, 1.0, 2.0, 4.0, 6.0, 8.0)) -> ItemReport:
    p_data, p_g = Gaussian(0.0, 1.0), Gaussian(2.0, 0.5)
    rng = np.random.default_rng(seed)
    checks = []
    # (a)
    logit_fn, train_losses = train_discriminator(p_data, p_g, steps=steps, batch=batch, seed=seed)
    grid = support_grid(p_data, p_g)
    d_trained = 1 / (1 + np.exp(-logit_fn(grid)))
    d_star = 1 / (1 + np.exp(-optimal_logit(grid, p_data, p_g)))
    sup_error = float(np.max(np.abs(d_trained - d_star)))
    checks.append(close_abs(f"5a: trained D vs D* on [{grid[0]:.2f}, {grid[-1]:.2f}] (sup norm)",
                            "D*(x) = p_data / (p_data + p_g)", sup_error, 0.0, sup_tolerance))
    v_star = value_by_quadrature(lambda x: optimal_logit(x, p_data, p_g), p_data, p_g)
    v_trained = value_by_quadrature(logit_fn, p_data, p_g)
    checks.append(Check("5a: V(D_trained, G) <= V(D*, G) = max_D V (quadrature)", "D* maximises V",
                        v_trained, f"<= {v_star:.6f}", "abs 1e-9", bool(v_trained <= v_star + 1e-9)))
    # (b)
    generators = [Gaussian(0.0, 1.0), p_g] + [Gaussian(mu, 1.0) for mu in (0.5, 1.0, 2.0, 4.0, 8.0)]
    rows = []
    for g in generators:
        d_star_logit = lambda x, g=g: optimal_logit(x, p_data, g)  # noqa: E731
        quad = value_by_quadrature(d_star_logit, p_data, g)
        mc, se = value_by_monte_carlo(d_star_logit, p_data, g, rng, mc_samples)
        jsd = jensen_shannon(p_data, g)
        rows.append({"g": g, "quad": quad, "mc": mc, "se": se, "jsd": jsd, "identity": -LOG4 + 2 * jsd})
    worst = max(rows, key=lambda r: abs(r["quad"] - r["identity"]))
    checks.append(close_abs(f"5b: V(D*, G) by quadrature vs -log 4 + 2 JSD, worst of {len(rows)} generators "
                            f"(p_g = N({worst['g'].mean:g}, {worst['g'].std:g}^2))", "V(D*,G) = -log 4 + 2 JSD",
                            worst["quad"], worst["identity"], 1e-8))
    z_scores = [abs(r["mc"] - r["quad"]) / max(r["se"], 1e-12) for r in rows]  # se = 0 when p_g = p_data
    worst_mc = rows[int(np.argmax(z_scores))]
    checks.append(Check(f"5b: V(D*, G) by Monte Carlo ({mc_samples:,} samples each) vs quadrature, worst "
                        f"(p_g = N({worst_mc['g'].mean:g}, {worst_mc['g'].std:g}^2))", "E_data log D* + E_g log(1-D*)",
                        worst_mc["mc"], worst_mc["quad"], "4 SE (each generator)", bool(max(z_scores) <= 4.0)))
    same = rows[0]
    checks.append(close_abs("5b: p_g = p_data: V(D*, G) by quadrature", "= -log 4", same["quad"], -LOG4, 1e-9))
    checks.append(close_abs("5b: p_g = p_data: V(D*, G) by Monte Carlo", "= -log 4", same["mc"], -LOG4, 1e-9))
    far = rows[-1]
    checks.append(close_abs(f"5b: far apart (p_g = N({far['g'].mean:g}, 1)): JSD -> log 2", "JSD <= log 2",
                            far["jsd"], math.log(2), 1e-3))
    # (c)
    logits = jnp.linspace(-20.0, 20.0, 401)
    d = jax.nn.sigmoid(logits)
    grad_sat = jax.vmap(jax.grad(lambda l: generator_losses(l[None])[0]))(logits)
    grad_ns = jax.vmap(jax.grad(lambda l: generator_losses(l[None])[1]))(logits)
    err = float(max(jnp.max(jnp.abs(grad_sat + d)), jnp.max(jnp.abs(grad_ns + (1 - d)))))
    checks.append(close_abs("5c: d/dlogit of both generator losses vs closed forms on logits -20..20",
                            "-D(G(z)) and -(1 - D(G(z)))", err, 0.0, 1e-6))
    z = np.random.default_rng(seed + 7).standard_normal(100_000)
    grads = [shift_generator_gradients(t, p_data, z) for t in thetas]
    closed_err = max(max(abs(g["saturating"] - g["saturating_closed"]), abs(g["nonsaturating"] - g["nonsaturating_closed"]))
                     / max(abs(g["nonsaturating_closed"]), 1e-30) for g in grads)
    checks.append(close_abs("5c: autodiff d/dtheta vs theta E[D], theta E[1 - D] (G = theta + z, D = D*)",
                            "chain rule through D*'s logit", closed_err, 0.0, 1e-5))
    rejected = grads[-1]
    ratio = abs(rejected["saturating"]) / abs(rejected["nonsaturating"])
    checks.append(Check(f"5c: D rejects (theta = {rejected['theta']:g}, E[D(G(z))] = {rejected['mean_d']:.1e}): "
                        "|grad saturating| / |grad non-saturating|", "vanishes vs does not", ratio, 0.0,
                        "< 1e-3", bool(ratio < 1e-3 and abs(rejected["nonsaturating"]) > 0.5 * rejected["theta"])))
    figures = [_plot_discriminator(out_dir, p_data, p_g, grid, d_trained, d_star),
               _plot_value(out_dir, rows), _plot_gradients(out_dir, grads)]
    table = ["| p_g | V(D*,G) quadrature | V(D*,G) Monte Carlo (+- SE) | JSD | -log 4 + 2 JSD |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        table.append(f"| N({r['g'].mean:g}, {r['g'].std:g}^2) | {r['quad']:.6f} | {r['mc']:.5f} +- {r['se']:.5f} | "
                     f"{r['jsd']:.6f} | {r['identity']:.6f} |")
    grad_table = ["| theta | E[D(G(z))] | d/dtheta saturating | d/dtheta non-saturating |", "| --- | --- | --- | --- |"]
    for g in grads:
        grad_table.append(f"| {g['theta']:g} | {g['mean_d']:.3e} | {g['saturating']:.3e} | {g['nonsaturating']:.4f} |")
    notes = (f"p_data = N(0, 1). (a) p_g = N(2, 0.5^2); discriminator: MLP 1-64-64-1 (tanh), {steps} Adam steps on "
             f"{batch} fresh samples of each density per step, learning rate 1e-2 cosine-decayed; the grid is where the "
             f"mixture density is >= 0.01 (outside it, training sees almost no samples and D is unconstrained). "
             f"V(D_trained, G) = {v_trained:.6f}, V(D*, G) = {v_star:.6f}. (b) Quadrature: trapezoid rule, 200,001 "
             f"points over +- 40 standard deviations; JSD independently as H(m) - (H(p_data) + H(p_g)) / 2.\n\n"
             + "\n".join(table) + "\n\n(c) Generator G_theta(z) = theta + z, p_g = N(theta, 1), against its optimal "
             "discriminator held fixed; gradients of the mean over 100,000 z:\n\n" + "\n".join(grad_table))
    return ItemReport(ITEM, "The GAN game", checks, figures, notes)


def _plot_discriminator(out_dir, p_data, p_g, grid, d_trained, d_star) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(grid, np.exp(p_data.log_density(grid)), color="0.5", lw=1, label="p_data = N(0, 1)")
    ax.plot(grid, np.exp(p_g.log_density(grid)), color="0.5", ls="--", lw=1, label="p_g = N(2, 0.5^2)")
    ax.plot(grid, d_star, "k", lw=2, label="D* = p_data / (p_data + p_g)")
    ax.plot(grid, d_trained, "C1", lw=1.2, label="trained MLP discriminator")
    ax.set(xlabel="x", title=f"(a) sup |D - D*| = {np.max(np.abs(d_trained - d_star)):.4f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "gan_discriminator.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _plot_value(out_dir, rows) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shifted = [r for r in rows if r["g"].std == 1.0]
    mu = [r["g"].mean for r in shifted]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(mu, [r["identity"] for r in shifted], "k-", lw=1, label="-log 4 + 2 JSD(p_data || p_g)")
    ax.plot(mu, [r["quad"] for r in shifted], "o", mfc="none", ms=8, label="V(D*, G), quadrature")
    ax.errorbar(mu, [r["mc"] for r in shifted], yerr=[4 * r["se"] for r in shifted], fmt="x", ms=6,
                label="V(D*, G), Monte Carlo (+- 4 SE)")
    ax.axhline(-LOG4, color="C3", ls=":", label="-log 4 (p_g = p_data)")
    ax.axhline(0.0, color="0.5", ls=":", lw=1, label="0 (JSD = log 2)")
    ax.set(xlabel="mean of p_g = N(mu, 1)  (p_data = N(0, 1))", ylabel="V(D*, G)", title="(b) the value at D*")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "gan_value.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _plot_gradients(out_dir, grads) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    theta = [g["theta"] for g in grads]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.semilogy(theta, [abs(g["saturating"]) for g in grads], "o-", label="saturating: log(1 - D(G(z)))")
    ax.semilogy(theta, [abs(g["nonsaturating"]) for g in grads], "s-", label="non-saturating: -log D(G(z))")
    ax.semilogy(theta, [g["mean_d"] for g in grads], "k:", label="E[D*(G(z))]")
    ax.set(xlabel="generator shift theta (p_g = N(theta, 1), p_data = N(0, 1))", ylabel="|d loss / d theta|",
           title="(c) generator gradient against the optimal discriminator")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "gan_gradients.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
