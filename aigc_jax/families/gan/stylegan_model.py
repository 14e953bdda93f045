"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), small.

Generator = mapping network + synthesis network:
  mapping    z [N, z_dim] -> w [N, w_dim]: z normalised to unit second moment, `mapping_layers`
             (8) dense layers with leaky ReLU, learning-rate multiplier `mapping_lr_mul` (0.01);
             0 layers is the StyleGAN paper's "mapping depth 0" ablation (Table 4): w = normalised z.
  synthesis  ws [N, num_ws, w_dim] -> images [N, S, S, C]: a learned 4x4 constant, then per
             resolution 4, 8, ..., S two modulated 3x3 convolutions (one at 4x4), each followed by
             per-pixel noise times a learned strength (initially 0), a bias and leaky ReLU; a
             modulated 1x1 toRGB (no demodulation) per resolution whose outputs are summed after
             upsampling (the "skip" generator). num_ws = 2 log2(S) - 2; the toRGB of a block
             shares the w of the next block's first convolution, as in the paper's code.
Modulation / demodulation (StyleGAN2 eq. 1-3): s = affine(w) (bias initialised to 1);
  w'_ijk = s_i w_ijk,  w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps).
Computed as scale-input, shared convolution, scale-output (the paper's non-fused form, equal to
the per-sample weights by linearity).
Equalised learning rate (Karras et al. 2018) everywhere: weights stored N(0, 1) / lr_mul and
multiplied by lr_mul / sqrt(fan_in) at run time; leaky ReLU (0.2) outputs scaled by sqrt(2).

Discriminator (residual): fromRGB 1x1, per resolution S..8 a block of two 3x3 convolutions
then 2x downsampling, plus a skip path (downsample, 1x1 convolution without bias), the sum
times 1/sqrt(2); at 4x4 the minibatch standard deviation layer (group 4, 1 feature), a 3x3
convolution, a dense layer and a linear output.

