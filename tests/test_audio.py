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


def test_istft_inverts_stft():
    x = np.random.default_rng(1).standard_normal(3001).astype(np.float32)
    back = np.asarray(spectral.istft(spectral.stft(x, 400, 100), len(x), 400, 100))
    np.testing.assert_allclose(back, x, atol=1e-5)
    with pytest.raises(ValueError, match="fewer than"):
        spectral.istft(spectral.stft(x, 400, 100), 2 * len(x), 400, 100)


def test_mel_inversion_is_non_negative_and_fits_better_than_the_clipped_pseudo_inverse():
    from aigc_jax.audio import griffin_lim
    bank = spectral.mel_filterbank(8000, 256, 20)
    truth = np.random.default_rng(2).gamma(1.0, size=(30, 129)).astype(np.float32)
    mel = truth @ bank
    start = np.maximum(mel @ np.linalg.pinv(bank), 1e-8)
    solved = np.asarray(griffin_lim.mel_to_magnitude(mel, bank))
    assert solved.min() >= 0
    assert np.linalg.norm(solved @ bank - mel) < 0.5 * np.linalg.norm(start @ bank - mel)


def test_griffin_lim_recovers_a_consistent_signal_from_its_magnitude():
    from aigc_jax.audio import griffin_lim
    sr = 8000
    t = np.arange(sr // 2) / sr
    x = (0.5 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 1100 * t * (1 + t))).astype(np.float32)
    magnitude = spectral.magnitude_spectrogram(x, 256, 64)
    convergence = lambda w: float(np.linalg.norm(spectral.magnitude_spectrogram(w, 256, 64) - magnitude)  # noqa: E731
                                  / np.linalg.norm(magnitude))
    random_phase = convergence(griffin_lim.griffin_lim(magnitude, len(x), 256, 64, iterations=0))
    iterated = convergence(griffin_lim.griffin_lim(magnitude, len(x), 256, 64, iterations=60))
    assert random_phase > 0.3 and iterated < 0.1


def test_spectral_distances_hand_values():
    from aigc_jax.audio import distances
    x = np.random.default_rng(3).standard_normal(4000).astype(np.float32) * 0.1
    assert distances.log_spectral_distance(x, x) == 0.0
    # Twice the amplitude: every power bin 20 log10 2 dB higher.
    np.testing.assert_allclose(distances.log_spectral_distance(x, 2 * x), 20 * np.log10(2.0), rtol=1e-6)
    # A level change lives in c_0 only, which MCD leaves out.
    assert distances.mel_cepstral_distortion(x, 2 * x, 8000, 256, 64, 20, order=12) < 1e-4
    # Log-mels apart by 2 delta cos(pi (k + 1/2) / N): c_1 differs by delta, MCD = (10 / ln 10) sqrt(2) delta.
    n = 20
    base = np.random.default_rng(4).standard_normal((5, n))
    bump = 2 * 0.3 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    per_frame = distances.cepstral_distortion_per_frame(base, base + bump, order=12)
    np.testing.assert_allclose(per_frame, 10 / np.log(10) * np.sqrt(2) * 0.3, rtol=1e-9)
    with pytest.raises(ValueError, match="one length"):
        distances.log_spectral_distance(x, x[:-1])
