"""The encoder-decoder Transformer's blocks (Vaswani et al. 2017), pre-norm, shared by the
seq2seq family and the image captioner (an image encoder's tokens in place of the source text).
Attention, MLP and norms are the LM's (aigc_jax.nn.layers)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from aigc_jax.nn import layers


class EncoderBlock(nn.Module):
    """x + SelfAttention(norm(x)), then + MLP(norm(.)). mask: [B, S, S]."""
    num_heads: int
    head_dim: int
    mlp: str
    mlp_ratio: float
    norm: str
    use_bias: bool
    dropout_rate: float
    out_init_std: float
    dtype: object

    @nn.compact
    def __call__(self, x, mask, deterministic=True):
        drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
        attend = layers.Attention(num_heads=self.num_heads, num_kv_heads=self.num_heads, head_dim=self.head_dim,
                                  use_bias=self.use_bias, dropout_rate=self.dropout_rate,
                                  out_init_std=self.out_init_std, dtype=self.dtype, name="attn")
        h, _ = attend(layers.make_norm(self.norm, self.use_bias, self.dtype, name="norm1")(x), mask=mask,
                      deterministic=deterministic)
        x = x + drop(h)
        mlp = layers.MLP(kind=self.mlp, mlp_ratio=self.mlp_ratio, use_bias=self.use_bias,
                         out_init_std=self.out_init_std, dtype=self.dtype, name="mlp")
        return x + drop(mlp(layers.make_norm(self.norm, self.use_bias, self.dtype, name="norm2")(x)))


class DecoderBlock(nn.Module):
    """x + CausalSelfAttention(norm(x)), + CrossAttention(norm(.), encoder output), + MLP(norm(.)).

    self_mask: [B or 1, T, T or T_cache]; cross_mask: [B, 1, S]. With `cache`
    ({'self': {'k','v'}, 'cross': {'k','v'}}) the new keys/values are written to the self
    cache at `cache_index` and the cross keys/values are the precomputed ones.
    """
    num_heads: int
    head_dim: int
    mlp: str
    mlp_ratio: float
    norm: str
    use_bias: bool
    dropout_rate: float
    out_init_std: float
    dtype: object

    def setup(self):
        attention = lambda name: layers.Attention(
            num_heads=self.num_heads, num_kv_heads=self.num_heads, head_dim=self.head_dim, use_bias=self.use_bias,
            dropout_rate=self.dropout_rate, out_init_std=self.out_init_std, dtype=self.dtype, name=name)
        self.self_attn = attention("self_attn")
        self.cross_attn = attention("cross_attn")
        self.mlp_layer = layers.MLP(kind=self.mlp, mlp_ratio=self.mlp_ratio, use_bias=self.use_bias,
                                    out_init_std=self.out_init_std, dtype=self.dtype, name="mlp")
        self.norms = [layers.make_norm(self.norm, self.use_bias, self.dtype, name=f"norm{i}") for i in (1, 2, 3)]
        self.drop = nn.Dropout(self.dropout_rate)

    def __call__(self, x, encoded, self_mask, cross_mask, cache=None, cache_index=None, deterministic=True):
        h, self_cache = self.self_attn(self.norms[0](x), mask=self_mask, cache=None if cache is None else cache["self"],
                                       cache_index=cache_index, deterministic=deterministic)
        x = x + self.drop(h, deterministic=deterministic)
        h, cross_cache = self.cross_attn(self.norms[1](x), mask=cross_mask, context=encoded,
                                         cache=None if cache is None else cache["cross"], deterministic=deterministic)
        x = x + self.drop(h, deterministic=deterministic)
        x = x + self.drop(self.mlp_layer(self.norms[2](x)), deterministic=deterministic)
        return x, None if cache is None else {"self": self_cache, "cross": cross_cache}

    def project_context(self, encoded):
        """The cross-attention keys and values of `encoded` [B, S, C] -> {'k', 'v': [B, S, H, D]},
        computed once per input: the attention writes them into an empty cache at slot 0."""
        shape = (*encoded.shape[:2], self.num_heads, self.head_dim)
        empty = {"k": jnp.zeros(shape, self.dtype), "v": jnp.zeros(shape, self.dtype)}
        probe = jnp.zeros((encoded.shape[0], 1, encoded.shape[2]), self.dtype)
        _, projected = self.cross_attn(probe, context=encoded, cache=empty, cache_index=jnp.zeros((), jnp.int32))
        return projected
