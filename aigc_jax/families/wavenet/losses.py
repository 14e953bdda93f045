"""WaveNet's output distributions, their negative log-likelihoods and samplers.

categorical         256-way softmax over mu-law classes (WaveNet sec. 2.2).
logistic_mixture    a discretised mixture of K logistics over 16-bit values in [-1, 1]
                    (PixelCNN++, Salimans et al. 2017; Parallel WaveNet, van den Oord et al. 2018):
                    P(x) = sum_k pi_k [sigma((x + 1/b - mu_k) / s_k) - sigma((x - 1/b - mu_k) / s_k)],
                    b = 2^15 (half a bin each side), the edge bins take the tails; parameters per
                    sample: K mixture logits, K means, K log scales (clamped below at -7).
Every NLL is in nats per sample; divide by ln 2 for bits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_SCALE_MIN = -7.0
BINS = 65536


def categorical_nll(logits, targets):
    """logits [..., 256], integer targets [...] -> NLL [...]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def split_mixture(params):
    logit_probs, means, log_scales = jnp.split(params.astype(jnp.float32), 3, axis=-1)
    return logit_probs, jnp.tanh(means), jnp.maximum(log_scales, LOG_SCALE_MIN)


def logistic_mixture_nll(params, x, bins: int = BINS):
    """params [..., 3K], x [...] in [-1, 1] -> NLL [...] of x's bin among `bins` equal bins."""
    logit_probs, means, log_scales = split_mixture(params)
    x = jnp.clip(x, -1.0, 1.0)[..., None]
    half = 1.0 / (bins - 1)
    inv_s = jnp.exp(-log_scales)
    plus, minus = inv_s * (x - means + half), inv_s * (x - means - half)
    cdf_plus, cdf_minus = jax.nn.sigmoid(plus), jax.nn.sigmoid(minus)
    log_cdf_plus = plus - jax.nn.softplus(plus)  # log sigma(plus): the lowest bin's probability
    log_one_minus_cdf_minus = -jax.nn.softplus(minus)  # log (1 - sigma(minus)): the highest bin's
    mid = inv_s * (x - means)
    # Far in a tail the difference underflows: use the density times the bin width there.
    log_pdf_mid = mid - log_scales - 2.0 * jax.nn.softplus(mid) + jnp.log(2.0 * half)
    inner = jnp.where(cdf_plus - cdf_minus > 1e-5, jnp.log(jnp.maximum(cdf_plus - cdf_minus, 1e-12)), log_pdf_mid)
    log_probs = jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_minus, inner))
    return -jax.nn.logsumexp(log_probs + jax.nn.log_softmax(logit_probs, axis=-1), axis=-1)


def sample_categorical(rng, logits, temperature: float = 1.0):
    """Classes [...] from logits [..., 256] (temperature 0: the argmax)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(rng, logits / temperature, axis=-1).astype(jnp.int32)


def sample_logistic_mixture(rng, params, temperature: float = 1.0):
    """Values [...] in [-1, 1]: a component by its weight, then a logistic sample (scale x temperature)."""
    logit_probs, means, log_scales = split_mixture(params)
    pick_rng, u_rng = jax.random.split(rng)
    k = jax.random.categorical(pick_rng, logit_probs, axis=-1)
    mean = jnp.take_along_axis(means, k[..., None], axis=-1)[..., 0]
    scale = jnp.exp(jnp.take_along_axis(log_scales, k[..., None], axis=-1)[..., 0]) * temperature
    u = jax.random.uniform(u_rng, mean.shape, minval=1e-5, maxval=1.0 - 1e-5)
    return jnp.clip(mean + scale * (jnp.log(u) - jnp.log1p(-u)), -1.0, 1.0)
