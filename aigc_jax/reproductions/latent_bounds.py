"""Item 6: likelihood bounds of latent-variable models, and a flow's exact density.

(a) VAE (aigc_jax/families/vae/): the importance-weighted bound (Burda et al. 2016)
      L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],  z_i ~ q(z | x),
    satisfies ELBO(x) = L_1(x) <= L_k(x) <= L_{k'}(x) <= log p(x) for k <= k' (Jensen), so
    it tightens as k grows. Checked on a VAE trained briefly on the one loop, over the test
    images: L_1 (log-weights sampled) equals the ELBO (closed-form KL) in expectation, and the
    mean of L_k rises with k, each step beyond noise (paired standard errors over images).
(b) RealNVP (aigc_jax/families/flow/): log p(x) = log N(f(x); 0, I) + log |det df/dx|, so
    p integrates to 1; the midpoint rule on a 2-D grid of a flow trained on two moons gives 1,
    and without the log-determinant term it does not.
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.reproductions import Check, ItemReport, close_abs, training_time
from aigc_jax import families
from aigc_jax.train.restore import restore_params

ITEM = "6"
SIGMAS = 4.0
IWAE_SAMPLES = (1, 5, 50, 500)


def train(config, workdir: str, echo=None) -> dict:
    return families.train(config, workdir, echo=echo or (lambda *_: None))


def estimates_per_k(k: int, sample_budget: int) -> int:
    """Independent L_k estimates averaged per image: sample_budget // k, at least 4 (noise of small k)."""
    return max(4, sample_budget // k)


def vae_bounds(model, params, images: np.ndarray, ks=IWAE_SAMPLES, *, elbo_draws: int = 32, sample_budget: int = 400,
               seed: int = 0, batch_size: int = 120) -> dict:
    """Per test image [N]: the ELBO (mean of `elbo_draws` one-sample estimates) and, for each k, the mean
    of estimates_per_k(k) independent estimates of L_k (unbiased for E L_k; less noise for small k)."""
    from aigc_jax.families.vae import losses as vae_losses

    def averaged(estimate, draws):
        return jax.jit(lambda p, x, key: jnp.mean(jax.vmap(lambda r: estimate(p, x, r))(
            jax.random.split(key, draws)), axis=0))

    elbo_fn = averaged(lambda p, x, r: vae_losses.elbo(model, p, x, r)["elbo"], elbo_draws)
    iwae_fns = {k: averaged(lambda p, x, r, k=k: vae_losses.iwae_bound(model, p, x, r, k), estimates_per_k(k, sample_budget))
                for k in ks}
    out = {"elbo": []} | {k: [] for k in ks}
    base = jax.random.key(seed)
    count = len(images)
    padded = np.concatenate([images, images[:(-count) % batch_size]])  # one shape: one compile per function
    for index, start in enumerate(range(0, count, batch_size)):
        x = jnp.asarray(padded[start:start + batch_size], jnp.float32)
        key = jax.random.fold_in(base, index)
        out["elbo"].append(np.asarray(elbo_fn(params, x, key), np.float64))
        for k in ks:
            out[k].append(np.asarray(iwae_fns[k](params, x, jax.random.fold_in(key, k)), np.float64))
    return {name: np.concatenate(values)[:count] for name, values in out.items()}


def standard_error(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def grid_integral(log_density_fn, extent: float, resolution: int, chunk: int = 65536) -> float:
    """Midpoint rule for the integral of exp(log_density) over [-extent, extent]^2 (float64 sum)."""
    width = 2.0 * extent / resolution
    centres = -extent + width * (np.arange(resolution) + 0.5)
    xs, ys = np.meshgrid(centres, centres)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    total = 0.0
    for start in range(0, len(points), chunk):
        total += float(np.exp(np.asarray(log_density_fn(points[start:start + chunk]), np.float64)).sum())
    return total * width * width


def flow_log_densities(model, params):
    """(log p(x) by the change of variables, the same without log |det df/dx|) as jitted functions."""
    from aigc_jax.families.flow.model import RealNVP2D, standard_normal_log_density

    def forward(x):
        return model.apply({"params": params}, jnp.asarray(x), method=RealNVP2D.forward)

    def with_jacobian(x):
        z, log_det = forward(x)
        return standard_normal_log_density(z) + log_det

    def without_jacobian(x):
        return standard_normal_log_density(forward(x)[0])

    return jax.jit(with_jacobian), jax.jit(without_jacobian)


def reproduce(out_dir: str, vae_config, flow_config, workdir: str, *, ks=IWAE_SAMPLES, sample_budget: int = 400,
              extent: float = 6.0, resolution: int = 600, integral_tolerance: float = 1e-3, echo=None) -> ItemReport:
    from aigc_jax.families.vae import task as vae_task
    from aigc_jax.families.flow.task import make_2d_model
    checks = []
    # (a) the VAE
    vae_dir = os.path.join(workdir, "vae")
    vae_summary = train(vae_config, vae_dir, echo)
    setup, vae_params, _ = vae_task.load_trained(vae_dir)
    bounds = vae_bounds(setup.model, vae_params, setup.test_images, ks, sample_budget=sample_budget)
    elbo = bounds["elbo"]
    diff = bounds[ks[0]] - elbo
    checks.append(close_abs(f"6a: IWAE with k = {ks[0]} vs the ELBO (closed-form KL), mean over "
                            f"{len(elbo)} test images", "L_1 = ELBO", float(bounds[ks[0]].mean()), float(elbo.mean()),
                            SIGMAS * standard_error(diff), f"{SIGMAS:g} SE"))
    for k in ks[1:]:
        gap = bounds[k] - elbo
        checks.append(Check(f"6a: ELBO <= IWAE_k, k = {k}: mean L_k - ELBO", "L_k - ELBO >= 0",
                            float(gap.mean()), ">= 0", f"{SIGMAS:g} SE = {SIGMAS * standard_error(gap):.2g}",
                            bool(gap.mean() >= -SIGMAS * standard_error(gap))))
    steps = [(a, b, bounds[b] - bounds[a]) for a, b in zip(ks, ks[1:])]
    smallest = min(steps, key=lambda s: s[2].mean() / max(standard_error(s[2]), 1e-12))
    a, b, rise = smallest
    checks.append(Check(f"6a: tightens: every step k = {' -> '.join(map(str, ks))} rises beyond noise "
                        f"(weakest: {a} -> {b})", "L_k' - L_k > 0 (k' > k)", float(rise.mean()),
                        "> 0", f"> {SIGMAS:g} SE = {SIGMAS * standard_error(rise):.2g}",
                        bool(all(s[2].mean() > SIGMAS * standard_error(s[2]) for s in steps))))
    # (b) the flow
    flow_dir = os.path.join(workdir, "flow")
    flow_summary = train(flow_config, flow_dir, echo)
    flow_model = make_2d_model(flow_config.model)
    flow_params = restore_params(flow_dir, task="flow").params
    with_jacobian, without_jacobian = flow_log_densities(flow_model, flow_params)
    integral = grid_integral(with_jacobian, extent, resolution)
    coarse = grid_integral(with_jacobian, extent, resolution // 2)
    no_jacobian = grid_integral(without_jacobian, extent, resolution)
    checks.append(close_abs(f"6b: RealNVP density on [-{extent:g}, {extent:g}]^2, {resolution}^2 midpoint grid",
                            "int p(x) dx = 1", integral, 1.0, integral_tolerance))
    checks.append(Check("6b control: the same without log |det df/dx|", "int N(f(x); 0, I) dx",
                        no_jacobian, "!= 1", f"|int - 1| > {5 * integral_tolerance:g}",
                        bool(abs(no_jacobian - 1.0) > 5 * integral_tolerance)))
    figures = [_plot_bounds(out_dir, bounds, ks), _plot_flow(out_dir, with_jacobian, extent, integral)]
    rows = "\n".join(f"| {k} | {bounds[k].mean():.4f} | {(bounds[k] - elbo).mean():.4f} +- "
                     f"{standard_error(bounds[k] - elbo):.4f} |" for k in ks)
    vc, fc = vae_config, flow_config
    notes = (f"(a) VAE: configs/vae.py ({vc.model.kind} encoder/decoder, {vc.model.hidden_dim} hidden, latent "
             f"{vc.model.latent_dim}, {vc.model.decoder} decoder, {vc.data.dataset} binarised), trained "
             f"{vc.train.num_steps} steps on the one loop ({training_time(vae_summary)}). On the "
             f"{len(elbo)} test images: ELBO (mean of 32 one-sample estimates per image) {elbo.mean():.4f} nats; "
             f"IWAE bounds (per image the mean of max(4, {sample_budget} / k) independent estimates of L_k; +- paired "
             f"standard error over images):\n\n"
             f"| k | mean L_k (nats) | mean L_k - ELBO |\n| --- | --- | --- |\n{rows}\n\n"
             f"(b) RealNVP: configs/realnvp.py:moons ({fc.model.num_couplings} couplings, {fc.model.hidden_dim} "
             f"hidden), trained {fc.train.num_steps} steps on the one loop "
             f"({training_time(flow_summary)}). Integral of p on [-{extent:g}, {extent:g}]^2: {integral:.6f} on a {resolution}^2 grid, "
             f"{coarse:.6f} on {resolution // 2}^2 (discretisation error about {abs(integral - coarse):.1e}; the mass "
             f"outside the square is not counted). Without the log-determinant: {no_jacobian:.4f}. "
             f"Tolerance {integral_tolerance:g}.")
    return ItemReport(ITEM, "ELBO <= IWAE; a flow's density integrates to 1", checks, figures, notes)


def _plot_bounds(out_dir: str, bounds: dict, ks) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    means = [bounds[k].mean() for k in ks]
    errors = [SIGMAS * standard_error(bounds[k] - bounds["elbo"]) for k in ks]
    ax.errorbar(ks, means, yerr=errors, fmt="o-", label="IWAE bound L_k (+- 4 paired SE)")
    ax.axhline(bounds["elbo"].mean(), color="k", ls="--", lw=1, label="ELBO")
    ax.set(xscale="log", xlabel="importance samples k", ylabel="mean bound on log p(x) (nats / image)",
           title="VAE: ELBO = L_1 <= L_k, rising with k")
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "vae_iwae_bounds.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _plot_flow(out_dir: str, log_density_fn, extent: float, integral: float) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    resolution = 200
    width = 2.0 * extent / resolution
    centres = -extent + width * (np.arange(resolution) + 0.5)
    xs, ys = np.meshgrid(centres, centres)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    density = np.exp(np.asarray(log_density_fn(points))).reshape(resolution, resolution)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    image = ax.imshow(density, origin="lower", extent=(-extent, extent, -extent, extent), cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(title=f"RealNVP on two moons: integral of p = {integral:.4f}", xlabel="x_1", ylabel="x_2")
    fig.tight_layout()
    name = "flow_density.png"
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name
