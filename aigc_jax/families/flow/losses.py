"""The flow's likelihoods: change of variables log p(x) = log N(f(x); 0, I) + log |det df/dx|
(Dinh et al. 2017), and for images the uniform-dequantisation bound on discrete levels.
"""
from __future__ import annotations

import math

import jax
import numpy as np

from aigc_jax.data.text import DataError
from aigc_jax.families.flow.model import RealNVP2D, RealNVPImage


def log_density(model: RealNVP2D, params, x: jax.Array) -> jax.Array:
    """Exact log p(x) [N] of a 2-D flow at points x [N, 2], in nats."""
    return model.apply({"params": params}, x, method=RealNVP2D.log_prob)


def dequantize(levels: jax.Array, noise: jax.Array, num_levels: int) -> jax.Array:
    """y = (k + u) / L: integer levels k [B, ...] in {0..L-1}, noise u in [0, 1) -> y in [0, 1)."""
    return (levels + noise) / num_levels


def image_negative_log_likelihood(model: RealNVPImage, params, y: jax.Array, num_levels: int) -> jax.Array:
    """-log p(y) + D log L [B] nats: the dequantisation bound on -log P(k) of the discrete image
    whose dequantised version is y [B, H, W, C]."""
    dims = math.prod(y.shape[1:])
    return -model.apply({"params": params}, y, method=RealNVPImage.log_prob) + dims * math.log(num_levels)


def infer_num_levels(images: np.ndarray) -> int:
    """17 when every value is k/16 (the 8x8 digits), 256 when every value is k/255 (8-bit images)."""
    for levels in (17, 256):
        scaled = images * (levels - 1)
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-3):
            return levels
    raise DataError("cannot infer the number of grey levels of these images (values are neither k/16 nor k/255); "
                    "set data.num_levels")
