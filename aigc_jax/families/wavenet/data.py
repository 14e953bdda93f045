"""WaveNet's data: speech utterances (aigc_jax/data/speech.py or a WAV folder of yours), their
log-mel frames, and random training crops.

A crop of `crop_frames` mel frames covers samples [f0 hop, (f0 + crop_frames) hop) of an
utterance (frame f is centred on sample f hop); the model reads the samples before each target
(the one before the crop is its first input) and predicts the crop's samples, with the crop's
frames as local conditioning and the utterance's speaker as global conditioning.

Each crop is read inside a window that starts `history` frames earlier (at the utterance's
start, if that is nearer) and carries one mel frame beyond it (the log-mel floor past the
utterance's end); only the crop's own samples count in the loss (`counted`). With history
covering the receptive field, every counted sample sees what fast generation over the whole
utterance sees: real samples and frames before it, not the zeros a bare crop is padded with.
Utterances shorter than one window are padded with silence. Training crops are a pure function
of (seed, step); the evaluation crops are fixed (the middle crop of each held-out utterance).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import numpy as np

from aigc_jax.audio import mulaw
from aigc_jax.audio.spectral import log_mel_spectrogram
from aigc_jax.data import speech

LOG_FLOOR = float(np.log(1e-5))  # spectral.log_mel_spectrogram's floor: the log-mel of silence


@dataclass
class Utterances:
    """Waveforms padded to whole frames (+1 sample of silence in front), their log-mels and speakers."""
    waveforms: list  # float32 [1 + frames * hop]: a leading 0 (the input before the first sample)
    mels: list  # float32 [frames, n_mels]
    speakers: np.ndarray
    texts: list
    description: str


def mel_settings(data_config) -> dict:
    d = data_config
    return dict(sample_rate=d.sample_rate, n_fft=d.n_fft, hop=d.hop, n_mels=d.n_mels, fmin=d.fmin,
                fmax=d.fmax or None)


def log_mel(waveform: np.ndarray, data_config) -> np.ndarray:
    """[frames, n_mels] log-mel of a waveform (frames = len // hop, the centred frames that lie in it).
    The waveform is zero-padded to whole seconds first, so a corpus of many lengths runs a few
    compiled shapes instead of one per utterance (the frames' values change only within half a
    window of the end, where the padding replaces the reflection)."""
    s = mel_settings(data_config)
    frames = len(waveform) // s["hop"]
    second = s["sample_rate"]
    padded = np.zeros(-(-len(waveform) // second) * second, np.float32)
    padded[:len(waveform)] = waveform
    mel = _log_mel_jit(padded, **s)
    return np.asarray(mel)[:frames]


@functools.partial(jax.jit, static_argnames=("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax"))
def _log_mel_jit(waveform, *, sample_rate, n_fft, hop, n_mels, fmin, fmax):
    return log_mel_spectrogram(waveform, sample_rate, n_fft, hop, n_mels, fmin, fmax)


def prepare(items: speech.SpeechSet, data_config, min_frames: int) -> Utterances:
    hop = data_config.hop
    waveforms, mels = [], []
    for wave in items.waveforms:
        frames = max(len(wave) // hop, min_frames)
        padded = np.zeros(frames * hop, np.float32)
        padded[:min(len(wave), frames * hop)] = wave[:frames * hop]
        mels.append(log_mel(padded, data_config).astype(np.float32))
        waveforms.append(np.concatenate([[0.0], padded]).astype(np.float32))
    return Utterances(waveforms, mels, np.asarray(items.speakers, np.int32), list(items.texts), items.description)


def load_split(data_config, split: str, count: int, seed: int, min_frames: int, progress: bool = True):
    d = data_config
    if d.path:
        items = speech.load_wav_folder(d.path, d.sample_rate)
        cut = np.array([speech.split_of(t, d.validation_fraction, d.test_fraction) == split for t in items.texts])
        if not cut.any():
            raise speech.DataError(f"no recording of {d.path!r} falls in the {split} split (split by transcript)")
        items = speech.SpeechSet([w for w, c in zip(items.waveforms, cut) if c],
                                 [t for t, c in zip(items.texts, cut) if c], [""] * int(cut.sum()),
                                 items.speakers[cut], items.sample_rate, f"{items.description}, {split} part")
    else:
        items = speech.make_corpus(split, count, seed=seed, sample_rate=d.sample_rate, text_path=d.text_path,
                                   progress=progress)
    return prepare(items, data_config, min_frames)


def history_frames(requested: int, receptive_field: int, hop: int, upsample_layers: int) -> int:
    """data.history_frames: -1 means enough whole frames for every counted sample to see real context.
    A sample's prediction reads the receptive_field - 1 samples before it and the conditioning
    at those samples, which in turn reads the mel frames the upsampler reaches back to (one for
    its width-3 convolution, at most one per transposed convolution): the two reaches add."""
    if requested >= 0:
        return requested
    return -(-(receptive_field - 1) // hop) + 1 + upsample_layers


def crop(utterances: Utterances, index: int, first_frame: int, frames: int, hop: int, history: int = 0):
    """(inputs [W hop], targets [W hop], mel [W + 1, n_mels], speaker, counted [W hop]) of the window of
    W = history + frames frames that ends with the crop; inputs are classes or values of the
    samples before each target, `counted` is 1 on the crop's own samples."""
    width = history + frames
    start = max(first_frame - history, 0)
    wave, mels = utterances.waveforms[index], utterances.mels[index]
    segment = wave[start * hop:start * hop + width * hop + 1]  # the sample before the window, then the window
    mel = np.full((width + 1, mels.shape[1]), LOG_FLOOR, np.float32)
    within = mels[start:start + width + 1]
    mel[:len(within)] = within
    counted = np.zeros(width * hop, np.float32)
    counted[(first_frame - start) * hop:(first_frame - start + frames) * hop] = 1.0
    return segment[:-1], segment[1:], mel, utterances.speakers[index], counted


def batch_of(utterances: Utterances, picks, frames: int, hop: int, categorical: bool, history: int = 0) -> dict:
    parts = [crop(utterances, i, f, frames, hop, history) for i, f in picks]
    inputs, targets = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
    batch = {"mel": np.stack([p[2] for p in parts]), "speaker": np.array([p[3] for p in parts], np.int32),
             "counted": np.stack([p[4] for p in parts])}
    if categorical:
        batch.update(inputs=np.asarray(mulaw.encode(inputs)), targets=np.asarray(mulaw.encode(targets)))
    else:
        batch.update(inputs=inputs.astype(np.float32), targets=targets.astype(np.float32))
    return batch


def train_picks(utterances: Utterances, seed: int, step: int, batch_size: int, frames: int):
    rng = np.random.default_rng([seed, step, 0x3A7E])
    picks = []
    for i in rng.integers(len(utterances.mels), size=batch_size):
        picks.append((int(i), int(rng.integers(len(utterances.mels[i]) - frames + 1))))
    return picks


def eval_picks(utterances: Utterances, frames: int):
    """The middle crop of each utterance (deterministic)."""
    return [(i, (len(m) - frames) // 2) for i, m in enumerate(utterances.mels)]
