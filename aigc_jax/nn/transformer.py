"""Decoder-only Transformer language model (GPT-2/3; PaLM switches by config).

P(x_1..x_n) = prod_t P(x_t | x_<t): causal self-attention lets position t see only
positions <= t, so one forward pass gives every conditional at once.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.nn import layers

Array = jax.Array

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Parameter path regex -> logical axes (aigc_jax.parallel maps them to mesh axes).
SHARDING_RULES = (
    (r"token_embed\.embedding$", ("vocab", "embed")),
    (r"pos_embed\.embedding$", ("length", "embed")),
    (r"attn\.(qkv|q|kv)\.kernel$", ("embed", "heads")),
    (r"attn\.(qkv|q|kv)\.bias$", ("heads",)),
    (r"attn\.out\.kernel$", ("heads", "embed")),
    (r"mlp\.up\.kernel$", ("embed", "mlp")),
    (r"mlp\.up\.bias$", ("mlp",)),
    (r"mlp\.down\.kernel$", ("mlp", "embed")),
    (r"lm_head\.kernel$", ("embed", "vocab")),
)


class Block(nn.Module):
    """Pre-norm Transformer block.

    sequential (GPT): x + attn(norm1(x)), then + mlp(norm2(.))
    parallel (GPT-J / PaLM): x + attn(norm(x)) + mlp(norm(x)), one shared norm.
    """
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp: str
    mlp_ratio: float
    norm: str
    parallel: bool
    use_bias: bool
    use_rope: bool
    dropout_rate: float
    out_init_std: float
    attention_impl: str
    dtype: Any

    @nn.compact
    def __call__(self, x, positions, mask, cache=None, cache_index=None, deterministic=True):
        attention = layers.Attention(
            num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
            use_bias=self.use_bias, use_rope=self.use_rope, dropout_rate=self.dropout_rate,
            out_init_std=self.out_init_std, implementation=self.attention_impl, dtype=self.dtype,
            name="attn")
        mlp = layers.MLP(kind=self.mlp, mlp_ratio=self.mlp_ratio, use_bias=self.use_bias,
                         out_init_std=self.out_init_std, dtype=self.dtype, name="mlp")
        drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
        h = layers.make_norm(self.norm, self.use_bias, self.dtype, name="norm1")(x)
        attn_out, new_cache = attention(h, positions=positions, mask=mask, cache=cache,
                                        cache_index=cache_index, deterministic=deterministic)
        if self.parallel:
            x = x + drop(attn_out) + drop(mlp(h))
        else:
            x = x + drop(attn_out)
            x = x + drop(mlp(layers.make_norm(self.norm, self.use_bias, self.dtype, name="norm2")(x)))
        return x, new_cache


class TransformerLM(nn.Module):
    """Token embedding + positions, `num_layers` blocks, final norm, output projection.

    Call: tokens [B, T] int -> logits [B, T, V] float32 (and the new cache when one is given).
    positions: [B, T], default 0..T-1. mask: [B or 1, T, S] (default causal over T).
    vocab_multiple: the embedding table and output projection are padded to a multiple of it
    (GPT-2's 50,257 -> 50,304 = 393 x 128, for matmul tiling and sharding); the padding rows are
    never looked up and their logits are cut off, so V stays the tokenizer's vocabulary.
    """
    vocab_size: int
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 0  # 0 means num_heads (multi-head attention)
    embed_dim: int = 128
    context_length: int = 64
    positions: str = "learned"  # learned | rope | none
    mlp: str = "gelu"  # gelu | swiglu
    mlp_ratio: float = 4.0
    norm: str = "layernorm"  # layernorm | rmsnorm
    parallel_block: bool = False
    use_bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    dtype: str = "float32"  # compute dtype; parameters are always float32
    attention_impl: str = "einsum"
    remat: bool = False
    vocab_multiple: int = 1

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @classmethod
    def from_config(cls, model_config, vocab_size: int) -> "TransformerLM":
        fields = {name: model_config[name] for name in model_config.keys() if name in cls.__dataclass_fields__}
        return cls(vocab_size=vocab_size, **fields)

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    def init_cache(self, batch_size: int, length: int) -> list:
        """Empty KV cache: one {'k', 'v': [B, S, K, D]} per layer, in the compute dtype."""
        shape = (batch_size, length, self.kv_heads, self.embed_dim // self.num_heads)
        dtype = DTYPES[self.dtype]
        return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(self.num_layers)]

    @nn.compact
    def __call__(self, tokens: Array, *, positions: Optional[Array] = None, mask: Optional[Array] = None,
                 cache: Optional[list] = None, cache_index: Optional[Array] = None,
                 deterministic: bool = True, features: bool = False):
        """features=True returns the final normalised hidden states [B, T, C] instead of logits
        (for scalar heads: a reward model, a value function); the parameters are the same."""
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        dtype = DTYPES[self.dtype]
        batch, length = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
        if mask is None:
            mask = layers.causal_mask(length)
        if cache is None and length > self.context_length:
            raise ValueError(f"sequence of length {length} is longer than the context {self.context_length}")
        embed = nn.Embed(self.padded_vocab_size, self.embed_dim, embedding_init=layers.dense_init(),
                         dtype=dtype, param_dtype=jnp.float32, name="token_embed")
        x = embed(tokens).astype(dtype)
        if self.positions == "learned":
            pos_embed = nn.Embed(self.context_length, self.embed_dim, embedding_init=layers.dense_init(),
                                 param_dtype=jnp.float32, name="pos_embed")
            x = x + pos_embed(positions).astype(dtype)
        elif self.positions not in ("rope", "none"):
            raise ValueError(f"unknown positions {self.positions!r}; expected learned, rope or none")
        x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        block_cls = nn.remat(Block, static_argnums=(6,)) if self.remat else Block
        new_cache = []
        for i in range(self.num_layers):
            block = block_cls(
                num_heads=self.num_heads, num_kv_heads=self.kv_heads, head_dim=self.embed_dim // self.num_heads,
                mlp=self.mlp, mlp_ratio=self.mlp_ratio, norm=self.norm, parallel=self.parallel_block,
                use_bias=self.use_bias, use_rope=self.positions == "rope", dropout_rate=self.dropout,
                out_init_std=layers.residual_init_std(self.num_layers), attention_impl=self.attention_impl,
                dtype=dtype, name=f"block_{i}")
            x, layer_cache = block(x, positions, mask, None if cache is None else cache[i], cache_index,
                                   deterministic)
            new_cache.append(layer_cache)
        x = layers.make_norm(self.norm, self.use_bias, dtype, name="final_norm")(x)
        if features:
            return x.astype(jnp.float32) if cache is None else (x.astype(jnp.float32), new_cache)
        if self.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(self.padded_vocab_size, use_bias=False, kernel_init=layers.dense_init(), dtype=dtype,
                              param_dtype=jnp.float32, name="lm_head")(x)
        logits = logits[..., :self.vocab_size].astype(jnp.float32)  # padding rows cut off (vocab_multiple)
        return logits if cache is None else (logits, new_cache)


def flops_per_token(model: TransformerLM, num_params: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls of forward + backward (Kaplan et al.
    2020) with N the non-embedding-lookup parameters, plus 12 L C T for attention scores
    and values (PaLM appendix B)."""
    lookup = model.context_length * model.embed_dim if model.positions == "learned" else 0
    if not model.tie_embeddings:
        lookup += model.padded_vocab_size * model.embed_dim
    return 6.0 * (num_params - lookup) + 12.0 * model.num_layers * model.embed_dim * seq_len
