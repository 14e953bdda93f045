"""A CLIP-style contrastive image-text model (Radford et al. 2021), small.

Image encoder (`model.image_encoder`):
  vit  patches of p x p pixels embedded linearly, a learned class token and learned position
       embeddings, pre-norm Transformer blocks with bidirectional attention (the project's
       Block, aigc_jax/nn/transformer.py), a final LayerNorm; pooled = the class token's output.
  cnn  stages of 3x3 convolutions (`model.cnn_convs_per_stage`, the extra ones residual), each
       stage doubling the channels and halving the resolution (stride 2), GroupNorm and GELU,
       global average pooling, a final LayerNorm.
Text encoder: token and learned position embeddings, the same blocks (causal as in CLIP, or
  bidirectional with `model.text_causal=False`; padding is masked either way), a final
  LayerNorm; pooled = the output at the end-of-text token (captions.EOS), as in CLIP; tokens
  after it are masked out.
Both pooled vectors are projected (no bias) to `model.embed_dim` and L2-normalised.
Learned scalars: log_scale (logits = exp(log_scale) * cosine; CLIP initialises the temperature to
0.07, i.e. log_scale = log(1 / 0.07), and clamps exp(log_scale) at 100) and, for SigLIP's
sigmoid loss (Zhai et al. 2023), a bias initialised to -10 with log_scale = log 10.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.data.captions import EOS, PAD
from aigc_jax.nn import layers
from aigc_jax.nn.transformer import Block
from aigc_jax.nn.conv import Conv

IMAGE_ENCODERS = ("vit", "cnn")
MAX_LOGIT_SCALE = 100.0


def clamp_log_scale(log_scale: jax.Array) -> jax.Array:
    """log_scale with exp(log_scale) kept in [1, MAX_LOGIT_SCALE] (CLIP's clamp at 100)."""
    return jnp.clip(log_scale, 0.0, math.log(MAX_LOGIT_SCALE))


class EncoderStack(nn.Module):
    """`depth` pre-norm Transformer blocks (GELU MLP, LayerNorm) over [B, T, width], then a LayerNorm."""
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0

    @nn.compact
    def __call__(self, x, mask):
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by {self.num_heads} heads")
        positions = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])
        for i in range(self.depth):
            x, _ = Block(num_heads=self.num_heads, num_kv_heads=self.num_heads, head_dim=self.width // self.num_heads,
                         mlp="gelu", mlp_ratio=self.mlp_ratio, norm="layernorm", parallel=False, use_bias=True,
                         use_rope=False, dropout_rate=0.0, out_init_std=layers.residual_init_std(self.depth),
                         attention_impl="einsum", dtype=jnp.float32, name=f"block{i}")(x, positions, mask)
        return layers.make_norm("layernorm", True, jnp.float32, name="final_norm")(x)


class ViTEncoder(nn.Module):
    """images [B, H, W, C] -> (pooled [B, width], tokens [B, 1 + (H/p)(W/p), width])."""
    patch_size: int
    width: int
    depth: int
    num_heads: int

    @nn.compact
    def __call__(self, images):
        b, h, w, c = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}")
        patches = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
        x = nn.Dense(self.width, kernel_init=layers.dense_init(), name="patch_embed")(patches)
        cls = self.param("class_token", layers.dense_init(), (1, 1, self.width))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.width)), x], axis=1)
        x = x + self.param("pos_embed", layers.dense_init(), (1, x.shape[1], self.width))
        x = EncoderStack(self.width, self.depth, self.num_heads, name="encoder")(x, None)
        return x[:, 0], x


class CNNEncoder(nn.Module):
    """images [B, H, W, C] -> (pooled [B, widths[-1]], feature map [B, H', W', widths[-1]] as tokens).
    Each stage: a 3x3 convolution (stride 2 after the first stage), then convs_per_stage - 1
    residual 3x3 convolutions at that resolution (x + GELU(GroupNorm(conv(x)))). The convolutions
    have no bias: the GroupNorm after each has its own per-channel shift and subtracts a bias's
    group mean exactly, leaving it gradients near rounding level that Adam scales into steps of
    the learning rate's size (the 8-device equivalence test caught them)."""
    widths: tuple
    convs_per_stage: int = 1

    @nn.compact
    def __call__(self, images):
        x = images
        for i, width in enumerate(self.widths):
            x = Conv(width, (3, 3), strides=(1 if i == 0 else 2), use_bias=False, name=f"conv{i}")(x)
            x = nn.gelu(nn.GroupNorm(num_groups=min(8, width), name=f"norm{i}")(x))
            for j in range(1, self.convs_per_stage):
                h = Conv(width, (3, 3), use_bias=False, name=f"conv{i}_{j}")(x)
                x = x + nn.gelu(nn.GroupNorm(num_groups=min(8, width), name=f"norm{i}_{j}")(h))
        tokens = x.reshape(x.shape[0], -1, x.shape[-1])
        pooled = layers.make_norm("layernorm", True, jnp.float32, name="final_norm")(tokens.mean(axis=1))
        return pooled, tokens


def make_image_encoder(kind: str, *, patch_size: int, width: int, depth: int, num_heads: int, cnn_widths: tuple,
                       cnn_convs_per_stage: int = 1, name: str = None) -> nn.Module:
    """The ViT or the CNN (model.image_encoder); both return (pooled, tokens)."""
    if kind == "vit":
        return ViTEncoder(patch_size, width, depth, num_heads, name=name)
    if kind == "cnn":
        return CNNEncoder(tuple(cnn_widths), cnn_convs_per_stage, name=name)
    raise ValueError(f"unknown image encoder {kind!r}; expected one of {IMAGE_ENCODERS}")


