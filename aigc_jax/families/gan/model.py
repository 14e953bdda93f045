"""GAN generators and discriminators (flax.linen) and their input transforms.

  MLPGenerator / MLPDiscriminator  2-D data: PacGAN's toy-data architecture (Lin et al.
      2018, after ALI): G = 4 x 400 ReLU layers with batch norm, D = 3 x 200 maxout layers
      (5 pieces) and a linear output. Sizes are fields.
  DCGANGenerator / DCGANDiscriminator  images (Radford et al. 2016): G projects z to a
      [S/4, S/4, width] map, then two stride-2 transposed convolutions (batch norm + ReLU
      between, tanh out); D has two stride-2 convolutions with leaky ReLU (no pooling, no
      batch norm: the critic stays per-example, which WGAN-GP and R1 require), then a linear
      output. Works for any S divisible by 4: 8x8 digits (2 -> 4 -> 8), 28x28 MNIST (7 -> 14 -> 28).

Class conditioning (num_classes > 0): G sees [z, one_hot(y)]; D sees one_hot(y) appended to
each example (as extra features for vectors, as constant channels for images), before packing.
PacGAN packing (Lin et al. 2018): `pack` concatenates m consecutive examples along the feature
/ channel axis, so the discriminator judges m samples jointly.
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


def attach_labels(x: jax.Array, labels: Optional[jax.Array], num_classes: int) -> jax.Array:
    """x [N, D] or [N, H, W, C], labels [N] -> x with one_hot(labels) appended on the last axis
    ([N, D + K] or [N, H, W, C + K]); x unchanged when num_classes == 0."""
    if not num_classes:
        return x
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype)
    if x.ndim == 4:
        one_hot = jnp.broadcast_to(one_hot[:, None, None, :], x.shape[:3] + (num_classes,))
    return jnp.concatenate([x, one_hot], axis=-1)


def pack(x: jax.Array, m: int) -> jax.Array:
    """PacGAN packing: [N, ..., C] -> [N / m, ..., m * C]; pack j holds examples j*m .. j*m + m - 1,
    example k of the pack in features k*C .. (k+1)*C - 1."""
    if m == 1:
        return x
    if x.shape[0] % m:
        raise ValueError(f"cannot pack {x.shape[0]} examples into groups of {m}")
    grouped = x.reshape((x.shape[0] // m, m) + x.shape[1:])  # [B, m, ..., C]
    grouped = jnp.moveaxis(grouped, 1, -2)  # [B, ..., m, C]
    return grouped.reshape(grouped.shape[:-2] + (m * x.shape[-1],))


def _generator_input(z: jax.Array, labels: Optional[jax.Array], num_classes: int) -> jax.Array:
    return attach_labels(z, labels, num_classes)


class MLPGenerator(nn.Module):
    """z [N, latent] (+ labels [N]) -> points [N, output_dim]."""
    hidden: int = 400
    num_layers: int = 4
    output_dim: int = 2
    batch_norm: bool = True
    num_classes: int = 0
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, z, labels=None, *, train: bool):
        h = _generator_input(z, labels, self.num_classes)
        for _ in range(self.num_layers):
            h = nn.Dense(self.hidden, use_bias=not self.batch_norm)(h)
            if self.batch_norm:
                h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
            h = nn.relu(h)
        return nn.Dense(self.output_dim)(h)


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): max over `pieces` affine maps. [N, D] -> [N, features]."""
    features: int
    pieces: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.features * self.pieces)(x)
        return jnp.max(h.reshape(h.shape[:-1] + (self.features, self.pieces)), axis=-1)


class MLPDiscriminator(nn.Module):
    """Packed, conditioned inputs [B, m * (D + K)] -> one logit / critic value per pack [B].
    maxout_pieces > 1: maxout layers; 1: dense layers with leaky ReLU."""
    hidden: int = 200
    num_layers: int = 3
    maxout_pieces: int = 5
    leaky_slope: float = 0.2

    @nn.compact
    def __call__(self, x):
        h = x
        for _ in range(self.num_layers):
            if self.maxout_pieces > 1:
                h = Maxout(self.hidden, self.maxout_pieces)(h)
            else:
                h = nn.leaky_relu(nn.Dense(self.hidden)(h), self.leaky_slope)
        return nn.Dense(1)(h)[:, 0]


class DCGANGenerator(nn.Module):
    """z [N, latent] (+ labels [N]) -> images [N, S, S, channels] in [-1, 1]."""
    image_size: int = 8
    channels: int = 1
    width: int = 128  # channels of the S/4 x S/4 map; S/2 x S/2 has width / 2
    num_classes: int = 0
    bn_momentum: float = 0.9
    batch_norm: bool = True  # False: biases instead (a diagnostic: batch norm couples the samples of a batch)

    @nn.compact
    def __call__(self, z, labels=None, *, train: bool):
        if self.image_size % 4:
            raise ValueError(f"DCGAN image size must be divisible by 4, got {self.image_size}")
        base = self.image_size // 4
        def norm(h):
            return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h) if self.batch_norm else h

        biased = not self.batch_norm
        h = nn.Dense(base * base * self.width, use_bias=biased)(_generator_input(z, labels, self.num_classes))
        h = nn.relu(norm(h.reshape((-1, base, base, self.width))))
        h = nn.ConvTranspose(self.width // 2, (4, 4), strides=(2, 2), padding="SAME", use_bias=biased)(h)
        h = nn.relu(norm(h))
        h = nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding="SAME")(h)
        return jnp.tanh(h)


class DCGANDiscriminator(nn.Module):
    """Packed, conditioned images [B, S, S, m * (C + K)] -> one logit / critic value per pack [B]."""
    width: int = 64
    leaky_slope: float = 0.2

    @nn.compact
    def __call__(self, x):
        h = nn.leaky_relu(nn.Conv(self.width, (4, 4), strides=(2, 2), padding="SAME")(x), self.leaky_slope)
        h = nn.leaky_relu(nn.Conv(2 * self.width, (4, 4), strides=(2, 2), padding="SAME")(h), self.leaky_slope)
        return nn.Dense(1)(h.reshape((h.shape[0], -1)))[:, 0]


def build_models(model_config, data_shape: tuple) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) from config.model; data_shape is one example's shape."""
    kind = model_config.kind
    if kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"model.kind='mlp' is for vector data, but examples have shape {data_shape}")
        generator = MLPGenerator(hidden=model_config.g_hidden, num_layers=model_config.g_layers,
                                 output_dim=data_shape[0], batch_norm=model_config.g_batch_norm,
                                 num_classes=model_config.num_classes, bn_momentum=model_config.bn_momentum)
        discriminator = MLPDiscriminator(hidden=model_config.d_hidden, num_layers=model_config.d_layers,
                                         maxout_pieces=model_config.d_maxout_pieces)
    elif kind == "dcgan":
        if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
            raise ValueError(f"model.kind='dcgan' needs square images [S, S, C], got examples of shape {data_shape}")
        if data_shape[0] % 4:
            raise ValueError(f"model.kind='dcgan' needs an image size divisible by 4, got {data_shape[0]} "
                             f"(set data.image_size)")
        generator = DCGANGenerator(image_size=data_shape[0], channels=data_shape[2], width=model_config.g_width,
                                   num_classes=model_config.num_classes, bn_momentum=model_config.bn_momentum,
                                   batch_norm=model_config.get("g_batch_norm", True))
        discriminator = DCGANDiscriminator(width=model_config.d_width)
    else:
        raise ValueError(f"unknown model.kind {kind!r}; expected 'mlp' or 'dcgan'")
    return generator, discriminator
