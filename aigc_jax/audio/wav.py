"""WAV files: 16-bit PCM read and write with the standard library's `wave` (mono or the mean of
the channels on read), float waveforms in [-1, 1]."""
from __future__ import annotations

import os
import wave

import numpy as np


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """(float32 mono waveform in [-1, 1], sample rate) of an 8-, 16- or 32-bit PCM WAV file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no WAV file at {path!r}")
    try:
        with wave.open(path, "rb") as f:
            channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise ValueError(f"{path!r} is not a readable PCM WAV file: {err}") from err
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path!r}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    return samples.reshape(-1, channels).mean(axis=1), rate


def write_wav(path: str, waveform, sample_rate: int) -> str:
    """Writes a mono float waveform (clipped to [-1, 1]) as 16-bit PCM; returns the path."""
    samples = np.asarray(waveform, np.float32).reshape(-1)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with wave.open(tmp, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())
    os.replace(tmp, path)
    return path
