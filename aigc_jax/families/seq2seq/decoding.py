"""Decoding the encoder-decoder Transformer: greedy search, and beam search through the shared
aigc_jax.decoding.beam_search.

Both run as one jit-compiled `lax.while_loop`. The source is encoded once; each decoder
layer's cross-attention keys and values are projected once per input
(Seq2SeqTransformer.init_cache); each step feeds one token per row and attends over the
decoder's self-attention key/value cache, so a step costs a single-token pass.

The next-token distribution is the model's softmax renormalised over the tokens that may
be generated (PAD and BOS never are):  log p(y_t | y_<t, x) = next_token_logprobs(logits).
A finished output ends with EOS; its length |y| counts the EOS.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax.decoding import beam_search as beam_lib
from aigc_jax.families.seq2seq.data import BOS, EOS, PAD

Array = jax.Array


def next_token_logprobs(logits: Array) -> Array:
    """[..., V] logits -> log-probabilities over the tokens that may be generated (PAD, BOS excluded)."""
    banned = (jnp.arange(logits.shape[-1]) == PAD) | (jnp.arange(logits.shape[-1]) == BOS)
    return jax.nn.log_softmax(jnp.where(banned, -jnp.inf, logits.astype(jnp.float32)), axis=-1)


@functools.partial(jax.jit, static_argnames=("model",))
def score_sequences(params, source: Array, inputs: Array, targets: Array, *, model) -> Array:
    """Teacher-forced log p(targets | source) summed over non-PAD targets: [B]."""
    logits = model.apply({"params": params}, source, inputs)
    logp = jnp.take_along_axis(next_token_logprobs(logits), targets[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(targets != PAD, logp, 0.0), axis=-1)


def _start(model, params, source: Array, copies: int, max_length: int):
    """Encodes `source` [B, S] once; returns per-row (encoded, valid, cache) tiled `copies` times."""
    encoded = model.apply({"params": params}, source, method=model.encode)
    cache = model.apply({"params": params}, encoded, max_length, method=model.init_cache)
    valid = source != PAD
    tile = lambda x: jnp.repeat(x, copies, axis=0)
    return tile(encoded), tile(valid), jax.tree_util.tree_map(tile, cache)


def _step(model, params, tokens: Array, encoded, valid, cache, index):
    """tokens [N] at position `index` -> (log-probabilities [N, V], cache)."""
    logits, cache = model.apply({"params": params}, tokens[:, None], encoded, valid, cache=cache, cache_index=index,
                                method=model.decode)
    return next_token_logprobs(logits[:, 0]), cache


def _check_length(model, max_length: int) -> int:
    max_length = max_length or model.max_target_length
    if not 1 <= max_length <= model.max_target_length:
        raise ValueError(f"max_length {max_length} must be in 1..{model.max_target_length} (the model's target length)")
    return max_length


@functools.partial(jax.jit, static_argnames=("model", "max_length"))
def greedy_decode(params, source: Array, *, model, max_length: int = 0):
    """source [B, S] -> (tokens [B, L] (EOS included, PAD after), log-probabilities [B])."""
    max_length = _check_length(model, max_length)
    batch = source.shape[0]
    encoded, valid, cache = _start(model, params, source, 1, max_length)

    def cond(state):
        t, _, _, done, _, _ = state
        return (t < max_length) & ~jnp.all(done)

    def body(state):
        t, tokens, cache, done, total, previous = state
        logp, cache = _step(model, params, previous, encoded, valid, cache, t)
        chosen = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        total = total + jnp.where(done, 0.0, jnp.take_along_axis(logp, chosen[:, None], axis=-1)[:, 0])
        chosen = jnp.where(done, PAD, chosen)
        tokens = jax.lax.dynamic_update_slice(tokens, chosen[:, None], (0, t))
        return t + 1, tokens, cache, done | (chosen == EOS), total, chosen

    state = (jnp.zeros((), jnp.int32), jnp.full((batch, max_length), PAD, jnp.int32), cache,
             jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32), jnp.full((batch,), BOS, jnp.int32))
    _, tokens, _, _, total, _ = jax.lax.while_loop(cond, body, state)
    return tokens, total


def _reorder_self_attention(cache, rows: Array):
    """Beams re-ranked: each layer's self-attention cache follows its beam; the cross-attention
    keys and values are the same for every beam of an input, so they stay."""
    return [{"self": jax.tree_util.tree_map(lambda x: x[rows], layer["self"]), "cross": layer["cross"]}
            for layer in cache]


@functools.partial(jax.jit, static_argnames=("model", "beam_width", "max_length"))
def beam_search(params, source: Array, *, model, beam_width: int, length_penalty_alpha: float = 0.0,
                max_length: int = 0):
    """source [B, S] -> (tokens [B, W, L], scores [B, W], log-probabilities [B, W]), best first
    (aigc_jax.decoding.beam_search with this model's cached step)."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    max_length = _check_length(model, max_length)
    encoded, valid, cache = _start(model, params, source, beam_width, max_length)

    def step(tokens, cache, t):
        return _step(model, params, tokens, encoded, valid, cache, t)

    return beam_lib.beam_search(step, cache, batch=source.shape[0], beam_width=beam_width,
                                vocab_size=model.vocab_size, max_length=max_length, bos_id=BOS, eos_id=EOS,
                                pad_id=PAD, length_penalty_alpha=length_penalty_alpha,
                                reorder_cache=_reorder_self_attention)


def strip(tokens) -> list:
    """[L] ids -> the ids before the first EOS (or all up to PAD when none)."""
    out = []
    for token in list(map(int, tokens)):
        if token in (EOS, PAD):
            break
        out.append(token)
    return out
