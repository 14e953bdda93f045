"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2017): a normalising flow of affine coupling layers.

An affine coupling with a binary mask b leaves the masked part alone and scales and shifts the rest
conditioned on it:
  y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x)),   log |det dy/dx| = sum (1 - b) * s(b * x)
  x = b * y + (1 - b) * (y - t(b * y)) * exp(-s(b * y))   (b * y = b * x, so the inverse is exact).
The log-scale is bounded for stability: s = bound * tanh(raw / bound) (|s| < bound, ~raw near 0;
the paper multiplies tanh by a learned scale instead), and the last layer of the s/t network starts
at zero so every coupling starts as the identity.

Masks: 'alternate' for 2-D points (x_1 conditions x_2, then the reverse), 'checkerboard' (pixel
(i, j) in the conditioning half when i + j + parity is even) and 'channel' (the first or second
half of the channels) for images.

Models map data x to latents z with z ~ N(0, I); the exact log-likelihood is the change of variables
  log p(x) = log N(f(x); 0, I) + log |det df/dx|,
and sampling inverts the flow: x = f^{-1}(z), z ~ N(0, I).
  RealNVP2D     points [B, 2]: `num_couplings` alternating couplings with MLP s/t networks.
  RealNVPImage  images [B, H, W, C] in (0, 1): the logit transform y = logit(alpha + (1 - 2 alpha) x),
                then the multi-scale architecture: at each scale but the last, 3 checkerboard
                couplings, a squeeze (2x2 pixels -> 4 channels), 3 channel couplings and half the
                channels factored out to z; at the last scale 4 checkerboard couplings. Residual
                convolutional s/t networks; the paper's batch normalisation is left out.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

