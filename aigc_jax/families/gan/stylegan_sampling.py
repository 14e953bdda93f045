"""Sampling a trained StyleGAN2 the ways the papers show it: the truncation trick and its
trade-off, style mixing between seeds (StyleGAN Figure 3: coarse, middle and fine styles copied
from a source), interpolation in Z (spherical) and in W (linear). Pure functions of a restored
state and seeds; the pictures are written by experiments/stylegan.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.families.gan.stylegan_model import resolutions, truncate
from aigc_jax.metrics import latent_space


def seed_latents(seeds, z_dim: int) -> np.ndarray:
    """One z per integer seed, [len(seeds), z_dim]: the same seed gives the same z everywhere."""
    return np.stack([np.random.default_rng(int(s)).standard_normal(z_dim) for s in seeds]).astype(np.float32)


def style_ranges(image_size: int) -> dict:
    """Layer ranges [lo, hi) of the ws per style group, after StyleGAN's Figure 3: coarse = the 4x4
    block, middle = the 8x8 block, fine = every block from 16x16 up (at 1024x1024 the paper splits
    4-8 / 16-32 / 64-1024; a 32x32 model has only four blocks). Block r (r = 4, 8, ...) reads
    ws[2i - 1 .. 2i + 1] for i = log2(r) - 2 (the toRGB shares the next block's first w)."""
    count = len(resolutions(image_size))
    if count < 3:
        return {"coarse": (0, 2), "fine": (2, 2 * count)}
    return {"coarse": (0, 2), "middle": (2, 4), "fine": (4, 2 * count)}


def images_from_ws(state, game, ws, noise_seed: int = 0):
    """ws [N, num_ws, w_dim] -> images in [0, 1] (EMA generator, fixed noise)."""
    images = game.synthesis(state.extra["ema"], jnp.asarray(ws), jax.random.key(noise_seed))
    return np.clip((np.asarray(images) + 1.0) / 2.0, 0.0, 1.0)


def ws_of(state, game, z, psi: float = 1.0, cutoff=None):
    w = game.mapping(state.extra["ema"], jnp.asarray(z))
    ws = jnp.repeat(w[:, None], game.num_ws, axis=1)
    return truncate(ws, state.extra["w_avg"], psi, cutoff)


def style_mixing_grid(state, game, image_size: int, destination_seeds, source_seeds, psi: float = 1.0):
    """Figure 3's grid as images [rows, columns, S, S, C] in [0, 1]: row 0 = (blank, sources...);
    then for each style group and destination seed, (destination, destination with that group's
    layers taken from each source). Returns (grid, row labels)."""
    ws_dst = np.asarray(ws_of(state, game, seed_latents(destination_seeds, game.z_dim), psi))
    ws_src = np.asarray(ws_of(state, game, seed_latents(source_seeds, game.z_dim), psi))
    sources = images_from_ws(state, game, ws_src)
    destinations = images_from_ws(state, game, ws_dst)
    blank = np.ones_like(sources[0])
    rows, labels = [np.concatenate([blank[None], sources])], ["sources"]
    for group, (lo, hi) in style_ranges(image_size).items():
        for d in range(len(destination_seeds)):
            mixed = np.repeat(ws_dst[d:d + 1], len(source_seeds), axis=0)
            mixed[:, lo:hi] = ws_src[:, lo:hi]
            rows.append(np.concatenate([destinations[d:d + 1], images_from_ws(state, game, mixed)]))
            labels.append(f"{group} (layers {lo}-{hi - 1}) from the sources")
    return np.stack(rows), labels


def interpolation_grid(state, game, seed_pairs, steps: int = 8, space: str = "w"):
    """For each (seed_a, seed_b), `steps` images along the path: slerp in Z or lerp in W.
    -> [pairs, steps, S, S, C]."""
    t = jnp.linspace(0.0, 1.0, steps)
    rows = []
    for a, b in seed_pairs:
        z = jnp.asarray(seed_latents([a, b], game.z_dim))
        if space == "z":
            zs = latent_space.slerp(jnp.repeat(z[:1], steps, 0), jnp.repeat(z[1:], steps, 0), t)
            ws = ws_of(state, game, zs)
        else:
            w = ws_of(state, game, z)
            ws = latent_space.lerp(jnp.repeat(w[:1], steps, 0), jnp.repeat(w[1:], steps, 0), t)
        rows.append(images_from_ws(state, game, ws))
    return np.stack(rows)
