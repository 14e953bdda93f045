"""Token losses every sequence family shares. Means are over tokens with nonzero weight."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax


def _weighted_mean(values: jax.Array, weights: Optional[jax.Array]) -> jax.Array:
    if weights is None:
        return jnp.mean(values)
    weights = weights.astype(values.dtype)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log softmax(logits)[target] per position, in nats. logits [..., V], targets [...]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: Optional[jax.Array] = None) -> jax.Array:
    """Mean next-token cross-entropy in nats."""
    return _weighted_mean(token_cross_entropy(logits, targets), weights)


def z_loss(logits: jax.Array, weights: Optional[jax.Array] = None) -> jax.Array:
    """PaLM's auxiliary loss term before its coefficient: mean of (log Z)^2, Z = sum_v exp(logit_v).
    It pulls log Z toward 0, keeping the softmax normaliser stable (Chowdhery et al. 2022)."""
    log_z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
    return _weighted_mean(jnp.square(log_z), weights)
