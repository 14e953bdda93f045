"""Shared Transformer building blocks: attention, MLPs, norms, positions.

Every model family that attends (the LM, the encoder-decoder, DALL-E's prior) builds on
these, so the attention code lives in exactly one place.

Shapes: B batch, T query length, S key length, C model width, H query heads,
K key/value heads (K divides H; K == H is multi-head, K == 1 multi-query attention
[Shazeer 2019], 1 < K < H grouped-query attention [Ainslie et al. 2023]), D head width.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

GPT2_INIT_STD = 0.02


def dense_init(std: float = GPT2_INIT_STD):
    return nn.initializers.normal(stddev=std)


def residual_init_std(num_layers: int) -> float:
    """GPT-2's scaled init for projections that write into the residual stream:
    0.02 / sqrt(2 * layers), two residual writes per block (Radford et al. 2019)."""
    return GPT2_INIT_STD / math.sqrt(2 * num_layers)


def make_norm(kind: str, use_bias: bool, dtype: Dtype, name: Optional[str] = None) -> nn.Module:
    """LayerNorm (Ba et al. 2016) or RMSNorm (Zhang & Sennrich 2019), statistics in float32."""
    if kind == "layernorm":
        return nn.LayerNorm(epsilon=1e-5, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)
    if kind == "rmsnorm":
        return nn.RMSNorm(epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, name=name)
    raise ValueError(f"unknown norm {kind!r}; expected 'layernorm' or 'rmsnorm'")


def rotary_embedding(x: Array, positions: Array, base: float = 10000.0) -> Array:
    """Rotary position embedding (RoPE, Su et al. 2021).

    x: [B, T, N, D] with D even; positions: [B, T] integer positions.
    Channel pairs (i, i + D/2) are rotated by angle position * base^(-2i/D), so the
    dot product of a rotated query and key depends only on their relative offset.
    """
    half = x.shape[-1] // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [D/2]
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def causal_mask(length: int) -> Array:
    """[1, T, T] boolean mask, True where query t may attend to key s (s <= t)."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None]


def padding_mask(query_valid: Array, key_valid: Array) -> Array:
    """[B, T, S] mask from per-token validity: padding neither attends nor is attended."""
    return query_valid[:, :, None] & key_valid[:, None, :]


