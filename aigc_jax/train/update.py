"""The optimizer update every family's step ends with, and the norms it reports.

apply_gradients is the core (parameters, optimizer state and gradients of one part);
apply_update applies it to a TrainState: its whole parameters, or one named part of a state
with several optimizers (a GAN's generator and discriminator, PPO's policy and value).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax


def tree_norm(tree) -> jax.Array:
    """The global L2 norm sqrt(sum of squares) over every leaf of a pytree."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def apply_gradients(params, opt_state, grads, tx: optax.GradientTransformation, prefix: str = ""):
    """One optimizer update: -> (new params, new optimizer state, norms), where norms holds
    {prefix}grad_norm, {prefix}update_norm and {prefix}param_norm (of the new params)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    norms = {f"{prefix}grad_norm": tree_norm(grads), f"{prefix}update_norm": tree_norm(updates),
             f"{prefix}param_norm": tree_norm(params)}
    return params, opt_state, norms


def apply_update(state, grads, tx: optax.GradientTransformation, *, part: Optional[str] = None):
    """Applies `grads` to state.params (or to the part state.params[part] with its own optimizer
    state state.opt_state[part]); the step counter is left to the caller. -> (state, norms)."""
    if part is None:
        params, opt_state, norms = apply_gradients(state.params, state.opt_state, grads, tx)
        return state.replace(params=params, opt_state=opt_state), norms
    params, opt_state, norms = apply_gradients(state.params[part], state.opt_state[part], grads, tx,
                                               prefix=f"{part}_")
    return state.replace(params={**state.params, part: params},
                         opt_state={**state.opt_state, part: opt_state}), norms
