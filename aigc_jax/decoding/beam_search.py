"""Beam search over any autoregressive model (Sutskever et al. 2014; Wu et al. 2016).

The model enters through one function, step(tokens [N], cache, t) -> (log-probabilities
[N, V], cache), over N = B * W rows (W = beam_width beams per input, row-major), and a
function that reorders the cache when beams are re-ranked (by default every leaf is
gathered along its first axis).

Each step extends the W unfinished prefixes by every token and ranks the extensions by
log-probability. Of the 2W best, those ending in EOS that rank among the best W become
finished outputs, scored
  score(y) = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6) ** alpha   (GNMT's length
penalty; alpha = 0 ranks by log-probability),
and the W best that do not end continue (so the beam stays full). The W best finished
outputs are kept. The search stops when no unfinished prefix can still beat the worst
kept finished output: a prefix with log-probability r can at best finish with
r / max(lp(n)) over the lengths n still possible, since log-probabilities only fall as
tokens are added. With width 1 and alpha = 0 this is exactly greedy search.
A finished output ends with EOS; its length |y| counts the EOS.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
NEG = -1.0e9  # the score of an empty slot / impossible candidate (finite: no inf - inf)


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def gather_beams(x: Array, beams: Array) -> Array:
    """x [B, W', ...], beams [B, W] indices into W' -> [B, W, ...]."""
    return jnp.take_along_axis(x, beams.reshape(beams.shape + (1,) * (x.ndim - 2)), axis=1)


def _gather_rows(cache: Any, rows: Array) -> Any:
    return jax.tree_util.tree_map(lambda x: x[rows], cache)


def beam_search(step: Callable, cache: Any, *, batch: int, beam_width: int, vocab_size: int, max_length: int,
                bos_id: int, eos_id: int, pad_id: int, length_penalty_alpha: float = 0.0,
                reorder_cache: Optional[Callable] = None):
    """-> (tokens [B, W, L], scores [B, W], log-probabilities [B, W]), best first (traceable:
    call it inside jit). `cache` holds B * W rows. scores are log p / lp(|y|); an input with no
    finished output within L = max_length tokens returns its unfinished beams (scored with lp(L))."""
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    alpha, width, vocab = length_penalty_alpha, beam_width, vocab_size
    reorder_cache = reorder_cache or _gather_rows
    rows = jnp.arange(batch)[:, None] * width

    def cond(state):
        t, alive_logp, fin_score = state[0], state[2], state[5]
        best_possible = jnp.max(alive_logp, axis=1) / jnp.maximum(length_penalty(t + 1, alpha),
                                                                  length_penalty(max_length, alpha))
        done = jnp.min(fin_score, axis=1) >= best_possible
        return (t < max_length) & ~jnp.all(done)

    def body(state):
        t, alive_seq, alive_logp, cache, fin_seq, fin_score, fin_logp = state
        previous = jnp.where(t == 0, bos_id, jax.lax.dynamic_index_in_dim(alive_seq, t - 1, axis=2, keepdims=False))
        logp, cache = step(previous.reshape(-1), cache, t)
        candidates = (alive_logp[:, :, None] + logp.reshape(batch, width, vocab)).reshape(batch, width * vocab)
        top_logp, top_index = jax.lax.top_k(candidates, 2 * width)  # W non-EOS among 2W always
        beams, tokens = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        seqs = jax.lax.dynamic_update_slice(gather_beams(alive_seq, beams), tokens[:, :, None], (0, 0, t))
        ended = tokens == eos_id
        possible = top_logp > NEG / 2
        # Unfinished: the W best candidates that do not end here.
        keep_logp, keep = jax.lax.top_k(jnp.where(ended | ~possible, NEG, top_logp), width)
        alive_seq = gather_beams(seqs, keep)
        source_beams = jnp.take_along_axis(beams, keep, axis=1)  # [B, W] into the old beams
        cache = reorder_cache(cache, (rows + source_beams).reshape(-1))
        # Finished: the W best of the kept ones and the candidates among the best W that end here.
        ended = ended & possible & (jnp.arange(2 * width) < width)
        new_score = jnp.where(ended, top_logp / length_penalty(t + 1, alpha), NEG)
        all_score = jnp.concatenate([fin_score, new_score], axis=1)
        fin_score, best = jax.lax.top_k(all_score, width)
        fin_seq = gather_beams(jnp.concatenate([fin_seq, seqs], axis=1), best)
        fin_logp = gather_beams(jnp.concatenate([fin_logp, jnp.where(ended, top_logp, NEG)], axis=1), best)
        return t + 1, alive_seq, keep_logp, cache, fin_seq, fin_score, fin_logp

    empty_seq = jnp.full((batch, width, max_length), pad_id, jnp.int32)
    first_only = jnp.where(jnp.arange(width) == 0, 0.0, NEG)[None].repeat(batch, axis=0)
    empty = jnp.full((batch, width), NEG, jnp.float32)
    state = (jnp.zeros((), jnp.int32), empty_seq, first_only, cache, empty_seq, empty, empty)
    _, alive_seq, alive_logp, _, fin_seq, fin_score, fin_logp = jax.lax.while_loop(cond, body, state)
    any_finished = (fin_score[:, 0] > NEG / 2)[:, None]
    alive_score = alive_logp / length_penalty(max_length, alpha)
    tokens = jnp.where(any_finished[:, :, None], fin_seq, alive_seq)
    return tokens, jnp.where(any_finished, fin_score, alive_score), jnp.where(any_finished, fin_logp, alive_logp)
