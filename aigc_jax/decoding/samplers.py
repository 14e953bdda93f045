"""Choosing the next token from a model's logits: greedy, temperature, top-k and nucleus sampling.

Sampler order (as in common practice): logits / temperature, then top-k, then top-p on the
renormalised result. temperature 0 is greedy (argmax). Every decoder of the project (the
Transformer's KV-cache loop, and any family's autoregressive loop) picks tokens here.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How to pick each new token (hashable: a static argument of the compiled loop).

    max_new_tokens: tokens to generate per row (fewer when a stop token appears).
    temperature: divides the logits; 0 = greedy.  top_k: keep the k most likely (0 or
        k >= vocabulary = off; tokens tied with the k-th are kept too).
    top_p: keep the smallest set of most likely tokens whose probability reaches p
        (nucleus sampling, Holtzman et al. 2020); 1 = off.
    stop_tokens: ids that end a row (the stop token is kept in the output).
    window_shift: tokens dropped when a window outgrows the context (0 = a quarter of it).
    """
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_tokens: tuple = ()
    window_shift: int = 0

    def validate(self, vocab_size: int) -> None:
        """Raises ValueError (one line naming the setting) for unusable values."""
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if self.window_shift < 0:
            raise ValueError(f"window_shift must be >= 0 (0 = a quarter of the context), got {self.window_shift}")
        bad = [t for t in self.stop_tokens if not 0 <= int(t) < vocab_size]
        if bad:
            raise ValueError(f"stop tokens {bad} are outside the vocabulary [0, {vocab_size})")


def top_k_mask(logits: Array, k: int) -> Array:
    """[..., V] -> bool [..., V]: True for the k largest logits (ties with the k-th kept;
    k <= 0 or k >= V keeps all)."""
    if k <= 0 or k >= logits.shape[-1]:
        return jnp.ones(logits.shape, bool)
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return logits >= kth


def nucleus_mask(logits: Array, top_p: float) -> Array:
    """[..., V] -> bool [..., V]: the nucleus, the smallest set of most likely tokens whose
    probability sum reaches top_p. A token is in it when the mass of the tokens more likely
    than it is below top_p (so the most likely token always is)."""
    if top_p >= 1.0:
        return jnp.ones(logits.shape, bool)
    probs = jax.nn.softmax(logits, axis=-1)
    sorted_probs = -jnp.sort(-probs, axis=-1)  # descending
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    kept = mass_before < top_p
    smallest_kept = jnp.min(jnp.where(kept, sorted_probs, jnp.inf), axis=-1, keepdims=True)
    return probs >= smallest_kept


def filter_logits(logits: Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> Array:
    """[..., V] float logits -> temperature-scaled logits with -inf outside top-k and nucleus.
    temperature must be > 0 here (greedy decoding does not sample)."""
    scaled = logits.astype(jnp.float32) / temperature
    scaled = jnp.where(top_k_mask(scaled, top_k), scaled, -jnp.inf)
    return jnp.where(nucleus_mask(scaled, top_p), scaled, -jnp.inf)


def choose_tokens(keys: Array, logits: Array, settings: SamplingSettings) -> Array:
    """keys [B] (one PRNG key per row), logits [B, V] -> token ids [B] int32."""
    if settings.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, settings.temperature, settings.top_k, settings.top_p)
    return jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)
