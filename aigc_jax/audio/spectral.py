"""Short-time Fourier transform and its inverse, mel filterbank and log-mel spectrograms in JAX.

Conventions (those of librosa's defaults and Tacotron 2's features):
  frames    centred: the signal is reflect-padded by n_fft // 2 on both sides, frame t covers
            samples [t hop - n_fft/2, t hop + n_fft/2); 1 + len // hop frames;
  window    periodic Hann of length n_fft;
  STFT      rfft of each windowed frame: [..., frames, n_fft // 2 + 1] complex;
  mel scale Slaney's (linear below 1 kHz, 3 / 200 mel per Hz; logarithmic above, 27 / ln 6.4
            mel per octave-ish), triangles between neighbouring centres, each scaled to unit
            area (2 / (f_right - f_left)), as librosa.filters.mel(htk=False, norm="slaney");
  log-mel   ln(max(mel magnitude, floor)), magnitudes (power 1), floor 1e-5.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15
_LOG_STEP = np.log(6.4) / 27.0


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window: 0.5 - 0.5 cos(2 pi k / n), k = 0..n-1."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def frame_count(num_samples: int, hop: int) -> int:
    return 1 + num_samples // hop


def stft(x, n_fft: int = 1024, hop: int = 256):
    """x [..., T] -> complex STFT [..., 1 + T // hop, n_fft // 2 + 1] (centred, periodic Hann)."""
    x = jnp.asarray(x, jnp.float32)
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"stft needs more than n_fft // 2 = {pad} samples for reflect padding, got {x.shape[-1]}")
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    num_frames = frame_count(x.shape[-1], hop)
    index = np.arange(num_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    frames = padded[..., index] * hann_window(n_fft)
    return jnp.fft.rfft(frames, axis=-1)


def istft(spectrum, length: int, n_fft: int = 1024, hop: int = 256):
    """The inverse of `stft`: [..., frames, n_fft // 2 + 1] complex -> [..., length] real.
    Overlap-add of the windowed inverse frames divided by the summed squared window (the least-
    squares signal of a modified STFT, Griffin and Lim 1984); the centring padding is cut off."""
    frames = jnp.fft.irfft(spectrum, n=n_fft, axis=-1) * hann_window(n_fft)
    num_frames = frames.shape[-2]
    total = n_fft + hop * (num_frames - 1)
    index = (np.arange(num_frames)[:, None] * hop + np.arange(n_fft)[None, :]).reshape(-1)
    batch = frames.shape[:-2]
    signal = jnp.zeros(batch + (total,), frames.dtype).at[..., index].add(frames.reshape(batch + (-1,)))
    norm = np.zeros(total, np.float32)
    np.add.at(norm, index, np.tile(hann_window(n_fft) ** 2, num_frames))
    signal = signal / np.maximum(norm, 1e-8)
    pad = n_fft // 2
    if total - pad < length:
        raise ValueError(f"{num_frames} frames of hop {hop} cover fewer than the {length} samples asked for")
    return signal[..., pad:pad + length]


def hz_to_mel(hz):
    """Slaney's mel scale."""
    hz = np.asarray(hz, np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, hz / _F_SP)


def mel_to_hz(mel):
    mel = np.asarray(mel, np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, mel * _F_SP)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 80, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters on the Slaney mel scale, unit area each."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"mel filterbank needs 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}, "
                         f"sample_rate={sample_rate}")
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (right - left))
    return weights.astype(np.float32)


def magnitude_spectrogram(x, n_fft: int = 1024, hop: int = 256):
    """|STFT| [..., frames, n_fft // 2 + 1]."""
    return jnp.abs(stft(x, n_fft, hop))


def log_mel_spectrogram(x, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
                        fmin: float = 0.0, fmax: float | None = None, floor: float = 1e-5):
    """ln(max(|STFT| @ mel filterbank, floor)): [..., frames, n_mels]."""
    mel = magnitude_spectrogram(x, n_fft, hop) @ mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return jnp.log(jnp.maximum(mel, floor))
