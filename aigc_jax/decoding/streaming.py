"""Token-by-token decoding for interactive use: one prompt, each new token handed back as soon as
it is chosen (the batched loop in aigc_jax.decoding.sampling returns only when every row is done).

It is the same computation as `sampling.generate(..., method="cached")` for one row whose window
fits the context (no sliding): a prefill of the prompt into a KV cache of `context_length`
slots, then one single-token cached step per new token, and the draw of token t with
fold_in(rng, t) (the per-row key of `generate` for a batch of one, rng = split(key, 1)[0]).
Prompts are padded to a multiple of 32 tokens, so a conversation compiles a few prefills.
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.decoding import sampling
from aigc_jax.decoding.samplers import SamplingSettings, choose_tokens


@functools.partial(jax.jit, static_argnames=("model", "width"))
def _prefill(model, params, history, length, *, width: int):
    start, end = jnp.zeros(1, jnp.int32), jnp.reshape(length, (1,)).astype(jnp.int32)
    return sampling._prefill(model, params, history, start, end, width, model.context_length)


@functools.partial(jax.jit, static_argnames=("model",))
def _step(model, params, cache, token, position, first, index):
    return sampling._cached_step(model, params, cache, token, position, first, index)


@functools.partial(jax.jit, static_argnames=("settings",))
def _choose(key, logits, *, settings):
    return choose_tokens(key[None], logits, settings)


def stream(model, params, prompt: Sequence[int], rng, settings: SamplingSettings) -> Iterator[int]:
    """Yields the new tokens one at a time, a stop token included (then it ends)."""
    settings.validate(model.vocab_size)
    sampling._check_prompts([prompt], model.vocab_size)
    n = len(prompt)
    if n + settings.max_new_tokens > model.context_length:
        raise ValueError(f"a prompt of {n} tokens and {settings.max_new_tokens} new ones exceed the context "
                         f"{model.context_length}: streaming does not slide the window")
    width = min(-(-n // 32) * 32, model.context_length)
    history = np.zeros((1, width), np.int32)
    history[0, :n] = prompt
    key = jax.random.split(rng, 1)[0] if rng.ndim == 0 else rng
    cache, logits, first, last = _prefill(model, params, jnp.asarray(history), jnp.int32(n), width=width)
    stops = set(int(t) for t in settings.stop_tokens)
    for t in range(settings.max_new_tokens):
        token = _choose(jax.random.fold_in(key, t), logits, settings=settings)
        value = int(token[0])
        yield value
        if value in stops or t + 1 == settings.max_new_tokens:
            return
        position = jnp.array([n + t], jnp.int32)
        logits, cache = _step(model, params, cache, token, position, first, last + t)