MASKS = ("alternate", "checkerboard", "channel")
LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) summed over all but the first axis: [B, ...] -> [B]."""
    return -0.5 * jnp.sum(jnp.square(z) + LOG_2PI, axis=tuple(range(1, z.ndim)))


def bounded_log_scale(raw: jax.Array, bound: float) -> jax.Array:
    """bound * tanh(raw / bound): in (-bound, bound), the identity to first order near 0."""
    return bound * jnp.tanh(raw / bound)


def coupling_mask(kind: str, parity: int, shape: Sequence[int]) -> jax.Array:
    """The binary mask b (1 = conditioning part) for one example of `shape` ([D] or [H, W, C])."""
    if kind == "alternate":
        return (jnp.arange(shape[-1]) + parity) % 2 == 0
    if kind == "checkerboard":
        height, width, _ = shape
        rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
        return ((rows + cols + parity) % 2 == 0)[:, :, None]
    if kind == "channel":
        first_half = jnp.arange(shape[-1]) < shape[-1] // 2
        return first_half if parity == 0 else ~first_half
    raise ValueError(f"unknown coupling mask {kind!r}; expected one of {', '.join(MASKS)}")


class MLPCouplingNet(nn.Module):
    """[B, D] -> (raw log-scale, shift) [B, D] each: ReLU MLP, zero-initialised output layer."""
    hidden_dim: int
    num_hidden_layers: int

    @nn.compact
    def __call__(self, x):
        h = x
        for _ in range(self.num_hidden_layers):
            h = nn.relu(nn.Dense(self.hidden_dim)(h))
        out = nn.Dense(2 * x.shape[-1], kernel_init=nn.initializers.zeros)(h)
        return jnp.split(out, 2, axis=-1)


class ConvCouplingNet(nn.Module):
    """[B, H, W, C] -> (raw log-scale, shift) [B, H, W, C] each: a 3x3 convolution to `channels`,
    `num_blocks` residual blocks (ReLU, conv, ReLU, conv), ReLU, a zero-initialised 3x3 convolution."""
    channels: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.channels, (3, 3), padding="SAME")(x)
        for _ in range(self.num_blocks):
            r = nn.Conv(self.channels, (3, 3), padding="SAME")(nn.relu(h))
            h = h + nn.Conv(self.channels, (3, 3), padding="SAME")(nn.relu(r))
        out = nn.Conv(2 * x.shape[-1], (3, 3), padding="SAME", kernel_init=nn.initializers.zeros)(nn.relu(h))
        return jnp.split(out, 2, axis=-1)


class AffineCoupling(nn.Module):
    """One affine coupling layer (see the module docstring). `forward(x)` -> (y, log_det [B]);
    `inverse(y)` -> x. Inputs [B, D] (mask 'alternate', MLP net) or [B, H, W, C] (conv net)."""
    mask: str
    parity: int
    hidden: int  # MLP width or conv channels
    depth: int  # MLP hidden layers or residual blocks
    log_scale_bound: float

    def setup(self):
        if self.mask == "alternate":
            self.net = MLPCouplingNet(self.hidden, self.depth)
        else:
            self.net = ConvCouplingNet(self.hidden, self.depth)

    def _scale_and_shift(self, conditioning, free):
        raw_scale, shift = self.net(conditioning)
        return bounded_log_scale(raw_scale, self.log_scale_bound) * free, shift * free

    def forward(self, x):
        b = coupling_mask(self.mask, self.parity, x.shape[1:]).astype(x.dtype)
        log_scale, shift = self._scale_and_shift(x * b, 1.0 - b)
        y = x * b + (1.0 - b) * (x * jnp.exp(log_scale) + shift)
        return y, jnp.sum(log_scale, axis=tuple(range(1, x.ndim)))

    def inverse(self, y):
        b = coupling_mask(self.mask, self.parity, y.shape[1:]).astype(y.dtype)
        log_scale, shift = self._scale_and_shift(y * b, 1.0 - b)
        return y * b + (1.0 - b) * (y - shift) * jnp.exp(-log_scale)

    def __call__(self, x):
        return self.forward(x)


class RealNVP2D(nn.Module):
    """A flow on points [B, 2] (or [B, D]): alternating couplings, each x_1 | x_2 then x_2 | x_1."""
    num_couplings: int = 8
    hidden_dim: int = 128
    num_hidden_layers: int = 2
    log_scale_bound: float = 3.0

    def setup(self):
        self.couplings = [AffineCoupling("alternate", i % 2, self.hidden_dim, self.num_hidden_layers,
                                         self.log_scale_bound) for i in range(self.num_couplings)]

    def forward(self, x):
        """x [B, D] -> (z [B, D], log |det dz/dx| [B])."""
        log_det = jnp.zeros(x.shape[0], x.dtype)
        for coupling in self.couplings:
            x, delta = coupling.forward(x)
            log_det = log_det + delta
        return x, log_det

    def inverse(self, z):
        for coupling in reversed(self.couplings):
            z = coupling.inverse(z)
        return z

    def log_prob(self, x):
        """Exact log p(x) [B] by the change of variables."""
        z, log_det = self.forward(x)
        return standard_normal_log_density(z) + log_det

    def __call__(self, x):
        return self.forward(x)


def squeeze(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H/2, W/2, 4C]: each 2x2 block of pixels becomes 4 channels."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // 2, 2, width // 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height // 2, width // 2, 4 * channels)


def unsqueeze(x: jax.Array) -> jax.Array:
    """The inverse of `squeeze`: [B, H, W, 4C] -> [B, 2H, 2W, C]."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height, width, 2, 2, channels // 4).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, 2 * height, 2 * width, channels // 4)