class TextEncoder(nn.Module):
    """tokens [B, T] (BOS ... EOS, PAD after) -> (pooled at EOS [B, width], outputs [B, T, width])."""
    vocab_size: int
    max_length: int
    width: int
    depth: int
    num_heads: int
    causal: bool = True

    @nn.compact
    def __call__(self, tokens):
        b, t = tokens.shape
        if t > self.max_length:
            raise ValueError(f"text of {t} tokens exceeds the text encoder's {self.max_length}")
        x = nn.Embed(self.vocab_size, self.width, embedding_init=layers.dense_init(), name="token_embed")(tokens)
        x = x + self.param("pos_embed", layers.dense_init(), (1, self.max_length, self.width))[:, :t]
        # The text is everything up to its first EOS (or up to the last non-PAD token when it has
        # none); what follows is never attended to, and its rows attend only to themselves.
        is_end = tokens == EOS
        end = jnp.where(is_end.any(axis=1), jnp.argmax(is_end, axis=1), jnp.sum(tokens != PAD, axis=1) - 1)
        valid = jnp.arange(t)[None, :] <= end[:, None]
        mask = layers.padding_mask(valid, valid) | jnp.eye(t, dtype=bool)[None]
        if self.causal:
            mask = mask & layers.causal_mask(t)
        x = EncoderStack(self.width, self.depth, self.num_heads, name="encoder")(x, mask)
        return x[jnp.arange(b), end], x


class CLIP(nn.Module):
    """Contrastive image-text model: `encode_image`, `encode_text` (unit vectors [B, embed_dim]),
    `scalars` (log_scale, bias), and __call__ (both embeddings) for init."""
    image_encoder: str
    image_channels: int
    vocab_size: int
    max_text_length: int
    embed_dim: int = 64
    width: int = 64
    vision_depth: int = 2
    text_depth: int = 2
    num_heads: int = 4
    patch_size: int = 4
    cnn_widths: tuple = (32, 64, 128)
    cnn_convs_per_stage: int = 1
    text_causal: bool = True
    init_log_scale: float = math.log(1 / 0.07)
    init_bias: float = 0.0

    def setup(self):
        self.vision = make_image_encoder(self.image_encoder, patch_size=self.patch_size, width=self.width,
                                         depth=self.vision_depth, num_heads=self.num_heads, cnn_widths=self.cnn_widths,
                                         cnn_convs_per_stage=self.cnn_convs_per_stage)
        self.text = TextEncoder(self.vocab_size, self.max_text_length, self.width, self.text_depth, self.num_heads,
                                self.text_causal)
        init = nn.initializers.normal(1.0 / math.sqrt(self.width))
        self.image_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
        self.text_projection = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init)
        self.log_scale = self.param("log_scale", nn.initializers.constant(self.init_log_scale), ())
        self.bias = self.param("bias", nn.initializers.constant(self.init_bias), ())

    def image_features(self, images):
        """(pooled [B, D_img], tokens [B, N, D_img]) before the projection: the linear probe's features."""
        return self.vision(images)

    def encode_image(self, images):
        pooled, _ = self.vision(images)
        return normalize(self.image_projection(pooled))

    def encode_text(self, tokens):
        pooled, _ = self.text(tokens)
        return normalize(self.text_projection(pooled))

    def scalars(self):
        return clamp_log_scale(self.log_scale), self.bias

    def __call__(self, images, tokens):
        return self.encode_image(images), self.encode_text(tokens), self.scalars()


def normalize(x, eps: float = 1e-6):
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


def from_config(model_config, image_shape: tuple, vocab_size: int, loss_name: str) -> CLIP:
    m = model_config
    sigmoid = loss_name == "sigmoid"
    return CLIP(image_encoder=m.image_encoder, image_channels=image_shape[-1], vocab_size=vocab_size,
                max_text_length=m.max_text_length, embed_dim=m.embed_dim, width=m.width,
                vision_depth=m.vision_depth, text_depth=m.text_depth, num_heads=m.num_heads,
                patch_size=m.patch_size, cnn_widths=tuple(m.cnn_widths),
                cnn_convs_per_stage=m.cnn_convs_per_stage, text_causal=m.text_causal,
                init_log_scale=math.log(10.0) if sigmoid else math.log(1 / 0.07),
                init_bias=-10.0 if sigmoid else 0.0)


class FactorEncoder(nn.Module):
    """The contrastive model's image encoder with one linear head per factor, trained with labels:
    the supervised baseline of the linear probes (CLIP sec. 3.2 compares against the same
    architecture trained on labels). __call__ -> {factor: logits}; image_features as in CLIP."""
    image_encoder: str
    head_sizes: tuple  # ((factor, classes), ...)
    width: int = 64
    vision_depth: int = 2
    num_heads: int = 4
    patch_size: int = 4
    cnn_widths: tuple = (32, 64, 128)
    cnn_convs_per_stage: int = 1

    def setup(self):
        self.vision = make_image_encoder(self.image_encoder, patch_size=self.patch_size, width=self.width,
                                         depth=self.vision_depth, num_heads=self.num_heads, cnn_widths=self.cnn_widths,
                                         cnn_convs_per_stage=self.cnn_convs_per_stage)
        self.heads = [nn.Dense(size, name=f"head_{name}") for name, size in self.head_sizes]

    def image_features(self, images):
        return self.vision(images)

    def __call__(self, images):
        pooled, _ = self.vision(images)
        return {name: head(pooled) for (name, _), head in zip(self.head_sizes, self.heads)}
