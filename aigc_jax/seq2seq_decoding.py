"""Decoding the encoder-decoder Transformer: greedy search and beam search.

Both run as one jit-compiled `lax.while_loop`. The source is encoded once; each decoder
layer's cross-attention keys and values are projected once per input
(Seq2SeqTransformer.init_cache); each step feeds one token per row and attends over the
decoder's self-attention key/value cache, so a step costs a single-token pass.

The next-token distribution is the model's softmax renormalised over the tokens that may
be generated (PAD and BOS never are):  log p(y_t | y_<t, x) = next_token_logprobs(logits).
A finished output ends with EOS; its length |y| counts the EOS.

Beam search (as in Sutskever et al. 2014; Wu et al. 2016). Each step extends the W =
`beam_width` unfinished prefixes by every token and ranks the extensions by
log-probability. Of the 2W best, those ending in EOS that rank among the best W become
finished outputs, scored
  score(y) = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6) ** alpha   (GNMT's length
penalty; alpha = 0 ranks by log-probability),
and the W best that do not end continue (so the beam stays full). The W best finished
outputs are kept. The search stops when no unfinished prefix can still beat the worst
kept finished output: a prefix with log-probability r can at best finish with
r / max(lp(n)) over the lengths n still possible, since log-probabilities only fall as
tokens are added. With width 1 and alpha = 0 this is exactly greedy search.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax.data.seq2seq_tasks import BOS, EOS, PAD

Array = jax.Array
NEG = -1.0e9  # the score of an empty slot / impossible candidate (finite: no inf - inf)


def next_token_logprobs(logits: Array) -> Array:
    """[..., V] logits -> log-probabilities over the tokens that may be generated (PAD, BOS excluded)."""
    banned = (jnp.arange(logits.shape[-1]) == PAD) | (jnp.arange(logits.shape[-1]) == BOS)
    return jax.nn.log_softmax(jnp.where(banned, -jnp.inf, logits.astype(jnp.float32)), axis=-1)


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


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


def _gather_beams(x: Array, beams: Array) -> Array:
    """x [B, W', ...], beams [B, W] indices into W' -> [B, W, ...]."""
    return jnp.take_along_axis(x, beams.reshape(beams.shape + (1,) * (x.ndim - 2)), axis=1)


@functools.partial(jax.jit, static_argnames=("model", "beam_width", "max_length"))
def beam_search(params, source: Array, *, model, beam_width: int, length_penalty_alpha: float = 0.0,
                max_length: int = 0):
    """source [B, S] -> (tokens [B, W, L], scores [B, W], log-probabilities [B, W]), best first.

    scores are log p / lp(|y|). An input with no finished output within L tokens returns its
    unfinished beams (scored with lp(L)).
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    max_length = _check_length(model, max_length)
    alpha, width = length_penalty_alpha, beam_width
    batch = source.shape[0]
    encoded, valid, cache = _start(model, params, source, width, max_length)
    vocab = model.vocab_size
    rows = jnp.arange(batch)[:, None] * width

    def cond(state):
        t, alive_logp, fin_score = state[0], state[2], state[5]
        best_possible = jnp.max(alive_logp, axis=1) / jnp.maximum(length_penalty(t + 1, alpha),
                                                                  length_penalty(max_length, alpha))
        done = jnp.min(fin_score, axis=1) >= best_possible
        return (t < max_length) & ~jnp.all(done)

    def body(state):
        t, alive_seq, alive_logp, cache, fin_seq, fin_score, fin_logp = state
        previous = jnp.where(t == 0, BOS, jax.lax.dynamic_index_in_dim(alive_seq, t - 1, axis=2, keepdims=False))
        logp, cache = _step(model, params, previous.reshape(-1), encoded, valid, cache, t)
        candidates = (alive_logp[:, :, None] + logp.reshape(batch, width, vocab)).reshape(batch, width * vocab)
        top_logp, top_index = jax.lax.top_k(candidates, 2 * width)  # W non-EOS among 2W always
        beams, tokens = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        seqs = jax.lax.dynamic_update_slice(_gather_beams(alive_seq, beams), tokens[:, :, None], (0, 0, t))
        ended = tokens == EOS
        possible = top_logp > NEG / 2
        # Unfinished: the W best candidates that do not end here.
        keep_logp, keep = jax.lax.top_k(jnp.where(ended | ~possible, NEG, top_logp), width)
        alive_seq = _gather_beams(seqs, keep)
        source_beams = jnp.take_along_axis(beams, keep, axis=1)  # [B, W] into the old beams
        flat = (rows + source_beams).reshape(-1)
        cache = [{"self": jax.tree_util.tree_map(lambda x: x[flat], layer["self"]), "cross": layer["cross"]}
                 for layer in cache]
        # Finished: the W best of the kept ones and the candidates among the best W that end here.
        ended = ended & possible & (jnp.arange(2 * width) < width)
        new_score = jnp.where(ended, top_logp / length_penalty(t + 1, alpha), NEG)
        all_score = jnp.concatenate([fin_score, new_score], axis=1)
        fin_score, best = jax.lax.top_k(all_score, width)
        fin_seq = _gather_beams(jnp.concatenate([fin_seq, seqs], axis=1), best)
        fin_logp = _gather_beams(jnp.concatenate([fin_logp, jnp.where(ended, top_logp, NEG)], axis=1), best)
        return t + 1, alive_seq, keep_logp, cache, fin_seq, fin_score, fin_logp

    empty_seq = jnp.full((batch, width, max_length), PAD, jnp.int32)
    first_only = jnp.where(jnp.arange(width) == 0, 0.0, NEG)[None].repeat(batch, axis=0)
    empty = jnp.full((batch, width), NEG, jnp.float32)
    state = (jnp.zeros((), jnp.int32), empty_seq, first_only, cache, empty_seq, empty, empty)
    _, alive_seq, alive_logp, _, fin_seq, fin_score, fin_logp = jax.lax.while_loop(cond, body, state)
    any_finished = (fin_score[:, 0] > NEG / 2)[:, None]
    alive_score = alive_logp / length_penalty(max_length, alpha)
    tokens = jnp.where(any_finished[:, :, None], fin_seq, alive_seq)
    return tokens, jnp.where(any_finished, fin_score, alive_score), jnp.where(any_finished, fin_logp, alive_logp)


def strip(tokens) -> list:
    """[L] ids -> the ids before the first EOS (or all up to PAD when none)."""
    out = []
    for token in list(map(int, tokens)):
        if token in (EOS, PAD):
            break
        out.append(token)
    return out
