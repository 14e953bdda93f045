"""The variational autoencoder's networks (Kingma & Welling 2014): a Gaussian encoder
q(z | x) = N(mean(x), diag(exp(log_var(x)))) and a decoder p(x | z), MLP or convolutional.

Decoders (`likelihood`):
  bernoulli  for binarised images: per-pixel logits, log p(x | z) = sum x log s + (1 - x) log(1 - s),
             s = sigmoid(logit).
  gaussian   for grey levels in [0, 1]: per-pixel mean and standard deviation
             std = min_std + softplus(raw) (the floor keeps the density bounded on pixels that
             never vary, such as the always-black border of digits), as in Kingma & Welling's
             appendix C.2 but with a floor.
The ELBO, the KL term and the IWAE bound are pure functions in losses.py beside this file.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

KINDS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
CONV_LAYERS = 2  # stride-2 convolutions: images need height and width divisible by 2 ** CONV_LAYERS

# Outputs per pixel channel: a logit, or a mean and a raw standard deviation.
OUTPUTS_PER_PIXEL = {"bernoulli": 1, "gaussian": 2}


class MLPEncoder(nn.Module):
    """x [B, H, W, C] -> (mean [B, L], log_var [B, L]) through `num_layers` ReLU layers."""
    latent_dim: int
    hidden_dim: int
    num_layers: int

    @nn.compact
    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        for _ in range(self.num_layers):
            h = nn.relu(nn.Dense(self.hidden_dim)(h))
        out = nn.Dense(2 * self.latent_dim)(h)
        return out[:, :self.latent_dim], out[:, self.latent_dim:]


class ConvEncoder(nn.Module):
    """x [B, H, W, C] -> two 3x3 stride-2 convolutions (channels c, 2c) -> a ReLU layer -> (mean, log_var)."""
    latent_dim: int
    hidden_dim: int
    channels: int

    @nn.compact
    def __call__(self, x):
        h = x
        for i in range(CONV_LAYERS):
            h = nn.relu(nn.Conv(self.channels * 2 ** i, (3, 3), strides=(2, 2), padding="SAME")(h))
        h = nn.relu(nn.Dense(self.hidden_dim)(h.reshape(h.shape[0], -1)))
        out = nn.Dense(2 * self.latent_dim)(h)
        return out[:, :self.latent_dim], out[:, self.latent_dim:]


class MLPDecoder(nn.Module):
    """z [B, L] -> `num_layers` ReLU layers -> [B, H, W, C * outputs_per_pixel]."""
    image_shape: tuple
    outputs_per_pixel: int
    hidden_dim: int
    num_layers: int

    @nn.compact
    def __call__(self, z):
        h = z
        for _ in range(self.num_layers):
            h = nn.relu(nn.Dense(self.hidden_dim)(h))
        height, width, channels = self.image_shape
        out = nn.Dense(height * width * channels * self.outputs_per_pixel)(h)
        return out.reshape(z.shape[0], height, width, channels * self.outputs_per_pixel)


class ConvDecoder(nn.Module):
    """z [B, L] -> a ReLU layer -> [B, H/4, W/4, 2c] -> two 3x3 stride-2 transposed convolutions
    (channels 2c, c) -> a 3x3 convolution to [B, H, W, C * outputs_per_pixel]."""
    image_shape: tuple
    outputs_per_pixel: int
    hidden_dim: int
    channels: int

    @nn.compact
    def __call__(self, z):
        height, width, channels = self.image_shape
        factor = 2 ** CONV_LAYERS
        top = self.channels * 2 ** (CONV_LAYERS - 1)
        h = nn.relu(nn.Dense(self.hidden_dim)(z))
        h = nn.relu(nn.Dense(height // factor * width // factor * top)(h))
        h = h.reshape(z.shape[0], height // factor, width // factor, top)
        for i in reversed(range(CONV_LAYERS)):
            h = nn.relu(nn.ConvTranspose(self.channels * 2 ** i, (3, 3), strides=(2, 2), padding="SAME")(h))
        return nn.Conv(channels * self.outputs_per_pixel, (3, 3), padding="SAME")(h)


class VAE(nn.Module):
    """Encoder and decoder together. `encode(x)` -> (mean, log_var) [B, L]; `decode(z)` -> the
    decoder's raw output [B, H, W, C * outputs_per_pixel] (see `log_likelihood`, `decoder_mean`)."""
    image_shape: tuple  # (H, W, C)
    kind: str = "mlp"
    likelihood: str = "bernoulli"
    latent_dim: int = 8
    hidden_dim: int = 256
    num_layers: int = 2
    conv_channels: int = 32
    min_std: float = 0.01

    def setup(self):
        outputs = OUTPUTS_PER_PIXEL[self.likelihood]
        if self.kind == "mlp":
            self.encoder = MLPEncoder(self.latent_dim, self.hidden_dim, self.num_layers)
            self.decoder = MLPDecoder(tuple(self.image_shape), outputs, self.hidden_dim, self.num_layers)
        else:
            self.encoder = ConvEncoder(self.latent_dim, self.hidden_dim, self.conv_channels)
            self.decoder = ConvDecoder(tuple(self.image_shape), outputs, self.hidden_dim, self.conv_channels)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x):
        mean, _ = self.encode(x)
        return self.decode(mean)

    @classmethod
    def from_config(cls, model_config, image_shape: tuple) -> "VAE":
        check_model_config(model_config, image_shape)
        return cls(image_shape=tuple(int(d) for d in image_shape), kind=model_config.kind,
                   likelihood=model_config.decoder, latent_dim=model_config.latent_dim,
                   hidden_dim=model_config.hidden_dim, num_layers=model_config.num_layers,
                   conv_channels=model_config.conv_channels, min_std=model_config.min_std)


def check_model_config(model_config, image_shape: tuple) -> None:
    """One-line errors for model fields that cannot work with these images (each field's own range
    is declared in the task's FIELD_RULES and checked before this)."""
    factor = 2 ** CONV_LAYERS
    if model_config.kind == "conv" and (image_shape[0] % factor or image_shape[1] % factor):
        raise ValueError(f"model.kind='conv' needs image height and width divisible by {factor}, "
                         f"got {image_shape[0]}x{image_shape[1]}")


def log_likelihood(likelihood: str, output: jax.Array, x: jax.Array, min_std: float) -> jax.Array:
    """log p(x | z) in nats, summed over pixels: output [..., H, W, C * P], x [..., H, W, C] -> [...]."""
    if likelihood == "bernoulli":
        # x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l)
        per_pixel = x * output - jax.nn.softplus(output)
    else:
        mean, std = gaussian_parameters(output, min_std)
        per_pixel = -0.5 * jnp.square((x - mean) / std) - jnp.log(std) - 0.5 * math.log(2.0 * math.pi)
    return jnp.sum(per_pixel, axis=(-3, -2, -1))


def gaussian_parameters(output: jax.Array, min_std: float) -> tuple[jax.Array, jax.Array]:
    """[..., H, W, 2C] -> (mean, std) [..., H, W, C]: channels [:C] are means, [C:] raw stds."""
    channels = output.shape[-1] // 2
    return output[..., :channels], min_std + jax.nn.softplus(output[..., channels:])


def decoder_mean(likelihood: str, output: jax.Array, min_std: float) -> jax.Array:
    """E[x | z] [..., H, W, C]: sigmoid(logits) (pixel probabilities) or the Gaussian mean."""
    if likelihood == "bernoulli":
        return jax.nn.sigmoid(output)
    return gaussian_parameters(output, min_std)[0]