Departures from the paper's code, for a small CPU-sized model: upsampling is bilinear (the
[1,3,3,1] filter of the paper, applied by jax.image.resize) before a plain 3x3 convolution, not
a transposed convolution followed by a blur; downsampling is 2x2 average pooling after the
convolution, not a blur then a strided convolution. Channel counts are min(channel_base / res,
channel_max), as in the paper, with a small base.
"""
from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from aigc_jax.nn.conv import conv2d  # im2col: XLA:CPU ran lax's second-order conv gradients ~50x slower in a cond

LEAKY_GAIN = math.sqrt(2.0)


def leaky(x: jax.Array) -> jax.Array:
    """Leaky ReLU (slope 0.2) scaled by sqrt(2), so unit-variance inputs keep about unit variance."""
    return nn.leaky_relu(x, 0.2) * LEAKY_GAIN


def normalize_second_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / sqrt(mean(x^2) over the last axis): the mapping network's input normalisation."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def upsample2x(x: jax.Array) -> jax.Array:
    """Bilinear 2x upsampling of [N, H, W, C] (half-pixel centres: the separable [1,3,3,1]/4 filter)."""
    n, h, w, c = x.shape
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear")


def downsample2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling of [N, H, W, C]."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def normal_init(lr_mul: float):
    return lambda key, shape: jax.random.normal(key, shape) / lr_mul


class EqualDense(nn.Module):
    """Dense layer with equalised learning rate: y = x (W lr_mul / sqrt(fan_in)) + b lr_mul."""
    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", normal_init(self.lr_mul), (x.shape[-1], self.features))
        y = x @ (kernel * (self.lr_mul / math.sqrt(x.shape[-1])))
        if self.use_bias:
            # float32 explicitly: a Python fill value makes a weakly typed array, and the loop compiles
            # its step for the strongly typed state it restores (tests/test_family_contract.py)
            bias = self.param("bias", lambda key, shape: jnp.full(shape, self.bias_init, jnp.float32), (self.features,))
            y = y + bias * self.lr_mul
        return y


class EqualConv(nn.Module):
    """k x k convolution (SAME padding) with equalised learning rate."""
    features: int
    kernel_size: int = 3
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", normal_init(1.0), (k, k, x.shape[-1], self.features))
        y = conv2d(x, kernel * (1.0 / math.sqrt(k * k * x.shape[-1])))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def modulated_conv(x: jax.Array, kernel: jax.Array, styles: jax.Array, *, demodulate: bool,
                   up: bool = False, eps: float = 1e-8) -> jax.Array:
    """StyleGAN2's modulated convolution, per sample n: kernel'[.., i, o] = styles[n, i] kernel[.., i, o],
    demodulated by 1 / sqrt(sum over (k, k, i) of kernel'^2 + eps) per output channel o.
    x [N, H, W, I], kernel [k, k, I, O] (already scaled), styles [N, I] -> [N, H', W', O]
    (H' = 2H when `up`: bilinear upsampling between the modulation and the convolution)."""
    h = x * styles[:, None, None, :].astype(x.dtype)
    if up:
        h = upsample2x(h)
    y = conv2d(h, kernel)
    if demodulate:
        # sum_{k,k,i} (s_i w_kki o)^2 = sum_i s_i^2 (sum_kk w_kkio^2)
        energy = jnp.square(styles) @ jnp.sum(jnp.square(kernel), axis=(0, 1))  # [N, O]
        y = y * jax.lax.rsqrt(energy + eps)[:, None, None, :].astype(y.dtype)
    return y


class ModulatedConv(nn.Module):
    """A modulated k x k convolution whose style comes from w through an affine layer (bias 1)."""
    features: int
    kernel_size: int = 3
    demodulate: bool = True
    up: bool = False

    @nn.compact
    def __call__(self, x, w):
        k, fan_in = self.kernel_size, self.kernel_size * self.kernel_size * x.shape[-1]
        styles = EqualDense(x.shape[-1], bias_init=1.0, name="affine")(w)  # [N, I]
        kernel = self.param("kernel", normal_init(1.0), (k, k, x.shape[-1], self.features))
        return modulated_conv(x, kernel * (1.0 / math.sqrt(fan_in)), styles, demodulate=self.demodulate, up=self.up)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution, + noise * strength, + bias, leaky ReLU."""
    features: int
    up: bool = False
    use_noise: bool = True

    @nn.compact
    def __call__(self, x, w):
        y = ModulatedConv(self.features, 3, demodulate=True, up=self.up, name="conv")(x, w)
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            noise = jax.random.normal(self.make_rng("noise"), y.shape[:3] + (1,), y.dtype)
            y = y + noise * strength
        return leaky(y + self.param("bias", nn.initializers.zeros, (self.features,)))


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to the image channels, no demodulation, + bias, linear."""
    channels: int

    @nn.compact
    def __call__(self, x, w):
        y = ModulatedConv(self.channels, 1, demodulate=False, name="conv")(x, w)
        return y + self.param("bias", nn.initializers.zeros, (self.channels,))


def resolutions(image_size: int) -> list[int]:
    """[4, 8, ..., image_size]; image_size must be a power of two >= 4."""
    if image_size < 4 or image_size & (image_size - 1):
        raise ValueError(f"StyleGAN2 needs a power-of-two image size >= 4, got {image_size}")
    return [2 ** k for k in range(2, int(math.log2(image_size)) + 1)]


def num_ws(image_size: int) -> int:
    """How many w vectors the synthesis network consumes: 2 log2(S) - 2 (one per convolution, + the last toRGB)."""
    return 2 * len(resolutions(image_size))


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    return max(1, min(channel_base // res, channel_max))


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]."""
    w_dim: int = 128
    num_layers: int = 8
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z):
        h = normalize_second_moment(z)
        for i in range(self.num_layers):
            h = leaky(EqualDense(self.w_dim, lr_mul=self.lr_mul, name=f"dense{i}")(h))
        return h


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, S, S, channels] (linear output; data in [-1, 1])."""
    image_size: int = 32
    channels: int = 3
    channel_base: int = 1024
    channel_max: int = 64
    use_noise: bool = True

    @nn.compact
    def __call__(self, ws):
        res_list = resolutions(self.image_size)
        if ws.shape[1] != num_ws(self.image_size):
            raise ValueError(f"synthesis at {self.image_size}x{self.image_size} takes {num_ws(self.image_size)} ws, "
                             f"got {ws.shape[1]}")
        width = lambda res: channels_at(res, self.channel_base, self.channel_max)  # noqa: E731
        const = self.param("const", normal_init(1.0), (4, 4, width(4)))
        x = jnp.broadcast_to(const, (ws.shape[0],) + const.shape)
        x = SynthesisLayer(width(4), use_noise=self.use_noise, name="b4_conv1")(x, ws[:, 0])
        image = ToRGB(self.channels, name="b4_torgb")(x, ws[:, 1])
        index = 1
        for res in res_list[1:]:
            x = SynthesisLayer(width(res), up=True, use_noise=self.use_noise, name=f"b{res}_conv0")(x, ws[:, index])
            x = SynthesisLayer(width(res), use_noise=self.use_noise, name=f"b{res}_conv1")(x, ws[:, index + 1])
            image = upsample2x(image) + ToRGB(self.channels, name=f"b{res}_torgb")(x, ws[:, index + 2])
            index += 2
        return image


class StyleGenerator(nn.Module):
    """The mapping and synthesis networks; `mapping(z)` and `synthesis(ws)` are applied separately
    (style mixing, truncation and path-length regularisation act between them)."""
    image_size: int = 32
    channels: int = 3
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    channel_base: int = 1024
    channel_max: int = 64
    use_noise: bool = True

    def setup(self):
        self.mapping_net = MappingNetwork(self.w_dim, self.mapping_layers, self.mapping_lr_mul)
        self.synthesis_net = SynthesisNetwork(self.image_size, self.channels, self.channel_base, self.channel_max,
                                              self.use_noise)

    @property
    def num_ws(self) -> int:
        return num_ws(self.image_size)

    def mapping(self, z):
        return self.mapping_net(z)

    def synthesis(self, ws):
        return self.synthesis_net(ws)

    def __call__(self, z):
        w = self.mapping(z)
        return self.synthesis(jnp.repeat(w[:, None], self.num_ws, axis=1))


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
    """Minibatch standard deviation (Karras et al. 2018, as in StyleGAN2): within groups of
    `group_size` samples (sample n is in group n mod (N / G)), the standard deviation over the
    group of each feature, averaged over features and pixels per feature slice, appended as
    `num_features` constant channels. x [N, H, W, C] -> [N, H, W, C + num_features]."""
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch stddev: batch {n} is not divisible by the group size {g}")
    y = x.reshape(g, n // g, h, w, num_features, c // num_features).astype(jnp.float32)
    y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [N/G, H, W, F, C/F]
    y = jnp.mean(y, axis=(1, 2, 4))  # [N/G, F]
    y = jnp.tile(y, (g, 1))[:, None, None, :]  # [N, 1, 1, F]: row n belongs to group n mod N/G
    return jnp.concatenate([x, jnp.broadcast_to(y, (n, h, w, num_features)).astype(x.dtype)], axis=-1)


class ResidualDiscriminator(nn.Module):
    """images [N, S, S, C] -> logits [N]."""
    image_size: int = 32
    channel_base: int = 1024
    channel_max: int = 64
    mbstd_group: int = 4

    @nn.compact
    def __call__(self, x):
        width = lambda res: channels_at(res, self.channel_base, self.channel_max)  # noqa: E731
        res_list = resolutions(self.image_size)
        h = leaky(EqualConv(width(self.image_size), 1, name="fromrgb")(x))
        for res in reversed(res_list[1:]):
            skip = EqualConv(width(res // 2), 1, use_bias=False, name=f"b{res}_skip")(downsample2x(h))
            h = leaky(EqualConv(width(res), 3, name=f"b{res}_conv0")(h))
            h = downsample2x(leaky(EqualConv(width(res // 2), 3, name=f"b{res}_conv1")(h)))
            h = (h + skip) * math.sqrt(0.5)
        if self.mbstd_group > 1:
            h = minibatch_stddev(h, self.mbstd_group)
        h = leaky(EqualConv(width(4), 3, name="b4_conv")(h))
        h = leaky(EqualDense(width(4), name="b4_dense")(h.reshape((h.shape[0], -1))))
        return EqualDense(1, name="out")(h)[:, 0]


def truncate(ws: jax.Array, w_avg: jax.Array, psi: float, cutoff: Optional[int] = None) -> jax.Array:
    """The truncation trick: w' = w_avg + psi (w - w_avg) on layers [0, cutoff) (all when None).
    ws [N, num_ws, w_dim], w_avg [w_dim]."""
    truncated = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return truncated
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, truncated, ws)


def mix_styles(ws_a: jax.Array, ws_b: jax.Array, cutoff) -> jax.Array:
    """Style mixing: layers [0, cutoff) from ws_a, layers [cutoff, num_ws) from ws_b. cutoff: an int
    or a traced scalar (cutoff = num_ws keeps ws_a whole)."""
    layer = jnp.arange(ws_a.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, ws_a, ws_b)
