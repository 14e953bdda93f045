"""WaveNet (van den Oord et al. 2016): raw audio one sample at a time.

  input     the previous samples: mu-law classes [B, T] through an embedding (= a 1x1 convolution
            of their one-hot vectors; categorical output) or the waveform values [B, T]
            (mixture-of-logistics output); a causal convolution of width 2 to `residual` channels;
  layers    for each dilation d in `dilations` (1, 2, ..., 512, repeated): a causal convolution of
            width 2 and dilation d, h_t = W_now x_t + W_past x_{t-d} + b, to 2 x `gate` channels,
            plus the conditioning; the gated unit z = tanh(h_f) * sigmoid(h_g); a 1x1 convolution of
            z to `skip` channels and one to `residual` channels added to x (x <- (x + r) / sqrt 2);
  output    relu(sum of skips) -> 1x1 -> relu -> 1x1: 256 logits (categorical over mu-law classes)
            or 3 K mixture parameters (discretised logistic mixture, PixelCNN++ / Parallel WaveNet);
  global    conditioning on the speaker: an embedding, projected per layer to 2 x gate (no bias);
  local     conditioning on log-mel frames [B, F, n_mels], standardised by fixed constants
            ((mel - mel_shift) / mel_scale: raw log-mels sit near -5 with a spread of 2.5, which
            would saturate the tanh units below), then a width-3 convolution, then transposed
            convolutions (kernel 2 x stride, no overlap beyond one frame) whose strides multiply
            to the hop, giving one vector per sample, projected per layer to 2 x gate.

Every causal convolution of width 2 is one matrix product of the pair [x_t, x_{t-d}], and each
layer takes its past input as an argument: the full forward pass hands it the input
shifted by d; fast generation (Paine et al. 2016, aigc_jax/families/wavenet/generation.py) hands
it the value its queue kept from d steps ago. The same parameters and the same code run both.
Receptive field: 1 + 1 + sum(dilations) samples (the input convolution and every layer).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

QUANTIZATION = 256


def receptive_field(dilations: Sequence[int]) -> int:
    return 2 + sum(dilations)


def dilation_cycle(cycles: int, max_dilation: int = 512) -> tuple:
    """(1, 2, 4, ..., max_dilation) repeated `cycles` times."""
    if max_dilation < 1 or max_dilation & (max_dilation - 1):
        raise ValueError(f"max_dilation must be a power of two, got {max_dilation}")
    return tuple(2 ** i for i in range(int(math.log2(max_dilation)) + 1)) * cycles


def shift_right(x: jax.Array, d: int) -> jax.Array:
    """x [B, T, C] -> x_{t-d} (zeros before the start)."""
    return jnp.pad(x, ((0, 0), (d, 0), (0, 0)))[:, :x.shape[1]]


class CausalPair(nn.Module):
    """A causal convolution of width 2: [x_t, x_past] W + b (one matrix product for both taps)."""
    features: int

    @nn.compact
    def __call__(self, x, x_past):
        return nn.Dense(self.features, name="taps")(jnp.concatenate([x, x_past], axis=-1))


class ResidualLayer(nn.Module):
    residual: int
    gate: int
    skip: int

    @nn.compact
    def __call__(self, x, x_past, cond: Optional[jax.Array]):
        """x, x_past [..., residual]; cond [..., 2 gate] or None -> (new x, skip contribution)."""
        h = CausalPair(2 * self.gate, name="dilated")(x, x_past)
        if cond is not None:
            h = h + cond
        filt, gate = jnp.split(h, 2, axis=-1)
        z = jnp.tanh(filt) * jax.nn.sigmoid(gate)
        out = nn.Dense(self.skip + self.residual, name="skip_residual")(z)  # both 1x1 convolutions at once
        skip, residual = out[..., :self.skip], out[..., self.skip:]
        return (x + residual) * math.sqrt(0.5), skip


class MelUpsampler(nn.Module):
    """log-mel frames [B, F, n_mels] -> [B, F * prod(strides), channels]."""
    channels: int
    strides: tuple
    shift: float = 0.0
    scale: float = 1.0

    @nn.compact
    def __call__(self, mel):
        h = nn.Conv(self.channels, (3,), padding="SAME", name="frames")((mel - self.shift) / self.scale)
        for i, s in enumerate(self.strides):
            # A transposed convolution with kernel 2s and stride s: output block t (s samples) gets
            # frame t through one half of the kernel and frame t - 1 through the other.
            b, f, c = h.shape
            now = nn.Dense(s * self.channels, name=f"up{i}_now")(h)
            past = nn.Dense(s * self.channels, use_bias=False, name=f"up{i}_past")(shift_right(h, 1))
            h = jnp.tanh((now + past).reshape(b, f * s, self.channels))
        return h


class WaveNet(nn.Module):
    dilations: tuple = dilation_cycle(1)
    residual: int = 64
    gate: int = 64
    skip: int = 128
    head: int = 128
    output: str = "categorical"  # categorical | logistic_mixture
    mixtures: int = 10
    num_speakers: int = 0  # > 0: global conditioning on a speaker id
    speaker_dim: int = 16
    mel_channels: int = 0  # > 0: local conditioning on log-mel frames
    upsample_strides: tuple = (16, 16)
    cond_channels: int = 64
    mel_shift: float = 0.0
    mel_scale: float = 1.0

    def setup(self):
        self.embed = nn.Embed(QUANTIZATION, self.residual) if self.output == "categorical" else None
        self.scalar_in = nn.Dense(self.residual) if self.output != "categorical" else None
        self.input_conv = CausalPair(self.residual)
        self.layers = [ResidualLayer(self.residual, self.gate, self.skip) for _ in self.dilations]
        # Each layer's projection of the conditioning to 2 x gate, all layers in one matrix product.
        per_layer = 2 * self.gate * len(self.dilations)
        if self.num_speakers:
            self.speaker_embed = nn.Embed(self.num_speakers, self.speaker_dim)
            self.speaker_proj = nn.Dense(per_layer, use_bias=False)
        if self.mel_channels:
            self.upsampler = MelUpsampler(self.cond_channels, tuple(self.upsample_strides), self.mel_shift,
                                          self.mel_scale)
            self.mel_proj = nn.Dense(per_layer, use_bias=False)
        self.head_hidden = nn.Dense(self.head)
        out = QUANTIZATION if self.output == "categorical" else 3 * self.mixtures
        self.head_out = nn.Dense(out)

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_strides)

    def features(self, inputs):
        """Samples [B, T] (classes or values) -> [B, T, residual]."""
        if self.output == "categorical":
            return self.embed(inputs)
        return self.scalar_in(inputs[..., None].astype(jnp.float32))

    def conditioning(self, speaker=None, mel=None, length: Optional[int] = None):
        """Per-layer conditioning: a list (one per layer) of [B, 1 or T, 2 gate] arrays or Nones.
        Local conditioning needs mel [B, F, n_mels] covering F * hop >= length samples."""
        layers = len(self.dilations)
        conds = None
        if self.num_speakers:
            if speaker is None:
                raise ValueError("this WaveNet is conditioned on speakers: pass speaker ids [B]")
            conds = self.speaker_proj(self.speaker_embed(speaker)[:, None, :])  # [B, 1, layers 2 gate]
        if self.mel_channels:
            if mel is None:
                raise ValueError("this WaveNet is a vocoder: pass log-mel frames [B, F, n_mels]")
            c = self.upsampler(mel)
            if length is not None:
                if c.shape[1] < length:
                    raise ValueError(f"{mel.shape[1]} mel frames give {c.shape[1]} samples of conditioning, "
                                     f"fewer than the {length} asked for")
                c = c[:, :length]
            local = self.mel_proj(c)  # [B, T, layers 2 gate]
            conds = local if conds is None else local + conds
        if conds is None:
            return [None] * layers
        return jnp.split(conds, layers, axis=-1)

    def head_logits(self, skip_sum):
        return self.head_out(nn.relu(self.head_hidden(nn.relu(skip_sum))))

    def __call__(self, inputs, speaker=None, mel=None):
        """Teacher-forced: inputs [B, T] are the samples x_0..x_{T-1}; returns the predictions of
        x_1..x_T, [B, T, 256 or 3K] (position t has seen inputs up to t)."""
        conds = self.conditioning(speaker, mel, inputs.shape[1])
        x = self.features(inputs)
        x = self.input_conv(x, shift_right(x, 1))
        skips = 0.0
        for layer, d, cond in zip(self.layers, self.dilations, conds):
            x, s = layer(x, shift_right(x, d), cond)
            skips = skips + s
        return self.head_logits(skips)

    def step(self, sample, past_input, pasts, conds):
        """One sample of fast generation. sample [B] (class or value) at time t; past_input the
        input features at t-1 [B, residual]; pasts: each layer's input at t - d [B, residual];
        conds: each layer's conditioning at t ([B, 2 gate] or None). Returns (prediction of
        x_{t+1} [B, out], input features at t, each layer's input at t)."""
        feature = self.features(sample[:, None])[:, 0]
        x = self.input_conv(feature, past_input)
        layer_inputs, skips = [], 0.0
        for layer, past, cond in zip(self.layers, pasts, conds):
            layer_inputs.append(x)
            x, s = layer(x, past, cond)
            skips = skips + s
        return self.head_logits(skips), feature, layer_inputs
