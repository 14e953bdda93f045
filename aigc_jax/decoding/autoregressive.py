"""The one autoregressive decoding loop: x_{t+1} ~ P(. | x_<=t), one token per row per step.

Any family drives it by two functions of its own decoding state (a KV cache and token
windows for a Transformer, a stack of per-layer queues for WaveNet, ...):
  next_logits(t, state) -> (logits [B, V], state)   the model's next-token logits at step t;
  append(state, tokens [B]) -> state                 the chosen tokens fed back.
The loop owns what is the same everywhere: choosing tokens (aigc_jax.decoding.samplers),
teacher forcing, stop tokens and per-row lengths, the log-probability of each choice under
the model itself, and one jit-compiled `lax.while_loop` that ends early once every row stopped.
Row i's draw at step t uses fold_in(keys[i], t), so a row's sample does not depend on the
other rows of the batch.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from aigc_jax.decoding.samplers import SamplingSettings, choose_tokens

Array = jax.Array
PAD_ID = 0  # written after a row has stopped; not a valid output (see `lengths`)


def decode(next_logits: Callable, append: Callable, state: Any, keys: Array, settings: SamplingSettings, *,
           vocab_size: int, forced: Optional[Array] = None, return_logits: bool = False):
    """Runs up to settings.max_new_tokens steps from `state` (traceable: call it inside jit).

    keys [B]: one PRNG key per row. forced [B, N] or None: teacher forcing (take these tokens
    instead of sampling). Returns (tokens [B, N] with PAD_ID after a row stopped, lengths [B]
    (a stop token counts), logprobs [B, N] (log P(token) before temperature and filtering; 0
    after the stop), logits [B, N, V] or None, final state).
    """
    batch, steps = keys.shape[0], settings.max_new_tokens
    stops = jnp.array(settings.stop_tokens or (-1,), jnp.int32)

    def body(carry):
        t, state, done, lengths, outputs = carry
        logits, state = next_logits(t, state)
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
        token = choose_tokens(step_keys, logits, settings) if forced is None else forced[:, t].astype(jnp.int32)
        token = jnp.where(done, PAD_ID, token)
        logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=1)[:, 0]
        outputs = dict(outputs)
        outputs["tokens"] = outputs["tokens"].at[:, t].set(token)
        outputs["logprobs"] = outputs["logprobs"].at[:, t].set(jnp.where(done, 0.0, logprob))
        if return_logits:
            outputs["logits"] = outputs["logits"].at[:, t].set(logits)
        lengths = jnp.where(done, lengths, t + 1)
        done = done | jnp.any(token[:, None] == stops[None, :], axis=1)
        return t + 1, append(state, token), done, lengths, outputs

    def keep_going(carry):
        return (carry[0] < steps) & ~jnp.all(carry[2])

    outputs = {"tokens": jnp.full((batch, steps), PAD_ID, jnp.int32),
               "logprobs": jnp.zeros((batch, steps), jnp.float32)}
    if return_logits:
        outputs["logits"] = jnp.zeros((batch, steps, vocab_size), jnp.float32)
    carry = (jnp.zeros((), jnp.int32), state, jnp.zeros(batch, bool), jnp.zeros(batch, jnp.int32), outputs)
    _, state, _, lengths, outputs = jax.lax.while_loop(keep_going, body, carry)
    return outputs["tokens"], lengths, outputs["logprobs"], outputs.get("logits"), state
