"""Differentiable augmentation (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient
GAN Training"): the discriminator only ever sees T(x) and T(G(z)), with T random, drawn afresh per
image and differentiable, so the generator's gradient flows through it and D cannot memorise the
few real images it has. Images [N, H, W, C] in [-1, 1]; every transform is per sample.

  color        brightness + U(-0.5, 0.5); saturation: the deviation from the channel mean times
               U(0, 2); contrast: the deviation from the image mean times U(0.5, 1.5)
  translation  a shift of up to 1/8 of the size in each direction, the uncovered border 0
  cutout       a square of half the size at a uniform position set to 0
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple:
    """"translation,cutout" -> ("translation", "cutout"); "" -> (); an unknown name is a ValueError."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; expected some of {', '.join(POLICIES)}")
    return names


def color(rng, x):
    b_rng, s_rng, c_rng = jax.random.split(rng, 3)
    n = x.shape[0]
    x = x + jax.random.uniform(b_rng, (n, 1, 1, 1), minval=-0.5, maxval=0.5)
    mean = jnp.mean(x, axis=3, keepdims=True)
    x = mean + (x - mean) * jax.random.uniform(s_rng, (n, 1, 1, 1), maxval=2.0)
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return mean + (x - mean) * jax.random.uniform(c_rng, (n, 1, 1, 1), minval=0.5, maxval=1.5)


def translation(rng, x, ratio: float = 0.125):
    n, h, w, _ = x.shape
    dy_max, dx_max = int(h * ratio + 0.5), int(w * ratio + 0.5)
    y_rng, x_rng = jax.random.split(rng)
    dy = jax.random.randint(y_rng, (n,), -dy_max, dy_max + 1)
    dx = jax.random.randint(x_rng, (n,), -dx_max, dx_max + 1)
    padded = jnp.pad(x, ((0, 0), (dy_max, dy_max), (dx_max, dx_max), (0, 0)))

    def shift(image, oy, ox):  # output pixel (i, j) = input pixel (i - oy, j - ox), 0 outside
        return jax.lax.dynamic_slice(image, (dy_max - oy, dx_max - ox, 0), (h, w, image.shape[-1]))

    return jax.vmap(shift)(padded, dy, dx)


def cutout(rng, x, ratio: float = 0.5):
    n, h, w, _ = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    y_rng, x_rng = jax.random.split(rng)
    top = jax.random.randint(y_rng, (n, 1, 1), 0, h - size_h + 1)
    left = jax.random.randint(x_rng, (n, 1, 1), 0, w - size_w + 1)
    rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return jnp.where(inside[..., None], 0.0, x).astype(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def augment(rng, images, policy: tuple):
    """T(images) for the transforms named in `policy`, in that order; () returns the images."""
    for i, name in enumerate(policy):
        images = TRANSFORMS[name](jax.random.fold_in(rng, i), images)
    return images
