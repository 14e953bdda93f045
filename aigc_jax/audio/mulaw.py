"""Mu-law companding (ITU-T G.711's continuous form; WaveNet sec. 2.2, van den Oord et al. 2016).

  f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu),   x in [-1, 1]
  quantised to mu + 1 levels: q = round((f(x) + 1) / 2 * mu) in {0, ..., mu}
  inverse:  x = sign(y) ((1 + mu)^|y| - 1) / mu,   y = 2 q / mu - 1

With mu = 255 this is WaveNet's 256-way categorical target. Works on numpy and JAX arrays.
"""
from __future__ import annotations

import jax.numpy as jnp

MU = 255


def compress(x, mu: int = MU):
    """f(x) in [-1, 1] for x in [-1, 1] (values outside are clipped)."""
    x = jnp.clip(x, -1.0, 1.0)
    return jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / jnp.log1p(float(mu))


def expand(y, mu: int = MU):
    """The inverse of `compress`."""
    return jnp.clip(jnp.sign(y) * jnp.expm1(jnp.abs(y) * jnp.log1p(float(mu))) / mu, -1.0, 1.0)


def encode(x, mu: int = MU):
    """Waveform in [-1, 1] -> integer classes in {0, ..., mu} (int32)."""
    return jnp.round((compress(x, mu) + 1.0) * 0.5 * mu).astype(jnp.int32)


def decode(q, mu: int = MU):
    """Integer classes in {0, ..., mu} -> waveform in [-1, 1] (the class centres)."""
    return expand(2.0 * jnp.asarray(q, jnp.float32) / mu - 1.0, mu)
