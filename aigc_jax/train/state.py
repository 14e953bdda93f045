"""The training state every family shares: a pytree that Orbax saves whole."""
from __future__ import annotations

from typing import Any, Mapping, Union

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """step: optimizer steps taken; params: model parameters; opt_state: optax state;
    extra: anything else a family keeps (EMA weights, batch-norm statistics, ...).

    With several optimizers (a GAN's generator and discriminator, PPO's policy and value
    head), params and opt_state are dicts keyed by part; see `create`."""
    step: jax.Array
    params: Any
    opt_state: Any
    extra: Any = flax.struct.field(default_factory=dict)

    @classmethod
    def create(cls, params, tx: Union[optax.GradientTransformation, Mapping[str, optax.GradientTransformation]],
               extra=None) -> "TrainState":
        """tx: one optimizer for all params, or a dict {part: optimizer} for params {part: ...}
        (every part needs its own optimizer)."""
        if isinstance(tx, Mapping):
            if set(tx) != set(params):
                raise ValueError(f"optimizers for parts {sorted(tx)} but parameters for parts {sorted(params)}")
            opt_state = {part: tx[part].init(params[part]) for part in params}
        else:
            opt_state = tx.init(params)
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, extra=extra or {})
