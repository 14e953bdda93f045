"""Waveforms from log-mel spectrograms without a neural vocoder: the baseline a vocoder must beat.

  1. mel -> linear magnitude: the non-negative least-squares magnitude S >= 0 minimising
     ||S M - mel||^2 for the mel filterbank M [bins, mels], by multiplicative updates
     (Lee and Seung 2001: S <- S * (mel M^T) / (S M M^T), which keep S >= 0 and do not increase
     the error), started from the clipped pseudo-inverse;
  2. Griffin-Lim (1984) with Perraudin et al.'s (2013) momentum ("fast Griffin-Lim"): alternate
     between the STFTs of consistent signals and the given magnitude, keeping only the phase.

Both run as jit-compiled loops in JAX on the STFT conventions of aigc_jax/audio/spectral.py.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.audio import spectral


@functools.partial(jax.jit, static_argnames=("iterations",))
def mel_to_magnitude(mel_magnitude, filterbank, iterations: int = 200):
    """mel magnitudes [..., frames, n_mels] (not their log) and M [bins, n_mels] -> S [..., frames, bins] >= 0."""
    gram = filterbank @ filterbank.T  # [bins, bins]
    target = mel_magnitude @ filterbank.T  # [..., frames, bins]
    start = jnp.maximum(mel_magnitude @ jnp.linalg.pinv(filterbank), 1e-8)

    def update(_, s):
        return s * target / jnp.maximum(s @ gram, 1e-12)

    return jax.lax.fori_loop(0, iterations, update, start)


@functools.partial(jax.jit, static_argnames=("length", "n_fft", "hop", "iterations"))
def griffin_lim(magnitude, length: int, n_fft: int, hop: int, iterations: int = 100, momentum: float = 0.99,
                seed: int = 0):
    """A waveform [..., length] whose STFT magnitude approximates `magnitude` [..., frames, bins]."""
    angles = jax.random.uniform(jax.random.key(seed), magnitude.shape, minval=0.0, maxval=2 * np.pi)
    spectrum = magnitude * jnp.exp(1j * angles)
    previous = jnp.zeros_like(spectrum)

    def update(_, carry):
        spectrum, previous = carry
        projected = spectral.stft(spectral.istft(spectrum, length, n_fft, hop), n_fft, hop)
        accelerated = projected + momentum * (projected - previous)
        phase = accelerated / jnp.maximum(jnp.abs(accelerated), 1e-12)
        return magnitude * phase, projected

    spectrum, _ = jax.lax.fori_loop(0, iterations, update, (spectrum, previous))
    return spectral.istft(spectrum, length, n_fft, hop)


def waveform_from_log_mel(log_mel, length: int, sample_rate: int, n_fft: int, hop: int, fmin: float = 0.0,
                          fmax: float | None = None, iterations: int = 100, seed: int = 0):
    """log-mel [..., frames, n_mels] (natural log of magnitudes, as spectral.log_mel_spectrogram) ->
    waveform [..., length] by the non-negative mel inversion and fast Griffin-Lim."""
    log_mel = jnp.asarray(log_mel, jnp.float32)
    bank = jnp.asarray(spectral.mel_filterbank(sample_rate, n_fft, log_mel.shape[-1], fmin, fmax))
    magnitude = mel_to_magnitude(jnp.exp(log_mel), bank)
    return griffin_lim(magnitude, length, n_fft, hop, iterations, seed=seed)