def logit_transform(x: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
    """y = logit(p), p = alpha + (1 - 2 alpha) x, for x [B, ...] in [0, 1] (RealNVP, section 4.1).
    Returns (y, log |det dy/dx| [B]) with dy/dx = (1 - 2 alpha) / (p (1 - p)) per dimension."""
    p = alpha + (1.0 - 2.0 * alpha) * x
    y = jnp.log(p) - jnp.log1p(-p)
    per_dim = math.log(1.0 - 2.0 * alpha) - jnp.log(p) - jnp.log1p(-p)
    return y, jnp.sum(per_dim, axis=tuple(range(1, x.ndim)))


def inverse_logit_transform(y: jax.Array, alpha: float) -> jax.Array:
    return (jax.nn.sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)


class RealNVPImage(nn.Module):
    """The multi-scale RealNVP on images [B, H, W, C] in [0, 1]; H and W divisible by
    2 ** (num_scales - 1). `forward(x)` -> (z [B, H*W*C], log |det dz/dx| [B]), the logit transform
    included; `inverse(z)` -> x."""
    image_shape: tuple  # (H, W, C)
    num_scales: int = 2
    couplings_per_scale: int = 3
    hidden_channels: int = 64
    num_blocks: int = 2
    log_scale_bound: float = 3.0
    alpha: float = 0.05

    def setup(self):
        make = lambda mask, parity: AffineCoupling(mask, parity, self.hidden_channels, self.num_blocks,  # noqa: E731
                                                   self.log_scale_bound)
        checkerboards, channels = [], []
        for scale in range(self.num_scales):
            last = scale == self.num_scales - 1
            count = self.couplings_per_scale + 1 if last else self.couplings_per_scale
            checkerboards.append([make("checkerboard", i % 2) for i in range(count)])
            channels.append([] if last else [make("channel", i % 2) for i in range(self.couplings_per_scale)])
        self.checkerboards, self.channels = checkerboards, channels

    def scale_shapes(self) -> list[tuple]:
        """The shape of the part factored out at each scale, the last being what remains."""
        height, width, channels = self.image_shape
        shapes = []
        for _ in range(self.num_scales - 1):
            height, width, channels = height // 2, width // 2, channels * 2
            shapes.append((height, width, channels))
        shapes.append((height, width, channels))
        return shapes

    def forward(self, x):
        h, log_det = logit_transform(x, self.alpha)
        batch = x.shape[0]
        parts = []
        for scale in range(self.num_scales):
            for coupling in self.checkerboards[scale]:
                h, delta = coupling.forward(h)
                log_det = log_det + delta
            if scale < self.num_scales - 1:
                h = squeeze(h)
                for coupling in self.channels[scale]:
                    h, delta = coupling.forward(h)
                    log_det = log_det + delta
                half = h.shape[-1] // 2
                parts.append(h[..., half:].reshape(batch, -1))
                h = h[..., :half]
        parts.append(h.reshape(batch, -1))
        return jnp.concatenate(parts, axis=-1), log_det

    def inverse(self, z):
        batch = z.shape[0]
        shapes = self.scale_shapes()
        sizes = [math.prod(s) for s in shapes]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        piece = lambda i: z[:, offsets[i]:offsets[i] + sizes[i]].reshape((batch,) + shapes[i])  # noqa: E731
        h = piece(self.num_scales - 1)
        for scale in reversed(range(self.num_scales)):
            if scale < self.num_scales - 1:
                h = jnp.concatenate([h, piece(scale)], axis=-1)
                for coupling in reversed(self.channels[scale]):
                    h = coupling.inverse(h)
                h = unsqueeze(h)
            for coupling in reversed(self.checkerboards[scale]):
                h = coupling.inverse(h)
        return inverse_logit_transform(h, self.alpha)

    def log_prob(self, x):
        """Exact log density [B] of x in [0, 1]^D, logit transform included."""
        z, log_det = self.forward(x)
        return standard_normal_log_density(z) + log_det

    def __call__(self, x):
        return self.forward(x)


def check_image_shape(image_shape: tuple, num_scales: int) -> None:
    factor = 2 ** (num_scales - 1)
    if num_scales < 1:
        raise ValueError(f"model.num_scales must be at least 1, got {num_scales}")
    if image_shape[0] % factor or image_shape[1] % factor:
        raise ValueError(f"model.num_scales={num_scales} needs image height and width divisible by {factor}, "
                         f"got {image_shape[0]}x{image_shape[1]}")
