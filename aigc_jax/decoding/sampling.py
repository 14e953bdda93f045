"""Decoding a decoder-only Transformer (any module with TransformerLM's interface: context_length,
vocab_size, init_cache, and apply with positions, mask and cache): KV-cache generation and scoring.

The model factorises P(x) = prod_t P(x_t | x_<t). Generation draws x_{t+1} from the
(filtered) conditional, appends it, and repeats, in the shared loop of
aigc_jax.decoding.autoregressive (token choice: aigc_jax.decoding.samplers). With a key/value cache (Pope et al. 2022, "Efficiently scaling
Transformer inference") each new token costs one single-token forward pass that attends
over the cached keys and values of its prefix, instead of a forward pass over the prefix.

Batches of prompts of different lengths are left-aligned in a history buffer and
right-aligned in the cache: row i's window occupies slots first_i .. idx - 1, its own
positions run 0, 1, ... from the window start, and the attention mask [B, T, S] hides
padding, other rows' unwritten slots and the future. So every row decodes exactly as it
would alone.

Context policy (sliding window, recomputed). A row conditions on a window of its newest
tokens, never longer than the model's context C:
  * a prompt longer than C starts with its last C tokens;
  * when appending a token would make the window longer than C, its oldest `window_shift`
    tokens are dropped (so a window always holds between C + 1 - shift and C tokens), and
    the cache is recomputed from the kept tokens with positions starting again at 0.
The recomputation is exact: every logit equals a fresh forward pass over that row's
window (tests check this against `method="naive"`, which recomputes every step).
window_shift = 1 is nanoGPT's "crop to the last C tokens" (a full recomputation for
every token past the context); larger shifts recompute once per `shift` tokens.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.decoding import autoregressive
from aigc_jax.decoding.autoregressive import PAD_ID
from aigc_jax.decoding.samplers import SamplingSettings

Array = jax.Array


@dataclasses.dataclass
class Generation:
    """tokens [B, N]: new tokens (PAD_ID after a row stopped); lengths [B]: valid new tokens
    per row (a stop token counts); logprobs [B, N]: log P(token | window) under the model
    itself (before temperature and filtering; 0 after the stop); logits [B, N, V]: the
    model's logits for each new token (only with return_logits=True)."""
    tokens: np.ndarray
    lengths: np.ndarray
    logprobs: np.ndarray
    logits: Optional[np.ndarray] = None


# ------------------------------------------------------------------ windows and forward passes

def initial_window_start(lengths: Array, context: int) -> Array:
    """A prompt longer than the context starts from its last `context` tokens."""
    return jnp.maximum(0, lengths - context)


def slide_window(start: Array, end: Array, context: int, shift: int) -> Array:
    """After appending: a window [start, end) longer than the context drops `shift` tokens."""
    return jnp.where(end - start > context, start + shift, start)


def _gather_windows(history: Array, start: Array, first: Array, last: Array, width: int):
    """Row i's window history[start_i : start_i + n_i] placed at slots first_i .. last - 1 of a
    [B, width] array. Returns (tokens [B, width], slot positions [B, width], valid [B, width])."""
    slots = jnp.arange(width)[None, :]
    offset = slots - first[:, None]  # position inside the window
    valid = (offset >= 0) & (slots < jnp.reshape(last, (-1, 1)))  # last: scalar or [B]
    index = jnp.clip(start[:, None] + offset, 0, history.shape[1] - 1)
    tokens = jnp.where(valid, jnp.take_along_axis(history, index, axis=1), PAD_ID)
    return tokens, jnp.maximum(offset, 0), valid


def _prefill(model, params, history, start, end, width: int, slots: int):
    """Fresh cache of `slots` slots from each row's window, right-aligned so that every
    window ends at slot last - 1 (last = the longest window). Returns (cache, next-token
    logits [B, V], first [B], last)."""
    batch = history.shape[0]
    n = end - start
    last = jnp.max(n)
    first = last - n
    tokens, positions, _ = _gather_windows(history, start, first, last, width)
    positions = jnp.minimum(positions, model.context_length - 1)  # slots past `last` are never read
    keys = jnp.arange(slots)[None, None, :]
    queries = jnp.arange(width)[None, :, None]
    mask = (keys >= first[:, None, None]) & (keys <= queries)  # [B, width, slots]
    logits, cache = model.apply({"params": params}, tokens, positions=positions, mask=mask,
                                cache=model.init_cache(batch, slots), cache_index=jnp.zeros((), jnp.int32))
    return cache, jax.lax.dynamic_index_in_dim(logits, last - 1, axis=1, keepdims=False), first, last


