"""Muon (Jordan et al. 2024): Nesterov momentum whose update for each hidden weight matrix
is replaced by an approximately orthogonal matrix, U V^T of the momentum's SVD U S V^T, from a
quintic Newton-Schulz iteration.

The same update as optax.contrib.muon (its default Frobenius preconditioning, coefficients
and width scaling), computed per matrix with plain 2-D products: optax's per-matrix vmap
over a size-1 batch axis and its explicit transposes ran 1.6x slower on the 2-core CPU
(experiments/results/performance.md).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# Jordan et al.'s quintic p(s) = a s + b s^3 + c s^5: the steepest slope at zero that still
# maps every singular value in (0, 1] into roughly [0.7, 1.2] within five iterations.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(x: jax.Array, steps: int = 5, eps: float = 1e-8) -> jax.Array:
    """Approximately orthogonalises the matrix x [m, n]: the iteration X <- p(X) applies p to
    every singular value and keeps the singular vectors; X is first scaled to Frobenius norm
    one (so all singular values are <= 1) and iterated in its wide orientation (the Gram
    matrix X X^T is min(m, n) square)."""
    if x.ndim != 2:
        raise ValueError(f"Newton-Schulz orthogonalisation needs a matrix, got shape {x.shape}")
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (jnp.linalg.norm(x) + eps)
    a, b, c = NS_COEFFS
    for _ in range(steps):
        gram = jax.lax.dot_general(x, x, (((1,), (1,)), ((), ())))  # X X^T without materialising X^T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


class MuonState(NamedTuple):
    count: jax.Array  # steps taken, int32
    momentum: optax.Updates


def scale_by_muon(beta: float = 0.95, ns_steps: int = 5, eps: float = 1e-8) -> optax.GradientTransformation:
    """Nesterov momentum (bias-corrected, as optax's muon) orthogonalised per matrix, times
    sqrt(max(1, fan_out / fan_in)) so that wide and tall layers move alike (Jordan et al.).
    Every leaf must be a [fan_in, fan_out] matrix; route other leaves elsewhere
    (optax.multi_transform)."""
    def init(params):
        return MuonState(count=jnp.zeros([], jnp.int32), momentum=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        momentum = jax.tree_util.tree_map(lambda m, g: beta * m + (1 - beta) * g, state.momentum, updates)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        corrected_next = 1 - beta ** (t + 1)  # Nesterov: look one step ahead
        corrected_now = 1 - beta ** t

        def orthogonal_step(m, g):
            nesterov = beta * m / corrected_next + (1 - beta) * g / corrected_now
            direction = newton_schulz(nesterov, ns_steps, eps)  # rejects anything but a matrix
            fan_in, fan_out = m.shape
            return direction * max(1.0, fan_out / fan_in) ** 0.5

        return jax.tree_util.tree_map(orthogonal_step, momentum, updates), MuonState(count, momentum)

    return optax.GradientTransformation(init, update)
