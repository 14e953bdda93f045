"""The VAE's figures: prior samples, reconstructions and latent interpolations as PNG grids."""
from __future__ import annotations

import functools
import os

import jax.numpy as jnp
import numpy as np

from aigc_jax.image_grid import save_image_grid
from aigc_jax.families.vae import model as vae_model
from aigc_jax.families.vae.model import VAE


def save_figures(model: VAE, params, test_images: np.ndarray, prior_z: np.ndarray, workdir: str, step: int,
                 interpolation_steps: int) -> None:
    """samples/ (decoder means at fixed z ~ N(0, I)), reconstructions/ (rows of test images, each
    followed by a row of decoder means at their posterior means) and interpolations/ (decoder
    means along straight lines between the posterior means of pairs of test images)."""
    apply = functools.partial(model.apply, {"params": params})
    mean_of = lambda output: np.asarray(vae_model.decoder_mean(model.likelihood, output, model.min_std))  # noqa: E731
    scale = max(1, 64 // test_images.shape[1])
    name = f"step_{step:07d}.png"
    save_image_grid(mean_of(apply(jnp.asarray(prior_z), method=VAE.decode)),
                    os.path.join(workdir, "samples", name), scale=scale)

    columns = 8
    originals = test_images[:4 * columns]
    posterior_mean, _ = apply(jnp.asarray(originals), method=VAE.encode)
    reconstructions = mean_of(apply(posterior_mean, method=VAE.decode))
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start:start + columns], reconstructions[start:start + columns]]
    save_image_grid(np.concatenate(rows), os.path.join(workdir, "reconstructions", name), columns=columns,
                    scale=scale)

    pairs = min(8, len(test_images) // 2)
    z_start, z_end = posterior_mean[:pairs], apply(jnp.asarray(test_images[pairs:2 * pairs]), method=VAE.encode)[0]
    t = jnp.linspace(0.0, 1.0, interpolation_steps)[None, :, None]
    path = (1.0 - t) * z_start[:, None] + t * z_end[:, None]  # [pairs, steps, L]
    frames = mean_of(apply(path.reshape(-1, path.shape[-1]), method=VAE.decode))
    save_image_grid(frames, os.path.join(workdir, "interpolations", name), columns=interpolation_steps,
                    scale=scale)
