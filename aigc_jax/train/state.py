"""The training state every family shares: a pytree that Orbax saves whole."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """step: optimizer steps taken; params: model parameters; opt_state: optax state;
    extra: anything else a family keeps (EMA weights, batch-norm statistics, ...)."""
    step: jax.Array
    params: Any
    opt_state: Any
    extra: Any = flax.struct.field(default_factory=dict)

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, extra=None) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), extra=extra or {})


def global_norm(tree) -> jax.Array:
    return optax.global_norm(tree)
