"""Sample-rate conversion by polyphase filtering (scipy.signal.resample_poly, a Kaiser-windowed
FIR low-pass at the lower Nyquist frequency)."""
from __future__ import annotations

import math

import numpy as np


def resample(waveform: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """waveform [T] at from_rate -> [about T to_rate / from_rate] at to_rate (float32)."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return np.asarray(waveform, np.float32)
    from scipy.signal import resample_poly
    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(np.asarray(waveform, np.float64), to_rate // g, from_rate // g).astype(np.float32)
