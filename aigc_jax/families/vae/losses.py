"""The VAE's mathematics (Kingma & Welling 2014; Burda et al. 2016): pure functions of arrays.

The one-sample ELBO E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) with the reparameterisation
z = mean + exp(log_var / 2) * eps and the closed-form diagonal-Gaussian KL; the
importance-weighted bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], ELBO = L_1 <= L_k <= log p(x).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from aigc_jax.families.vae import model as vae_model
from aigc_jax.families.vae.model import VAE


LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) = 1/2 sum_j (exp(log_var_j) + mean_j^2 - 1 - log_var_j)
    (Kingma & Welling 2014, appendix B). mean, log_var [..., L] -> [...] nats."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def diagonal_gaussian_log_density(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """log N(z; mean, diag exp(log_var)) = -1/2 sum_j ((z_j - mean_j)^2 / var_j + log var_j + log 2 pi);
    [..., L] -> [...]."""
    return -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-log_var) + log_var + LOG_2PI, axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I), [..., L] -> [...]."""
    return -0.5 * jnp.sum(jnp.square(z) + LOG_2PI, axis=-1)


def reparameterize(rng: jax.Array, mean: jax.Array, log_var: jax.Array,
                   num_samples: Optional[int] = None) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I): differentiable in (mean, log_var).
    mean, log_var [B, L] -> z [B, L], or [num_samples, B, L] when num_samples is given."""
    shape = mean.shape if num_samples is None else (num_samples,) + mean.shape
    eps = jax.random.normal(rng, shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


# encode(x [B, ...]) -> (mean, log_var) [B, L]; log_likelihood(z [B, L], x [B, ...]) -> [B]
EncodeFn = Callable[[jax.Array], tuple]


LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]


def elbo_terms(encode: EncodeFn, log_likelihood: LogLikelihoodFn, x: jax.Array, rng: jax.Array) -> dict:
    """One-sample ELBO of each example: {'reconstruction': log p(x | z) (z ~ q by the
    reparameterisation trick), 'kl': closed-form KL(q(z | x) || N(0, I)),
    'elbo': reconstruction - kl}, each [B] in nats."""
    mean, log_var = encode(x)
    z = reparameterize(rng, mean, log_var)
    reconstruction = log_likelihood(z, x)
    kl = gaussian_kl_to_standard_normal(mean, log_var)
    return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}


def importance_weighted_bound(encode: EncodeFn, log_likelihood: LogLikelihoodFn, x: jax.Array,
                              rng: jax.Array, num_samples: int) -> jax.Array:
    """The IWAE bound (Burda et al. 2016) of each example, [B] nats:
    L_k(x) = log (1/k) sum_{i=1..k} w_i, w_i = p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x),
    computed as logsumexp(log w) - log k."""
    mean, log_var = encode(x)
    z = reparameterize(rng, mean, log_var, num_samples)  # [k, B, L]
    log_px_given_z = jax.vmap(lambda z_i: log_likelihood(z_i, x))(z)  # [k, B]
    log_w = log_px_given_z + standard_normal_log_density(z) - diagonal_gaussian_log_density(z, mean, log_var)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def model_functions(model: VAE, params) -> tuple[EncodeFn, LogLikelihoodFn]:
    """The (encode, log_likelihood) pair of a VAE module and its parameters."""
    def encode(x):
        return model.apply({"params": params}, x, method=VAE.encode)

    def log_likelihood(z, x):
        output = model.apply({"params": params}, z, method=VAE.decode)
        return vae_model.log_likelihood(model.likelihood, output, x, model.min_std)

    return encode, log_likelihood


def elbo(model: VAE, params, x: jax.Array, rng: jax.Array) -> dict:
    """One-sample ELBO terms of a batch x [B, H, W, C] under a VAE: dict of [B] nats (see elbo_terms)."""
    return elbo_terms(*model_functions(model, params), x, rng)


def iwae_bound(model: VAE, params, x: jax.Array, rng: jax.Array, num_samples: int) -> jax.Array:
    """IWAE bound L_k of a batch x [B, H, W, C] under a VAE with k = num_samples: [B] nats."""
    return importance_weighted_bound(*model_functions(model, params), x, rng, num_samples)
