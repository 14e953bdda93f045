"""Mu-law companding (ITU-T G.711's continuous form; WaveNet sec. 2.2, van den Oord et al. 2016).

  f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu),   x in [-1, 1]
  quantised to mu + 1 levels: q = round((f(x) + 1) / 2 * mu) in {0, ..., mu}
  inverse:  x = sign(y) ((1 + mu)^|y| - 1) / mu,   y = 2 q / mu - 1

With mu = 255 this is WaveNet's 256-way categorical target. NumPy in, NumPy out (a corpus of
many lengths compiles nothing); JAX arrays and tracers go through jax.numpy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MU = 255


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def compress(x, mu: int = MU):
    """f(x) in [-1, 1] for x in [-1, 1] (values outside are clipped)."""
    xp = _xp(x)
    x = xp.clip(x, -1.0, 1.0)
    return xp.sign(x) * xp.log1p(mu * xp.abs(x)) / np.log1p(float(mu))


def expand(y, mu: int = MU):
    """The inverse of `compress`."""
    xp = _xp(y)
    return xp.clip(xp.sign(y) * xp.expm1(xp.abs(y) * np.log1p(float(mu))) / mu, -1.0, 1.0)


def encode(x, mu: int = MU):
    """Waveform in [-1, 1] -> integer classes in {0, ..., mu} (int32)."""
    return _xp(x).round((compress(x, mu) + 1.0) * 0.5 * mu).astype(np.int32)


def decode(q, mu: int = MU):
    """Integer classes in {0, ..., mu} -> waveform in [-1, 1] (the class centres)."""
    xp = _xp(q)
    return expand(2.0 * xp.asarray(q, xp.float32) / mu - 1.0, mu)
