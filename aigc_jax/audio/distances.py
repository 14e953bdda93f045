"""Spectral distances between a resynthesised waveform and its original, frame by frame (the two
are time-aligned: a vocoder rebuilds the audio its mels came from, so no alignment is needed).

  log-spectral distance (LSD, dB): per frame sqrt(mean_k (10 log10 P_k - 10 log10 P'_k)^2) over
      the STFT power bins; the mean over frames.
  mel-cepstral distortion (MCD, dB): the cepstrum of the natural-log magnitudes L_k of N mel
      bands, c_d = (1 / N) sum_k L_k cos(pi d (k + 1/2) / N), so that L_k = c_0 + 2 sum_d c_d
      cos(pi d (k + 1/2) / N) (the cosine series SPTK's mel-cepstra also are, whose scale the
      usual formula assumes); per frame (10 / ln 10) sqrt(2 sum_{d=1}^{D} (c_d - c'_d)^2), c_0
      (the frame's level) left out as usual; the mean over frames. The warping is the mel
      filterbank's rather than SPTK's all-pass one, so values compare across our own rows first.

Both floor the spectra of both signals at `range_db` below the reference's largest value (so a
digitally silent band of the original does not turn faint noise into tens of dB of error: the
floor plays the part of the ear's threshold), and both average over the reference's speech
frames, those within `speech_db` of its loudest frame.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from aigc_jax.audio import spectral

MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)


def speech_frames(reference_power: np.ndarray, speech_db: float = 50.0) -> np.ndarray:
    """Boolean [frames]: the frames whose energy is within speech_db of the loudest one."""
    energy = 10.0 * np.log10(np.maximum(reference_power.sum(-1), 1e-20))
    return energy >= energy.max() - speech_db


def _checked(reference, other):
    reference, other = np.asarray(reference, np.float32), np.asarray(other, np.float32)
    if reference.shape != other.shape or reference.ndim != 1:
        raise ValueError(f"spectral distances compare two waveforms of one length, got {reference.shape} and {other.shape}")
    return reference, other


def _floored_db(reference, other, range_db: float):
    """20 log10 of two magnitude arrays, both floored at range_db below the reference's maximum."""
    floor = max(float(reference.max()), 1e-12) * 10.0 ** (-range_db / 20.0)
    return 20.0 * np.log10(np.maximum(reference, floor)), 20.0 * np.log10(np.maximum(other, floor))


def log_spectral_distance(reference, other, n_fft: int = 800, hop: int = 200, range_db: float = 80.0,
                          speech_db: float = 50.0) -> float:
    reference, other = _checked(reference, other)
    m_ref = np.asarray(spectral.magnitude_spectrogram(reference, n_fft, hop), np.float64)
    m_other = np.asarray(spectral.magnitude_spectrogram(other, n_fft, hop), np.float64)
    db_ref, db_other = _floored_db(m_ref, m_other, range_db)
    diff = db_ref - db_other
    per_frame = np.sqrt(np.mean(diff ** 2, axis=-1))
    return float(per_frame[speech_frames(m_ref ** 2, speech_db)].mean())


def mel_cepstrum(log_mel: np.ndarray, order: int) -> np.ndarray:
    """[frames, n_mels] natural-log mel magnitudes -> c_0..c_order [frames, order + 1]."""
    bands = log_mel.shape[-1]
    if order >= bands:
        raise ValueError(f"cepstral order {order} needs more than {order} mel bands, got {bands}")
    # scipy's unnormalised DCT-II is 2 sum_k L_k cos(pi d (k + 1/2) / N).
    return scipy.fft.dct(np.asarray(log_mel, np.float64), type=2, axis=-1)[..., :order + 1] / (2 * bands)


def cepstral_distortion_per_frame(log_mel_reference, log_mel_other, order: int = 24) -> np.ndarray:
    """MCD in dB of each frame [frames] between two [frames, n_mels] natural-log mel magnitudes."""
    c_ref, c_other = mel_cepstrum(log_mel_reference, order), mel_cepstrum(log_mel_other, order)
    return MCD_SCALE * np.sqrt(np.sum((c_ref[..., 1:] - c_other[..., 1:]) ** 2, axis=-1))


def mel_cepstral_distortion(reference, other, sample_rate: int, n_fft: int = 800, hop: int = 200,
                            n_mels: int = 80, fmin: float = 0.0, fmax: float | None = None, order: int = 24,
                            range_db: float = 80.0, speech_db: float = 50.0) -> float:
    reference, other = _checked(reference, other)
    bank = spectral.mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    m_ref = np.asarray(spectral.magnitude_spectrogram(reference, n_fft, hop), np.float64)
    m_other = np.asarray(spectral.magnitude_spectrogram(other, n_fft, hop), np.float64)
    db_ref, db_other = _floored_db(m_ref @ bank, m_other @ bank, range_db)
    to_ln = np.log(10.0) / 20.0  # dB of magnitude -> natural log
    per_frame = cepstral_distortion_per_frame(db_ref * to_ln, db_other * to_ln, order)
    return float(per_frame[speech_frames(m_ref ** 2, speech_db)].mean())
