"""Facts about a parameter pytree that every family reports."""
from __future__ import annotations

import math

import jax


def count_params(params) -> int:
    """Number of scalars in a pytree of arrays or shapes (jax.eval_shape output works too)."""
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