def grouped_attention(q: Array, k: Array, v: Array, mask: Optional[Array], *,
                      dropout_rate: float = 0.0, dropout_rng: Optional[Array] = None) -> Array:
    """Softmax attention with H query heads sharing K key/value heads.

    q: [B, T, H, D]; k, v: [B, S, K, D]; mask: [B or 1, T, S] boolean or None.
    Returns [B, T, H, D]. Scores scaled by 1/sqrt(D) (Vaswani et al. 2017); softmax in float32.
    """
    batch, q_len, num_heads, head_dim = q.shape
    num_kv = k.shape[2]
    if num_heads % num_kv:
        raise ValueError(f"{num_heads} query heads cannot share {num_kv} key/value heads evenly")
    groups = num_heads // num_kv
    q = q.reshape(batch, q_len, num_kv, groups, head_dim)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k).astype(jnp.float32) / math.sqrt(head_dim)
    # Softmax over [B, K, G*T, S], the group folded into the query rows (a free reshape): with
    # a size-1 group axis (multi-head) XLA:CPU's fused reductions ran ~8x slower (performance.md).
    key_len = scores.shape[-1]
    scores = scores.reshape(batch, num_kv, groups * q_len, key_len)
    if mask is not None:
        rows = jnp.broadcast_to(mask[:, None], (mask.shape[0], groups, q_len, key_len))
        scores = jnp.where(rows.reshape(mask.shape[0], 1, groups * q_len, key_len), scores,
                           jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    probs = probs.reshape(batch, num_kv, groups, q_len, key_len)
    out = jnp.einsum("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
    return out.reshape(batch, q_len, num_heads, head_dim)


class Attention(nn.Module):
    """Multi-head / grouped-query / multi-query attention with an optional KV cache.

    Self-attention when `context` is None (one fused QKV projection, which gives XLA
    one large matmul), cross-attention over `context` otherwise.
    """
    num_heads: int
    num_kv_heads: int
    head_dim: int
    use_bias: bool = True
    use_rope: bool = False
    rope_base: float = 10000.0
    dropout_rate: float = 0.0
    out_init_std: float = GPT2_INIT_STD
    implementation: str = "einsum"  # 'einsum' (ours), 'xla' or 'cudnn' (jax.nn.dot_product_attention)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, positions: Optional[Array] = None, mask: Optional[Array] = None,
                 context: Optional[Array] = None, cache: Optional[dict] = None,
                 cache_index: Optional[Array] = None, deterministic: bool = True):
        """x: [B, T, C]; positions: [B, T] (needed for RoPE); mask: [B or 1, T, S].

        cache: {'k', 'v': [B, S_max, K, D]} filled up to `cache_index`; the new keys and
        values are written at slots cache_index .. cache_index + T - 1 and attention runs
        over all S_max slots (the mask hides the unwritten ones). Returns (y, new_cache).
        Cross-attention with a cache and cache_index=None: the cache holds the context's
        keys and values, already projected (e.g. once per input when decoding), so the
        'kv' projection is skipped and the cache is returned unchanged.
        """
        width = x.shape[-1]
        dense = lambda features, name, std=GPT2_INIT_STD: nn.Dense(
            features, use_bias=self.use_bias, kernel_init=dense_init(std), dtype=self.dtype,
            param_dtype=jnp.float32, name=name)
        heads, kv, d = self.num_heads, self.num_kv_heads, self.head_dim
        precomputed = context is not None and cache is not None and cache_index is None
        if context is None:
            qkv = dense((heads + 2 * kv) * d, "qkv")(x)
            q, k, v = jnp.split(qkv, [heads * d, (heads + kv) * d], axis=-1)
        elif precomputed:
            q, k, v = dense(heads * d, "q")(x), cache["k"], cache["v"]
        else:
            q = dense(heads * d, "q")(x)
            k, v = jnp.split(dense(2 * kv * d, "kv")(context), 2, axis=-1)
        q = q.reshape(*q.shape[:2], heads, d)
        k = k.reshape(*k.shape[:2], kv, d)
        v = v.reshape(*v.shape[:2], kv, d)
        if self.use_rope:
            if positions is None:
                raise ValueError("rotary attention needs token positions")
            q = rotary_embedding(q, positions, self.rope_base)
            k = rotary_embedding(k, positions, self.rope_base)
        new_cache = cache if precomputed else None
        if cache is not None and not precomputed:
            zero = jnp.zeros((), jnp.int32)
            index = (zero, cache_index.astype(jnp.int32), zero, zero)
            k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), index)
            v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), index)
            new_cache = {"k": k, "v": v}
        use_dropout = self.dropout_rate > 0.0 and not deterministic
        if self.implementation == "einsum":
            rng = self.make_rng("dropout") if use_dropout else None
            y = grouped_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask,
                                  dropout_rate=self.dropout_rate if use_dropout else 0.0, dropout_rng=rng)
        else:
            if use_dropout:
                raise ValueError("attention dropout needs model.attention_impl='einsum'")
            full_mask = None if mask is None else jnp.broadcast_to(
                mask[:, None], (x.shape[0], 1, *mask.shape[1:]))
            y = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=full_mask,
                                             implementation=self.implementation)
        y = y.reshape(*y.shape[:2], heads * d)
        return dense(width, "out", self.out_init_std)(y), new_cache


def swiglu_hidden_width(width: int, mlp_ratio: float) -> int:
    """Hidden width of a SwiGLU MLP with about the parameters of a GELU MLP of ratio r.

    GELU MLP: 2 * C * rC weights; SwiGLU: 3 * C * h. Equal at h = 2rC/3, rounded up to a
    multiple of 8 for matmul-friendly shapes (Shazeer 2020; PaLM, Chowdhery et al. 2022).
    """
    hidden = 2 * mlp_ratio * width / 3
    return int(math.ceil(hidden / 8) * 8)


class MLP(nn.Module):
    """Position-wise feed-forward network: GELU (GPT) or SwiGLU (PaLM)."""
    kind: str = "gelu"
    mlp_ratio: float = 4.0
    use_bias: bool = True
    out_init_std: float = GPT2_INIT_STD
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        width = x.shape[-1]
        dense = lambda features, name, std=GPT2_INIT_STD: nn.Dense(
            features, use_bias=self.use_bias, kernel_init=dense_init(std), dtype=self.dtype,
            param_dtype=jnp.float32, name=name)
        if self.kind == "gelu":
            h = nn.gelu(dense(int(self.mlp_ratio * width), "up")(x), approximate=True)
        elif self.kind == "swiglu":
            gate, up = jnp.split(dense(2 * swiglu_hidden_width(width, self.mlp_ratio), "up")(x), 2, axis=-1)
            h = nn.silu(gate) * up
        else:
            raise ValueError(f"unknown MLP kind {self.kind!r}; expected 'gelu' or 'swiglu'")
        return dense(width, "down", self.out_init_std)(h)
