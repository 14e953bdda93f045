"""The reward model: the SFT transformer with a scalar head (InstructGPT section 3.5).

Parameters {"lm": the transformer's, "head": {"kernel": [C], "bias": []}}. The reward of a
conversation row is the head applied to the final hidden state at the last response token's
position (the state that has read the whole response and predicts its <|end|>).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def initial_params(lm_params, width: int) -> dict:
    """The SFT run's transformer and a zero head (every reward starts at 0)."""
    return {"lm": lm_params, "head": {"kernel": np.zeros(width, np.float32), "bias": np.zeros((), np.float32)}}


def last_response_position(mask):
    """[N, T] response mask -> [N] index of each row's last response position."""
    t = mask.shape[-1]
    return t - 1 - jnp.argmax(mask[:, ::-1], axis=-1)


def rewards(model, params, inputs, mask):
    """Scalar reward [N] of each row (inputs [N, T], mask [N, T] marking the response)."""
    hidden = model.apply({"params": params["lm"]}, inputs, features=True)  # [N, T, C]
    last = jnp.take_along_axis(hidden, last_response_position(mask)[:, None, None], axis=1)[:, 0]
    return last @ params["head"]["kernel"] + params["head"]["bias"]
