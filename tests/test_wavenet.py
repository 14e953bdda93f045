"""WaveNet: causality and receptive field, fast generation against the full forward pass, and
the output distributions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.wavenet import losses
from aigc_jax.families.wavenet.generation import cached_predictions, generate, generate_naive
from aigc_jax.families.wavenet.model import WaveNet, dilation_cycle, receptive_field

SMALL = dict(dilations=dilation_cycle(2, 8), residual=8, gate=8, skip=16, head=16)


def inputs_for(model, batch, length, seed=0):
    rng = np.random.default_rng(seed)
    if model.output == "categorical":
        return jnp.asarray(rng.integers(0, 256, (batch, length)), jnp.int32)
    return jnp.asarray(rng.uniform(-1, 1, (batch, length)), jnp.float32)


@pytest.mark.parametrize("kind", ["unconditional", "speaker", "mel", "mixture"])
def test_cached_generation_equals_the_full_forward_pass(kind):
    extra = {"unconditional": {}, "speaker": dict(num_speakers=3),
             "mel": dict(mel_channels=5, upsample_strides=(2, 4), cond_channels=8),
             "mixture": dict(output="logistic_mixture", mixtures=3, num_speakers=2)}[kind]
    model = WaveNet(**SMALL, **extra)
    x = inputs_for(model, 2, 48)
    speaker = jnp.array([2, 0]) if model.num_speakers else None
    mel = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6, 5)), jnp.float32) if model.mel_channels else None
    params = model.init(jax.random.key(0), x, speaker, mel)["params"]
    full = model.apply({"params": params}, x, speaker, mel)
    cached = cached_predictions(model, params, x, speaker, mel)
    assert full.shape == cached.shape == (2, 48, 256 if model.output == "categorical" else 9)
    np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=1e-5)  # every sample


def test_causal_with_the_stated_receptive_field():
    model = WaveNet(**SMALL, output="logistic_mixture", mixtures=2)
    field = receptive_field(model.dilations)
    assert field == 2 + 2 * (1 + 2 + 4 + 8)
    x = inputs_for(model, 1, 64)
    params = model.init(jax.random.key(0), x)["params"]
    t = 50
    grads = jax.grad(lambda x: jnp.sum(model.apply({"params": params}, x)[0, t]))(x)[0]
    depends = np.flatnonzero(np.abs(np.asarray(grads)) > 0)
    assert depends.max() == t and depends.min() == t - field + 1  # nothing from the future, all the field


def test_fast_and_naive_generation_draw_the_same_samples():
    model = WaveNet(**SMALL, num_speakers=2)
    speaker = jnp.array([0, 1])
    params = model.init(jax.random.key(0), jnp.zeros((2, 8), jnp.int32), speaker)["params"]
    fast = generate(model, params, jax.random.key(3), 60, speaker=speaker)  # longer than the field (32)
    naive = generate_naive(model, params, jax.random.key(3), 60, speaker=speaker)
    assert fast.shape == (2, 60) and float(jnp.abs(fast).max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(naive))
    assert not np.array_equal(np.asarray(fast[0]), np.asarray(fast[1]))  # speakers differ


def test_conditioning_errors_name_what_is_missing():
    model = WaveNet(**SMALL, mel_channels=4, upsample_strides=(2,))
    x = jnp.zeros((1, 16), jnp.int32)
    with pytest.raises(ValueError, match="vocoder: pass log-mel"):
        model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="fewer than the 16"):
        model.init(jax.random.key(0), x, None, jnp.zeros((1, 4, 4)))


def test_categorical_nll_hand_value():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25] + [1e-30] * 253]))
    np.testing.assert_allclose(float(losses.categorical_nll(logits, jnp.array([1]))[0]), np.log(4.0), rtol=1e-5)


def test_logistic_mixture_is_a_distribution_over_the_bins():
    bins = 512
    params = jnp.asarray(np.random.default_rng(0).standard_normal(9), jnp.float32).at[6:].add(-2.0)  # 3 mixtures
    centres = jnp.linspace(-1.0, 1.0, bins)
    probs = jnp.exp(-losses.logistic_mixture_nll(jnp.broadcast_to(params, (bins, 9)), centres, bins=bins))
    assert float(jnp.sum(probs)) == pytest.approx(1.0, abs=1e-4)
    samples = losses.sample_logistic_mixture(jax.random.key(0), jnp.broadcast_to(params, (20000, 9)))
    logit_probs, means, log_scales = losses.split_mixture(params)
    expected_mean = float(jnp.sum(jax.nn.softmax(logit_probs) * means))
    assert float(jnp.mean(samples)) == pytest.approx(expected_mean, abs=0.02)


def test_nll_baselines_hand_values_and_order():
    from aigc_jax.audio import mulaw
    from aigc_jax.data.speech import tones
    from aigc_jax.families.wavenet import baselines
    edges = baselines.class_edges()
    q = np.asarray(mulaw.encode(np.linspace(-0.99, 0.99, 1001).astype(np.float32)))
    x = np.linspace(-0.99, 0.99, 1001)
    assert np.all((edges[q] <= x + 1e-6) & (x <= edges[q + 1] + 1e-6))  # each value lies in its class's interval
    # A histogram of one class: log2 of (count + 1) / (count + 256) per sample.
    train = np.full(1000, 7)
    assert baselines.marginal_bits(train, np.full(10, 7)) == pytest.approx(-np.log2(1001 / 1256))
    # A chord is almost perfectly linearly predictable: the order-8 predictor beats the histogram.
    chord = [tones([220.0, 330.0, 440.0], 0.5, 16000, 0.8)]
    classes = np.asarray(mulaw.encode(chord[0]))
    linear = baselines.linear_predictor_bits(chord, chord, 8, classes)
    assert linear < 2.0 < baselines.marginal_bits(classes, classes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import train_tiny_run
    workdir = str(tmp_path_factory.mktemp("wavenet") / "run")
    train_tiny_run("wavenet.py:tiny", workdir)
    return workdir


@pytest.mark.slow  # three subprocesses; the contract row covers the task end to end in the default run
def test_commands_synthesize_and_tabulate_a_trained_run(tiny_run):
    import os
    import re
    import subprocess
    import sys

    from aigc_jax.audio.wav import read_wav
    from tests.conftest import REPO
    out = os.path.join(tiny_run, "vocoded.wav")
    result = subprocess.run([sys.executable, "-m", "experiments.synthesize", f"--workdir={tiny_run}", "--mel=test:1",
                             f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "real-time factor" in result.stdout
    wave, rate = read_wav(out)
    assert rate == 16000 and len(wave) % 16 == 0 and len(wave) > 1600  # whole frames of hop 16
    refused = subprocess.run([sys.executable, "-m", "experiments.synthesize", f"--workdir={tiny_run}"], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "this run is a vocoder: pass --mel" in refused.stderr
    table = subprocess.run([sys.executable, "-m", "experiments.wavenet", f"--workdir={tiny_run}", "--orders=2"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr[-2000:]
    bits = dict(re.findall(r"\| (mu-law marginal|linear predictor, order 2|WaveNet)[^|]* \| ([0-9.]+) \|",
                           table.stdout))
    assert set(bits) == {"mu-law marginal", "linear predictor, order 2", "WaveNet"}
    assert all(0 < float(b) < 9 for b in bits.values())
    examples = os.path.join(tiny_run, "examples")
    vocoded = subprocess.run([sys.executable, "-m", "experiments.vocoder", f"--workdir={tiny_run}", "--utterances=2",
                              "--gl_iterations=4", "--examples=1", f"--out={examples}"], cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert vocoded.returncode == 0, vocoded.stderr[-2000:]
    distances = re.findall(r"\| (original|Griffin-Lim|WaveNet)[^|]* \| ([0-9.]+) ± [0-9.]+ \| ([0-9.]+) ±", vocoded.stdout)
    assert [name for name, _, _ in distances] == ["original", "Griffin-Lim", "WaveNet"]
    assert sorted(os.listdir(examples)) == ["spectrograms.png", "test0_griffin_lim.wav", "test0_original.wav",
                                            "test0_wavenet.wav"]


def test_config_errors_name_the_field():
    from aigc_jax import families
    from aigc_jax.config import ConfigError, load_config
    from tests.conftest import config_path
    with pytest.raises(ConfigError, match="multiply to 16, but data.hop is 20"):
        families.check_config(load_config(config_path("wavenet.py:tiny"), ["data.hop=20"]))
    with pytest.raises(ConfigError, match="max_dilation must be a power of two"):
        families.check_config(load_config(config_path("wavenet.py:tiny"), ["model.max_dilation=6"]))
    with pytest.raises(ConfigError, match="above the Nyquist"):
        families.check_config(load_config(config_path("wavenet.py:tiny"), ["data.fmax=9000"]))


def test_utterance_nll_pads_to_whole_seconds_without_changing_it():
    import math

    from aigc_jax.config import load_config
    from aigc_jax.data.speech import SpeechSet, tones
    from aigc_jax.families.wavenet import data as wave_data, task as wave_task
    from tests.conftest import config_path
    config = load_config(config_path("wavenet.py:tiny"), ["model.global_conditioning=true"])
    model = wave_task.build_model(config)
    items = SpeechSet([tones(300.0, 0.13), tones([200.0, 500.0], 0.07)], ["a", "b"], ["", ""], np.array([1, 3]),
                      16000)
    utterances = wave_data.prepare(items, config.data, config.data.crop_frames)
    first = wave_data.batch_of(utterances, [(0, 0)], len(utterances.mels[0]), config.data.hop, True)
    params = model.init(jax.random.key(0), jnp.asarray(first["inputs"]), jnp.asarray(first["speaker"]),
                        jnp.asarray(first["mel"]))["params"]
    total = count = 0
    for i, mel in enumerate(utterances.mels):
        batch = wave_data.batch_of(utterances, [(i, 0)], len(mel), config.data.hop, True)
        total += float(jnp.sum(wave_task.nll(model, params, {k: jnp.asarray(v) for k, v in batch.items()})))
        count += batch["targets"].size
    bits = wave_task.utterance_nll_bits(model, params, utterances, config.data)
    assert bits == pytest.approx(total / count / math.log(2.0), rel=1e-6)


def test_training_windows_see_what_the_whole_utterance_forward_pass_sees():
    """With history for the receptive field and the upsampler, a crop's counted predictions equal
    the whole utterance's (what generation conditions on); without history they do not."""
    from aigc_jax.config import load_config
    from aigc_jax.data.speech import SpeechSet, tones
    from aigc_jax.families.wavenet import data as wave_data, task as wave_task
    from aigc_jax.families.wavenet.model import receptive_field
    from tests.conftest import config_path
    config = load_config(config_path("wavenet.py:tiny"), ["model.global_conditioning=true"])
    d, model = config.data, wave_task.build_model(config)
    history = wave_data.history_frames(-1, receptive_field(model.dilations), d.hop, len(model.upsample_strides))
    assert history == 4  # the field's 16 samples (1 frame), then the conditioning's reach (1 + 2 layers)
    items = SpeechSet([tones([300.0, 720.0], 0.03)], ["a"], [""], np.array([2]), 16000)
    utterances = wave_data.prepare(items, d, history + d.crop_frames)
    frames = len(utterances.mels[0])
    whole = {k: jnp.asarray(v) for k, v in wave_data.batch_of(utterances, [(0, 0)], frames, d.hop, True).items()}
    params = model.init(jax.random.key(0), whole["inputs"], whole["speaker"], whole["mel"])["params"]
    full = np.asarray(model.apply({"params": params}, whole["inputs"], whole["speaker"], whole["mel"]))[0]
    crop = d.crop_frames

    def window_error(first_frame, history):
        batch = {k: jnp.asarray(v) for k, v in
                 wave_data.batch_of(utterances, [(0, first_frame)], crop, d.hop, True, history).items()}
        out = np.asarray(model.apply({"params": params}, batch["inputs"], batch["speaker"], batch["mel"]))[0]
        counted = np.asarray(batch["counted"][0]) > 0
        assert counted.sum() == crop * d.hop
        start = max(first_frame - history, 0) * d.hop
        assert np.array_equal(np.asarray(batch["targets"][0])[counted],
                              np.asarray(whole["targets"][0])[first_frame * d.hop:(first_frame + crop) * d.hop])
        return np.max(np.abs(out[counted] - full[start:start + len(out)][counted]))

    for first_frame in (0, 1, frames // 2, frames - crop):  # the utterance's start, near it, middle, end
        assert window_error(first_frame, history) < 1e-5
    assert window_error(frames // 2, 0) > 0.1  # a bare crop: zeros before it, not the utterance
    assert window_error(frames // 2, history - 1) > 1e-5  # one frame short of the conditioning's reach


def test_standardised_log_mels_keep_the_upsampler_out_of_saturation():
    """Raw log-mels (floor ln 1e-5 = -11.5) saturate the upsampler's first tanh at initialisation;
    the config's mel_shift / mel_scale keep most units in their linear range."""
    from aigc_jax.config import load_config
    from aigc_jax.data.speech import SpeechSet, tones
    from aigc_jax.families.wavenet import data as wave_data, task as wave_task
    from tests.conftest import config_path

    def saturated(overrides):
        config = load_config(config_path("wavenet.py:tiny"), overrides)
        model = wave_task.build_model(config)
        items = SpeechSet([tones([300.0, 720.0], 0.05)], ["a"], [""], np.array([0]), 16000)
        mel = jnp.asarray(wave_data.prepare(items, config.data, 8).mels[0][None])
        params = model.init(jax.random.key(0), jnp.zeros((1, mel.shape[1] * config.data.hop), jnp.int32), None,
                            mel)["params"]
        _, state = model.apply({"params": params}, None, mel, None, method="conditioning",
                               capture_intermediates=True)
        up = state["intermediates"]["upsampler"]
        first = up["up0_now"]["__call__"][0] + up["up0_past"]["__call__"][0]
        return float(jnp.mean(jnp.abs(jnp.tanh(first)) > 0.99))

    normalised, raw = saturated([]), saturated(["model.mel_shift=0.0", "model.mel_scale=1.0"])
    assert normalised < 0.35 and raw > 0.6 and raw > 2.5 * normalised


def test_class_noise_rows_entropy_and_order():
    from aigc_jax.audio import mulaw
    from aigc_jax.config import load_config
    from aigc_jax.data.speech import SpeechSet, tones
    from aigc_jax.families.wavenet import data as wave_data, resynthesis
    from tests.conftest import config_path
    assert resynthesis.rounded_gaussian_entropy_bits(0.0) == 0.0
    assert resynthesis.rounded_gaussian_entropy_bits(1e-3) == pytest.approx(0.0, abs=1e-6)
    # wide noise: the differential entropy of N(0, s^2) in bits, 0.5 log2(2 pi e s^2)
    assert resynthesis.rounded_gaussian_entropy_bits(20.0) == pytest.approx(0.5 * np.log2(2 * np.pi * np.e * 400), abs=1e-3)
    d = load_config(config_path("wavenet.py:tiny"), []).data
    items = SpeechSet([tones([300.0, 720.0], 0.13)], ["a"], [""], np.array([0]), 16000)
    utterances = wave_data.prepare(items, d, d.crop_frames)
    exact = resynthesis.class_noise_resynthesis(utterances, [0], 0.0)[0]
    assert np.array_equal(exact, mulaw.decode(mulaw.encode(resynthesis.original(utterances, 0))))
    lsd = [resynthesis.spectral_scores(utterances, resynthesis.class_noise_resynthesis(utterances, [0], s), d)["lsd_db"]
           for s in (0.0, 1.0, 4.0)]
    assert lsd[0] < lsd[1] < lsd[2]


def test_resynthesis_keeps_lengths_and_griffin_lim_beats_noise():
    from aigc_jax.config import load_config
    from aigc_jax.data.speech import SpeechSet, tones
    from aigc_jax.families.wavenet import data as wave_data, resynthesis, task as wave_task
    from tests.conftest import config_path
    config = load_config(config_path("wavenet.py:tiny"), [])
    d = config.data
    items = SpeechSet([tones([300.0, 720.0], 0.13), tones(450.0, 0.05), tones(900.0, 0.02)], ["a", "b", "c"],
                      [""] * 3, np.array([0, 1, 2]), 16000)
    utterances = wave_data.prepare(items, d, d.crop_frames)
    groups = resynthesis.by_padded_length(utterances, [0, 1, 2], d.sample_rate // d.hop, group=1)
    assert [len(members) for _, members in groups] == [1, 1, 1]
    assert all(frames % (d.sample_rate // d.hop) == 0 for frames, _ in groups)
    model = wave_task.build_model(config)
    first = wave_data.batch_of(utterances, [(0, 0)], d.crop_frames, d.hop, True)
    params = model.init(jax.random.key(0), jnp.asarray(first["inputs"]), None, jnp.asarray(first["mel"]))["params"]
    waves = resynthesis.wavenet_resynthesis(model, params, utterances, [0, 1, 2], d)
    gl = resynthesis.griffin_lim_resynthesis(utterances, [0, 1, 2], d, iterations=30)
    for i in range(3):
        assert waves[i].shape == gl[i].shape == resynthesis.original(utterances, i).shape
    noise = {i: np.random.default_rng(i).uniform(-0.5, 0.5, len(w)).astype(np.float32) for i, w in gl.items()}
    by_gl, by_noise = resynthesis.spectral_scores(utterances, gl, d), resynthesis.spectral_scores(utterances, noise, d)
    assert by_gl["count"] == 3
    assert by_gl["lsd_db"] < 0.5 * by_noise["lsd_db"] and by_gl["mcd_db"] < 0.5 * by_noise["mcd_db"]
    unconditional = WaveNet(**SMALL)
    with pytest.raises(ValueError, match="needs a vocoder run"):
        resynthesis.wavenet_resynthesis(unconditional, params, utterances, [0], d)
