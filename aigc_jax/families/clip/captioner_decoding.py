"""Writing captions with a trained captioner, through the shared decoders:
beam search (aigc_jax.decoding.beam_search; width 1 with alpha 0 is greedy search) and sampling
(aigc_jax.decoding.autoregressive with aigc_jax.decoding.samplers: temperature, top-k, top-p).

Each image is encoded once; each step feeds one token per row through the cached decoder. PAD
and BOS are never generated; a caption ends at EOS.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax.data.captions import BOS, EOS, PAD
from aigc_jax.decoding import beam_search as beam_lib
from aigc_jax.decoding.autoregressive import decode
from aigc_jax.decoding.samplers import SamplingSettings

Array = jax.Array


def _banned(logits: Array) -> Array:
    ids = jnp.arange(logits.shape[-1])
    return jnp.where((ids == PAD) | (ids == BOS), -jnp.inf, logits)


def _start(model, params, images: Array, copies: int):
    encoded = model.apply({"params": params}, images, method=model.encode)
    cache = model.apply({"params": params}, encoded, model.max_length, method=model.init_cache)
    tile = lambda x: jnp.repeat(x, copies, axis=0)  # noqa: E731
    return tile(encoded), jax.tree_util.tree_map(tile, cache)


def _step(model, params, tokens: Array, encoded, cache, index):
    logits, cache = model.apply({"params": params}, tokens[:, None], encoded, cache=cache, cache_index=index,
                                method=model.decode)
    return _banned(logits[:, 0]), cache


def _check(model, max_length: int) -> int:
    max_length = max_length or model.max_length - 1
    if not 1 <= max_length <= model.max_length - 1:
        raise ValueError(f"max_length {max_length} must be in 1..{model.max_length - 1} (the captioner's positions "
                         f"after BOS)")
    return max_length


def _keep_self(cache, rows):
    """Beams re-ranked: the self-attention caches follow their beams; the image's cross keys stay."""
    return [{"self": jax.tree_util.tree_map(lambda x: x[rows], layer["self"]), "cross": layer["cross"]}
            for layer in cache]


@functools.partial(jax.jit, static_argnames=("model", "beam_width", "max_length"))
def beam_search(params, images: Array, *, model, beam_width: int = 4, length_penalty_alpha: float = 0.0,
                max_length: int = 0):
    """images [B, H, W, C] -> (tokens [B, W, L], scores [B, W], log-probabilities [B, W]), best first."""
    max_length = _check(model, max_length)
    encoded, cache = _start(model, params, images, beam_width)

    def step(tokens, cache, t):
        logits, cache = _step(model, params, tokens, encoded, cache, t)
        return jax.nn.log_softmax(logits, axis=-1), cache

    return beam_lib.beam_search(step, cache, batch=images.shape[0], beam_width=beam_width,
                                vocab_size=model.vocab_size, max_length=max_length, bos_id=BOS, eos_id=EOS,
                                pad_id=PAD, length_penalty_alpha=length_penalty_alpha, reorder_cache=_keep_self)


@functools.partial(jax.jit, static_argnames=("model", "settings"))
def sample(params, images: Array, keys: Array, *, model, settings: SamplingSettings):
    """images [B, ...], keys [B] -> (tokens [B, N] (EOS kept, PAD after), lengths [B], log-probabilities [B, N])."""
    encoded, cache = _start(model, params, images, 1)

    def next_logits(t, state):
        cache, previous = state
        logits, cache = _step(model, params, previous, encoded, cache, t)
        return logits, (cache, previous)

    def append(state, token):
        return state[0], token

    state = (cache, jnp.full((images.shape[0],), BOS, jnp.int32))
    tokens, lengths, logprobs, _, _ = decode(next_logits, append, state, keys, settings, vocab_size=model.vocab_size)
    return tokens, lengths, logprobs


def sampling_settings(model, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                      max_length: int = 0) -> SamplingSettings:
    settings = SamplingSettings(max_new_tokens=_check(model, max_length), temperature=temperature, top_k=top_k,
                                top_p=top_p, stop_tokens=(EOS,))
    settings.validate(model.vocab_size)
    return settings
