"""The vocoder's test: rebuild held-out utterances from their log-mels, by WaveNet (fast generation)
and by Griffin-Lim from the same mels, and score both against the originals by the spectral
distances of aigc_jax/audio/distances.py.

Utterances are generated in groups of equal padded length (whole seconds of frames, so a test
split runs a few compiled shapes); the padding's mel frames are silence (the log-mel floor), and
every output is cut back to its utterance's length before it is scored.
"""
from __future__ import annotations

import math
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.audio import distances, griffin_lim, mulaw
from aigc_jax.families.wavenet import data as wave_data
from aigc_jax.families.wavenet.generation import generate
from aigc_jax.families.wavenet.model import WaveNet


def original(utterances: wave_data.Utterances, index: int) -> np.ndarray:
    return utterances.waveforms[index][1:]  # without the leading silence sample


def rounded_gaussian_entropy_bits(std: float) -> float:
    """Entropy in bits of round(N(0, std^2)) over the integers: the spread, in a 256-class model's
    bits per sample, of class noise with this standard deviation."""
    if std <= 0:
        return 0.0
    reach = int(10 * std) + 2  # ten standard deviations each side
    cdf = [0.5 * (1.0 + math.erf((k + 0.5) / (std * math.sqrt(2.0)))) for k in range(-reach - 1, reach + 1)]
    probs = [b - a for a, b in zip(cdf, cdf[1:]) if b > a]
    return -sum(p * math.log2(p) for p in probs)


def class_noise_resynthesis(utterances, indices, std: float, seed: int = 0) -> dict:
    """{index: waveform}: each original's mu-law classes plus rounded Gaussian noise of `std` classes,
    decoded: what a 256-class vocoder with a perfectly centred per-sample spread of that width
    would write (the spectral distances a sampling vocoder can reach at a given sharpness)."""
    rng, out = np.random.default_rng(seed), {}
    for i in indices:
        classes = np.asarray(mulaw.encode(original(utterances, i))).astype(np.int64)
        noise = np.rint(rng.normal(0.0, std, classes.shape)).astype(np.int64) if std > 0 else 0
        out[i] = np.asarray(mulaw.decode(np.clip(classes + noise, 0, mulaw.MU)))
    return out


def _padded_mels(utterances, indices, frames: int) -> np.ndarray:
    out = np.full((len(indices), frames, utterances.mels[0].shape[1]), wave_data.LOG_FLOOR, np.float32)
    for row, i in enumerate(indices):
        out[row, :len(utterances.mels[i])] = utterances.mels[i]
    return out


def by_padded_length(utterances, indices, frames_per_second: int, group: int) -> list:
    """Groups (padded frames, indices) of at most `group` utterances of one padded length."""
    lengths = defaultdict(list)
    for i in indices:
        lengths[-(-len(utterances.mels[i]) // frames_per_second) * frames_per_second].append(i)
    return [(frames, members[k:k + group]) for frames, members in sorted(lengths.items())
            for k in range(0, len(members), group)]


def wavenet_resynthesis(model: WaveNet, params, utterances, indices, data_config, seed: int = 0,
                        temperature: float = 1.0, group: int = 4) -> dict:
    """{index: waveform} generated from each utterance's log-mels (and speaker, if conditioned)."""
    if not model.mel_channels:
        raise ValueError("resynthesis needs a vocoder run (model.local_conditioning=True)")
    hop, out = data_config.hop, {}
    for frames, members in by_padded_length(utterances, indices, max(data_config.sample_rate // hop, 1), group):
        mel = jnp.asarray(_padded_mels(utterances, members, frames))
        speaker = jnp.asarray(utterances.speakers[members]) if model.num_speakers else None
        waves = np.asarray(generate(model, params, jax.random.key(seed), frames * hop, speaker=speaker, mel=mel,
                                    temperature=temperature))
        for row, i in enumerate(members):
            out[i] = waves[row, :len(original(utterances, i))]
    return out


def griffin_lim_resynthesis(utterances, indices, data_config, iterations: int = 100, group: int = 4) -> dict:
    """{index: waveform} by mel inversion and fast Griffin-Lim from the same log-mels."""
    s, out = wave_data.mel_settings(data_config), {}
    for frames, members in by_padded_length(utterances, indices, max(s["sample_rate"] // s["hop"], 1), group):
        mel = _padded_mels(utterances, members, frames + 1)  # a centred STFT of frames x hop samples has frames + 1
        waves = np.asarray(griffin_lim.waveform_from_log_mel(mel, frames * s["hop"], s["sample_rate"], s["n_fft"],
                                                             s["hop"], s["fmin"], s["fmax"], iterations))
        for row, i in enumerate(members):
            out[i] = waves[row, :len(original(utterances, i))]
    return out


def spectral_scores(utterances, resynthesised: dict, data_config, range_db: float = 80.0) -> dict:
    """Mean log-spectral distance and mel-cepstral distortion (dB) over the resynthesised utterances,
    spectra floored range_db below each original's peak."""
    s = wave_data.mel_settings(data_config)
    lsd, mcd = [], []
    for i, wave in resynthesised.items():
        ref = original(utterances, i)
        lsd.append(distances.log_spectral_distance(ref, wave, s["n_fft"], s["hop"], range_db))
        mcd.append(distances.mel_cepstral_distortion(ref, wave, s["sample_rate"], s["n_fft"], s["hop"], s["n_mels"],
                                                     s["fmin"], s["fmax"], order=min(24, s["n_mels"] - 1),
                                                     range_db=range_db))
    return {"lsd_db": float(np.mean(lsd)), "mcd_db": float(np.mean(mcd)), "lsd_sd": float(np.std(lsd)),
            "mcd_sd": float(np.std(mcd)), "count": len(lsd)}
