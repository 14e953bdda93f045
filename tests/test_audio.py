"""Audio building blocks: mu-law, WAV files, resampling, STFT and mel spectrograms."""
import numpy as np
import pytest

from aigc_jax.audio import mulaw, resample, spectral, wav


def test_mulaw_hand_values_and_round_trip():
    assert float(mulaw.compress(1.0)) == pytest.approx(1.0)
    assert float(mulaw.compress(-1.0)) == pytest.approx(-1.0)
    # f(0.5) = ln(1 + 127.5) / ln(256)
    assert float(mulaw.compress(0.5)) == pytest.approx(np.log(128.5) / np.log(256.0), rel=1e-6)
    assert int(mulaw.encode(-1.0)) == 0 and int(mulaw.encode(1.0)) == 255
    x = np.linspace(-1, 1, 20001, dtype=np.float32)
    q = np.asarray(mulaw.encode(x))
    assert set(np.unique(q)) == set(range(256))  # every class is reachable
    assert np.all(np.diff(q) >= 0)  # monotone
    np.testing.assert_allclose(np.asarray(mulaw.expand(mulaw.compress(x))), x, atol=1e-5)
    # Quantisation error is small near 0 and grows with amplitude (companding).
    err = np.abs(np.asarray(mulaw.decode(q)) - x)
    assert err[np.abs(x) < 0.01].max() < 4e-4
    # at full scale the error is half a step: dx/dy = ln(256) 256^|y| / 255 at |y| = 1, times 1 / 255
    assert err.max() == pytest.approx(np.log(256.0) * 256.0 / 255.0 / 255.0, rel=0.03)


def test_wav_round_trip_and_errors(tmp_path):
    t = np.arange(1600) / 16000.0
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = wav.write_wav(str(tmp_path / "a.wav"), x, 16000)
    y, rate = wav.read_wav(path)
    assert rate == 16000 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32767)
    with pytest.raises(FileNotFoundError, match="no WAV file"):
        wav.read_wav(str(tmp_path / "missing.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match="not a readable PCM WAV"):
        wav.read_wav(str(bad))


def test_resample_keeps_the_frequency():
    t = np.arange(22050) / 22050.0
    y = resample.resample(np.sin(2 * np.pi * 440.0 * t), 22050, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second


def test_stft_matches_scipy():
    from scipy.signal import stft as scipy_stft
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    n_fft, hop = 512, 128
    ours = np.asarray(spectral.stft(x, n_fft, hop))
    padded = np.pad(x, n_fft // 2, mode="reflect")
    _, _, ref = scipy_stft(padded, window="hann", nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False)
    ref = ref.T * spectral.hann_window(n_fft).sum()  # scipy scales by 1 / sum(window)
    assert ours.shape == (1 + len(x) // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref[:ours.shape[0]], atol=2e-3)


def test_slaney_mel_scale_and_filterbank():
    # Slaney's scale: 60 Hz -> 0.9 mel, 1 kHz -> 15 mel, 2 kHz -> 15 + ln 2 / (ln 6.4 / 27).
    np.testing.assert_allclose(spectral.hz_to_mel([60.0, 1000.0, 2000.0]),
                               [0.9, 15.0, 15.0 + np.log(2.0) * 27.0 / np.log(6.4)], rtol=1e-9)
    np.testing.assert_allclose(spectral.mel_to_hz(spectral.hz_to_mel([123.0, 4567.0])), [123.0, 4567.0])
    sr, n_fft, n_mels = 16000, 2048, 40
    bank = spectral.mel_filterbank(sr, n_fft, n_mels)
    assert bank.shape == (n_fft // 2 + 1, n_mels) and bank.min() >= 0
    df = sr / n_fft
    np.testing.assert_allclose(bank.sum(axis=0) * df, 1.0, rtol=0.05)  # unit area per filter
    centres = spectral.mel_to_hz(np.linspace(0, spectral.hz_to_mel(sr / 2), n_mels + 2))[1:-1]
    assert np.all(np.abs(np.argmax(bank, axis=0) * df - centres) <= df)
    with pytest.raises(ValueError, match="fmax"):
        spectral.mel_filterbank(sr, n_fft, n_mels, fmax=sr)


def test_log_mel_of_a_tone_peaks_at_its_band():
    sr = 16000
    t = np.arange(sr // 2) / sr
    mel = np.asarray(spectral.log_mel_spectrogram(np.sin(2 * np.pi * 1500.0 * t), sr, n_fft=1024, hop=256,
                                                  n_mels=80))
    assert mel.shape == (1 + len(t) // 256, 80)
    band = np.argmax(mel[5:-5].mean(axis=0))
    edges = spectral.mel_to_hz(np.linspace(0, spectral.hz_to_mel(sr / 2), 82))
    assert edges[band] < 1500.0 < edges[band + 2]
    assert mel.min() >= np.log(1e-5) - 1e-6