def _cached_step(model, params, cache, tokens, positions, first, index):
    """One token per row at slot `index`: tokens, positions [B] -> (logits [B, V], cache)."""
    slots = cache[0]["k"].shape[1]
    keys = jnp.arange(slots)[None, None, :]
    mask = (keys >= first[:, None, None]) & (keys <= index)  # [B, 1, S]
    logits, cache = model.apply({"params": params}, tokens[:, None], positions=positions[:, None], mask=mask,
                                cache=cache, cache_index=index)
    return logits[:, 0], cache


def bucket_widths(longest: int) -> tuple:
    """Powers of two from 8, capped at `longest`: the shapes the naive method compiles."""
    widths, width = [], 8
    while width < longest:
        widths.append(width)
        width *= 2
    return tuple(widths) + (longest,)


def _naive_logits(model, params, history, start, end, longest: int):
    """The reference without a cache: a full forward pass over each row's window (left-aligned,
    padded to the smallest power-of-two bucket that holds the longest window). -> [B, V]."""
    n = end - start
    widths = bucket_widths(longest)

    def forward(width):
        tokens, positions, valid = _gather_windows(history, start, jnp.zeros_like(n), n, width)
        mask = jnp.tril(jnp.ones((width, width), bool))[None] & valid[:, None, :]
        logits = model.apply({"params": params}, tokens, positions=positions, mask=mask)
        return logits[jnp.arange(n.shape[0]), n - 1]

    branch = jnp.sum(jnp.max(n) > jnp.array(widths[:-1], jnp.int32))
    return jax.lax.switch(branch, [functools.partial(forward, w) for w in widths])


# ------------------------------------------------------------------ the decoding loop

