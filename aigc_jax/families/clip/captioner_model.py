"""An image-conditioned language model: the captioner (Vinyals et al. 2015's task with a
Transformer: an image encoder's tokens in place of an encoder-decoder's source text).

  encode(images [B, H, W, C]) -> tokens [B, N, width]: the contrastive model's image encoders
      (ViT: class token + patches; CNN: the last feature map's cells), projected to `width`;
      with `global_image`, the encoder's pooled vector (ViT: the class token; CNN: the
      normalised mean cell), projected by its own layer, goes first;
  decode(inputs [B, T], encoded) -> logits [B, T, V]: token and learned position embeddings
      (with `global_image`, plus that first, global token at every position: "par-inject",
      Tanti et al. 2018), pre-norm decoder blocks (causal self-attention, cross-attention over
      the image tokens, MLP; aigc_jax/nn/encoder_decoder.py), a final norm, the output tied to
      the token table.
Trained by maximum likelihood, log p(y | image) = sum_t log p(y_t | y_<t, image), with teacher
forcing. Why the global token: cross-attention alone starts from a uniform average over the
CNN's cells, and in 1,500 steps it learned to read count and size only; with the pooled vector
added to the inputs the same budget reads colour too (the ViT's also background), and shape
once the encoder is a frozen contrastive one (`vision_from`, `freeze_vision`; the numbers:
experiments/results/multimodal.md, "Captioning"). Decoding runs cached (init_cache: the
image's cross-attention keys and values projected once per image, a self-attention cache per
layer): captioner_decoding.py.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.families.clip.model import make_image_encoder
from aigc_jax.nn import layers
from aigc_jax.nn.encoder_decoder import DecoderBlock


class Captioner(nn.Module):
    image_encoder: str
    vocab_size: int
    max_length: int  # caption tokens, BOS to EOS
    width: int = 64
    vision_depth: int = 2
    decoder_depth: int = 2
    num_heads: int = 4
    patch_size: int = 4
    cnn_widths: tuple = (32, 64, 128)
    cnn_convs_per_stage: int = 1
    global_image: bool = True
    freeze_vision: bool = False  # the encoder's outputs carry no gradient (its optimizer: captioner_task)

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def setup(self):
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by {self.num_heads} heads")
        self.vision = make_image_encoder(self.image_encoder, patch_size=self.patch_size, width=self.width,
                                         depth=self.vision_depth, num_heads=self.num_heads, cnn_widths=self.cnn_widths,
                                         cnn_convs_per_stage=self.cnn_convs_per_stage)
        self.bridge = nn.Dense(self.width, kernel_init=layers.dense_init(), name="bridge")
        if self.global_image:  # unit-scale output, as the token embeddings (times sqrt(width))
            self.global_bridge = nn.Dense(self.width, kernel_init=nn.initializers.normal(self.width ** -0.5),
                                          name="global_bridge")
        self.token_embed = nn.Embed(self.vocab_size, self.width,
                                    embedding_init=nn.initializers.normal(self.width ** -0.5))
        self.positions = self.param("positions", nn.initializers.normal(0.02), (self.max_length, self.width))
        self.blocks = [DecoderBlock(num_heads=self.num_heads, head_dim=self.head_dim, mlp="gelu", mlp_ratio=4.0,
                                    norm="layernorm", use_bias=True, dropout_rate=0.0,
                                    out_init_std=layers.residual_init_std(self.decoder_depth), dtype=jnp.float32,
                                    name=f"decoder_{i}") for i in range(self.decoder_depth)]
        self.final_norm = layers.make_norm("layernorm", True, jnp.float32, name="final_norm")

    def encode(self, images):
        pooled, tokens = self.vision(images)
        if self.freeze_vision:
            pooled, tokens = jax.lax.stop_gradient((pooled, tokens))
        memory = self.bridge(tokens)
        if self.global_image:
            memory = jnp.concatenate([self.global_bridge(pooled)[:, None], memory], axis=1)
        return memory

    def decode(self, inputs, encoded, *, cache: Optional[list] = None, cache_index=None):
        """Without a cache: logits [B, T, V] (causal). With one: inputs sit at positions
        cache_index .. cache_index + T - 1; returns (logits, new cache)."""
        length = inputs.shape[1]
        cross_mask = jnp.ones((inputs.shape[0], 1, encoded.shape[1]), bool)
        if cache is None:
            if length > self.max_length:
                raise ValueError(f"caption input of {length} tokens exceeds the captioner's {self.max_length}")
            offset, self_mask = 0, layers.causal_mask(length)
        else:
            offset = cache_index
            slots = cache[0]["self"]["k"].shape[1]
            self_mask = (jnp.arange(slots)[None, :] <= (cache_index + jnp.arange(length))[:, None])[None]
        x = self.token_embed(inputs) * math.sqrt(self.width)
        x = x + jax.lax.dynamic_slice_in_dim(self.positions, offset, length)
        if self.global_image:
            x = x + encoded[:, :1]
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, encoded, self_mask, cross_mask, None if cache is None else cache[i], cache_index)
            new_cache.append(layer_cache)
        logits = (self.token_embed.attend(self.final_norm(x)) / math.sqrt(self.width)).astype(jnp.float32)
        return logits if cache is None else (logits, new_cache)

    def init_cache(self, encoded, slots: int) -> list:
        shape = (encoded.shape[0], slots, self.num_heads, self.head_dim)
        return [{"self": {"k": jnp.zeros(shape), "v": jnp.zeros(shape)}, "cross": block.project_context(encoded)}
                for block in self.blocks]

    def __call__(self, images, inputs):
        return self.decode(inputs, self.encode(images))


def from_config(model_config, vocab_size: int) -> Captioner:
    m = model_config
    return Captioner(image_encoder=m.image_encoder, vocab_size=vocab_size, max_length=m.max_text_length,
                     width=m.width, vision_depth=m.vision_depth, decoder_depth=m.decoder_depth,
                     num_heads=m.num_heads, patch_size=m.patch_size, cnn_widths=tuple(m.cnn_widths),
                     cnn_convs_per_stage=m.cnn_convs_per_stage,
                     global_image=m.get("global_image", False),  # runs saved before the field: cross-attention only
                     freeze_vision=m.get("freeze_vision", False))
