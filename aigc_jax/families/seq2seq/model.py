"""The encoder-decoder Transformer (Vaswani et al. 2017, "Attention is all you need").

Encoder: bidirectional self-attention over the source (padding masked) and an MLP per
layer. Decoder: causal (masked) self-attention over the target prefix, encoder-decoder
(cross) attention over the encoder output, and an MLP per layer. Trained by maximum
likelihood with teacher forcing: log P(y | x) = sum_t log P(y_t | y_<t, x).

Blocks are pre-norm (x + f(norm(x)), with a final norm), which trains without warm-up
tricks at these sizes; attention, MLP and norms are the LM's (aigc_jax.nn.layers).
Token embeddings are scaled by sqrt(C) (section 3.4 of the paper) and initialised with
std 1/sqrt(C), so embedded tokens have unit scale like the sinusoidal positions.
share_embeddings=True uses one table for source tokens, target tokens and the output
projection (the paper's choice), the output divided by sqrt(C) so that the logits start
near 0 (Mesh TensorFlow's T5 does the same when tied); False gives three separate matrices.

Shapes: B batch, S source length, T target length, C width, V vocabulary.
Tokens equal to `pad_id` are padding: they are never attended to.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.nn import layers
from aigc_jax.nn.encoder_decoder import DecoderBlock, EncoderBlock
from aigc_jax.nn.transformer import DTYPES

Array = jax.Array


def sinusoidal_positions(length: int, width: int) -> np.ndarray:
    """[length, width] table: PE(p, 2i) = sin(p / 10000^(2i/C)), PE(p, 2i+1) = cos(same)."""
    positions = np.arange(length)[:, None]
    rates = 10000.0 ** (-np.arange(0, width, 2) / width)
    table = np.zeros((length, width), np.float32)
    table[:, 0::2] = np.sin(positions * rates)
    table[:, 1::2] = np.cos(positions * rates)[:, : width // 2]
    return table


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer.

    __call__(source [B, S], inputs [B, T]) -> logits [B, T, V] float32 (teacher forcing).
    encode(source) -> encoded [B, S, C]; decode(inputs, encoded, source_valid, ...) -> logits.
    """
    vocab_size: int
    max_source_length: int
    max_target_length: int  # decoder positions (target tokens + EOS)
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    embed_dim: int = 128
    mlp: str = "gelu"
    mlp_ratio: float = 4.0
    norm: str = "layernorm"
    use_bias: bool = True
    positions: str = "sinusoidal"  # sinusoidal | learned
    share_embeddings: bool = True
    dropout: float = 0.0
    dtype: str = "float32"
    pad_id: int = 0

    @classmethod
    def from_config(cls, model_config, vocab_size: int, max_source_length: int, max_target_length: int):
        fields = {name: model_config[name] for name in model_config.keys() if name in cls.__dataclass_fields__}
        return cls(vocab_size=vocab_size, max_source_length=max_source_length,
                   max_target_length=max_target_length, **fields)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def setup(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"model.embed_dim {self.embed_dim} is not divisible by model.num_heads {self.num_heads}")
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"unknown model.positions {self.positions!r}; expected 'sinusoidal' or 'learned'")
        dtype = DTYPES[self.dtype]
        width = self.embed_dim
        embed = lambda name: nn.Embed(self.vocab_size, width, embedding_init=nn.initializers.normal(width ** -0.5),
                                      dtype=dtype, param_dtype=jnp.float32, name=name)
        if self.share_embeddings:
            self.token_embed = embed("token_embed")
        else:
            self.source_embed, self.target_embed = embed("source_embed"), embed("target_embed")
            self.lm_head = nn.Dense(self.vocab_size, use_bias=False, kernel_init=nn.initializers.normal(width ** -0.5),
                                    dtype=dtype, param_dtype=jnp.float32, name="lm_head")
        if self.positions == "learned":
            pos_init = nn.initializers.normal(math.sqrt(0.5))  # the RMS of the sinusoidal table
            self.source_pos = self.param("source_pos", pos_init, (self.max_source_length, width))
            self.target_pos = self.param("target_pos", pos_init, (self.max_target_length, width))
        block = dict(num_heads=self.num_heads, head_dim=self.head_dim, mlp=self.mlp, mlp_ratio=self.mlp_ratio,
                     norm=self.norm, use_bias=self.use_bias, dropout_rate=self.dropout, dtype=dtype)
        self.encoder_blocks = [EncoderBlock(**block, out_init_std=layers.residual_init_std(self.num_encoder_layers),
                                            name=f"encoder_{i}") for i in range(self.num_encoder_layers)]
        self.decoder_blocks = [DecoderBlock(**block, out_init_std=layers.residual_init_std(self.num_decoder_layers),
                                            name=f"decoder_{i}") for i in range(self.num_decoder_layers)]
        self.encoder_norm = layers.make_norm(self.norm, self.use_bias, dtype, name="encoder_norm")
        self.decoder_norm = layers.make_norm(self.norm, self.use_bias, dtype, name="decoder_norm")
        self.embed_drop = nn.Dropout(self.dropout)

    def _embed(self, tokens, offset, side: str, deterministic: bool):
        """tokens [B, L] at positions offset .. offset + L - 1 -> [B, L, C]."""
        table = self.token_embed if self.share_embeddings else (
            self.source_embed if side == "source" else self.target_embed)
        x = table(tokens) * math.sqrt(self.embed_dim)
        length = tokens.shape[1]
        limit = self.max_source_length if side == "source" else self.max_target_length
        if self.positions == "learned":
            pos = self.source_pos if side == "source" else self.target_pos
            x = x + jax.lax.dynamic_slice_in_dim(pos, offset, length).astype(x.dtype)
        else:
            table = jnp.asarray(sinusoidal_positions(limit, self.embed_dim))
            x = x + jax.lax.dynamic_slice_in_dim(table, offset, length).astype(x.dtype)
        return self.embed_drop(x, deterministic=deterministic)

    def encode(self, source: Array, deterministic: bool = True) -> Array:
        """source [B, S] -> encoded [B, S, C] (rows at padding positions are not meaningful)."""
        if source.shape[1] > self.max_source_length:
            raise ValueError(f"source of length {source.shape[1]} exceeds max_source_length {self.max_source_length}")
        valid = source != self.pad_id
        mask = layers.padding_mask(valid, valid)
        x = self._embed(source, 0, "source", deterministic)
        for block in self.encoder_blocks:
            x = block(x, mask, deterministic)
        return self.encoder_norm(x)

    def decode(self, inputs: Array, encoded: Array, source_valid: Array, *, cache: Optional[list] = None,
               cache_index: Optional[Array] = None, deterministic: bool = True):
        """inputs [B, T] target-side tokens; encoded [B, S, C]; source_valid [B, S] bool.

        Without a cache: logits [B, T, V] for positions 0..T-1 (causal mask).
        With a cache (see init_cache / project_context): inputs are at positions
        cache_index .. cache_index + T - 1; returns (logits, new cache).
        """
        length = inputs.shape[1]
        cross_mask = source_valid[:, None, :]
        if cache is None:
            if length > self.max_target_length:
                raise ValueError(f"target of length {length} exceeds max_target_length {self.max_target_length}")
            offset, self_mask = 0, layers.causal_mask(length)
        else:
            offset = cache_index
            slots = cache[0]["self"]["k"].shape[1]
            queries = cache_index + jnp.arange(length)
            self_mask = (jnp.arange(slots)[None, :] <= queries[:, None])[None]  # [1, T, slots]
        x = self._embed(inputs, offset, "target", deterministic)
        new_cache = []
        for i, block in enumerate(self.decoder_blocks):
            x, layer_cache = block(x, encoded, self_mask, cross_mask, None if cache is None else cache[i],
                                   cache_index, deterministic)
            new_cache.append(layer_cache)
        x = self.decoder_norm(x)
        if self.share_embeddings:  # scaled so that initial logits are near 0 (as T5 does when tied)
            logits = self.token_embed.attend(x) / math.sqrt(self.embed_dim)
        else:
            logits = self.lm_head(x)
        logits = logits.astype(jnp.float32)
        return logits if cache is None else (logits, new_cache)

    def init_cache(self, encoded: Array, slots: int) -> list:
        """Per decoder layer: an empty self-attention cache of `slots` positions and the
        cross-attention keys/values of `encoded`, projected once."""
        shape = (encoded.shape[0], slots, self.num_heads, self.head_dim)
        dtype = DTYPES[self.dtype]
        return [{"self": {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)},
                 "cross": block.project_context(encoded)} for block in self.decoder_blocks]

    def __call__(self, source: Array, inputs: Array, deterministic: bool = True) -> Array:
        encoded = self.encode(source, deterministic)
        return self.decode(inputs, encoded, source != self.pad_id, deterministic=deterministic)


def flops_per_example(model: Seq2SeqTransformer, source_length: int, target_length: int) -> float:
    """Training FLOPs of one example: 6 x (multiply-adds per token) x tokens for the dense
    layers (Kaplan et al. 2020), plus 6 x 2 C x (key length) per query per attention layer."""
    c, r = model.embed_dim, model.mlp_ratio
    mlp = 3 * c * layers.swiglu_hidden_width(c, r) if model.mlp == "swiglu" else 2 * c * int(r * c)
    encoder = model.num_encoder_layers * (4 * c * c + mlp) * source_length
    decoder = model.num_decoder_layers * (4 * c * c + 2 * c * c + mlp) * target_length
    cross_kv = model.num_decoder_layers * 2 * c * c * source_length
    head = model.vocab_size * c * target_length
    attention = 2 * c * (model.num_encoder_layers * source_length ** 2 + model.num_decoder_layers
                         * (target_length ** 2 + target_length * source_length))
    return 6.0 * (encoder + decoder + cross_kv + head + attention)