@functools.partial(jax.jit, static_argnames=("model", "settings", "method", "return_logits"))
def _decode(params, prompt, prompt_lengths, keys, forced, *, model, settings: SamplingSettings,
            method: str, return_logits: bool):
    """prompt [B, P] (row i's tokens at 0 .. len_i - 1), prompt_lengths [B], keys [B] PRNG
    keys, forced [B, N] or None (teacher forcing: take these tokens instead of sampling).
    Returns (tokens [B, N], lengths [B], logprobs [B, N], logits [B, N, V] or None).

    Iteration t computes the logits for new token t, then picks it. With the cache, the
    logits come from one of two branches (one call site each, so the model is compiled
    twice): a prefill of every row's window (at t = 0, and whenever the cache is full,
    which is exactly when some row's window slid) or a single-token cached step.
    """
    if method not in ("cached", "naive"):
        raise ValueError(f"unknown decoding method {method!r}; expected 'cached' or 'naive'")
    batch, prompt_width = prompt.shape
    steps, context = settings.max_new_tokens, model.context_length
    slots = min(context, prompt_width + steps)  # the longest window ever held
    # Without overflow the only prefill is the prompt's; with it, refills use the whole cache.
    prefill_width = slots if prompt_width + steps > context else min(prompt_width, context)
    shift = min(settings.window_shift or max(1, context // 4), context)
    rows = jnp.arange(batch)

    def cached_logits(t, history, start, end, extra):
        cache, first, index = extra

        def prefill(_):
            new_cache, logits, new_first, new_index = _prefill(model, params, history, start, end,
                                                               prefill_width, slots)
            return logits, (new_cache, new_first, new_index)

        def step(_):
            token = history[rows, end - 1]
            logits, new_cache = _cached_step(model, params, cache, token, end - 1 - start, first, index)
            return logits, (new_cache, first, index + 1)

        return jax.lax.cond((t == 0) | (index >= slots), prefill, step, None)

    def next_logits(t, state):
        history, start, end, extra = state
        if method == "cached":
            logits, extra = cached_logits(t, history, start, end, extra)
        else:
            logits = _naive_logits(model, params, history, start, end, slots)
        return logits, (history, start, end, extra)

    def append(state, token):
        history, start, end, extra = state
        history = history.at[rows, end].set(token)
        end = end + 1
        return history, slide_window(start, end, context, shift), end, extra

    history = jnp.concatenate([prompt.astype(jnp.int32), jnp.zeros((batch, steps), jnp.int32)], axis=1)
    end = prompt_lengths.astype(jnp.int32)
    start = initial_window_start(end, context)
    extra = (model.init_cache(batch, slots), jnp.zeros(batch, jnp.int32), jnp.zeros((), jnp.int32))
    state = (history, start, end, extra if method == "cached" else ())
    tokens, lengths, logprobs, logits, _ = autoregressive.decode(
        next_logits, append, state, keys, settings, vocab_size=model.vocab_size, forced=forced,
        return_logits=return_logits)
    return tokens, lengths, logprobs, logits


# ------------------------------------------------------------------ public API

def pad_prompts(prompts: Sequence[Sequence[int]], pad_to: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token lists of any lengths -> (tokens [B, P] int32, row i's at 0 .. len_i - 1; lengths [B]);
    P is the longest prompt, or pad_to if that is more."""
    lengths = np.array([len(p) for p in prompts], np.int32)
    tokens = np.full((len(prompts), max(int(lengths.max(initial=0)), pad_to, 1)), PAD_ID, np.int32)
    for i, prompt in enumerate(prompts):
        tokens[i, :len(prompt)] = np.asarray(prompt, np.int32)
    return tokens, lengths


def _check_prompts(prompts: Sequence[Sequence[int]], vocab_size: int) -> None:
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    for i, prompt in enumerate(prompts):
        ids = np.asarray(prompt)
        if ids.size == 0:
            raise ValueError(f"prompt {i} is empty; give at least one token "
                             "(aigc_jax.families.lm.inference.encode_prompt starts empty text from a newline)")
        if ids.min() < 0 or ids.max() >= vocab_size:
            raise ValueError(f"prompt {i} has token ids outside the vocabulary [0, {vocab_size})")


def generate(model, params, prompts: Sequence[Sequence[int]], rng: Array, settings: SamplingSettings, *,
             method: str = "cached", return_logits: bool = False, pad_to: int = 0) -> Generation:
    """Continues each prompt (token id lists, any lengths) by up to settings.max_new_tokens.

    pad_to: the prompt block's width at least (calls whose prompts differ in length then share
    one compiled program; a row's prompt ends where its own length says).

    rng: one PRNG key (row i uses split(rng, B)[i]) or keys [B], one per row (typed keys
    from jax.random.key or legacy PRNGKey arrays); row i's
    draw at step t uses fold_in(key_i, t), so a row's sample does not depend on the other
    rows of the batch. method: 'cached' (KV cache) or 'naive' (recompute each window).
    """
    settings.validate(model.vocab_size)
    _check_prompts(prompts, model.vocab_size)
    tokens, lengths = pad_prompts(prompts, pad_to)
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)  # a legacy uint32 PRNGKey (or a stack of them)
    keys = jax.random.split(rng, len(prompts)) if rng.ndim == 0 else rng
    if keys.shape[0] != len(prompts):
        raise ValueError(f"got {keys.shape[0]} PRNG keys for {len(prompts)} prompts")
    out = _decode(params, tokens, lengths, keys, None, model=model, settings=settings, method=method,
                  return_logits=return_logits)
    tokens, lengths, logprobs, logits = jax.device_get(out)
    return Generation(tokens=tokens, lengths=lengths, logprobs=logprobs, logits=logits)


@functools.partial(jax.jit, static_argnames=("model",))
def _score_forward(params, tokens, *, model):
    logits = model.apply({"params": params}, tokens[:, :-1])
    logprobs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(logprobs, tokens[:, 1:, None], axis=-1)[..., 0]


def _score_by_decoding(model, params, tokens, window_shift: int = 0):
    """Teacher-forced decoding through the cache under the sliding-window policy. [B, T] -> [B, T-1]."""
    settings = SamplingSettings(max_new_tokens=tokens.shape[1] - 1, temperature=0.0, window_shift=window_shift)
    batch = tokens.shape[0]
    keys = jax.random.split(jax.random.key(0), batch)  # unused: every token is forced
    out = _decode(params, tokens[:, :1], jnp.ones(batch, jnp.int32), keys, tokens[:, 1:], model=model,
                  settings=settings, method="cached", return_logits=False)
    return out[2]


def score_tokens(model, params, tokens, lengths=None, *, window_shift: int = 0) -> np.ndarray:
    """Per-token log-probabilities log P(x_t | x_<t) of token ids [B, T], for t = 1 .. T - 1
    (the first token is given: the model has no start-of-text token). -> [B, T - 1] float32, in
    nats; 0 past each row's length when `lengths` [B] is given (rows right-padded).

    Up to context_length + 1 tokens this is one forward pass; longer texts are scored by
    teacher-forced cached decoding under the same sliding-window policy as `generate`.
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"score_tokens needs token ids [batch, length >= 2], got shape {tuple(tokens.shape)}")
    if int(tokens.min()) < 0 or int(tokens.max()) >= model.vocab_size:
        raise ValueError(f"token ids outside the vocabulary [0, {model.vocab_size})")
    if tokens.shape[1] - 1 <= model.context_length:
        logprobs = _score_forward(params, tokens, model=model)
    else:
        logprobs = _score_by_decoding(model, params, tokens, window_shift)
    if lengths is not None:
        scored = jnp.arange(1, tokens.shape[1])[None, :] < jnp.asarray(lengths)[:, None]
        logprobs = jnp.where(scored, logprobs, 0.0)
    return np.asarray(logprobs)


def log_likelihood(model, params, tokens, lengths=None, *, window_shift: int = 0) -> np.ndarray:
    """Total log P(x_2 .. x_T | x_1) per row, in nats: [B, T] -> [B] (sum of score_tokens)."""
    return score_tokens(model, params, tokens, lengths, window_shift=window_shift).sum(axis=1)
