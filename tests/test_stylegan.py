"""StyleGAN2's parts against their definitions (aigc_jax/families/gan/stylegan_*.py)."""
import dataclasses
import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.gan import stylegan_model as sm
from aigc_jax.families.gan import stylegan_task as st
from aigc_jax.families.gan.losses import r1_penalty
from aigc_jax.metrics import latent_space


def test_demodulation_gives_unit_output_variance_for_unit_variance_input():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, (8, 96, 96, 16))
    kernel = jax.random.normal(k2, (3, 3, 16, 12)) * 0.3
    styles = jnp.exp(jax.random.normal(k3, (8, 16)))  # very different scales per input channel
    y = sm.modulated_conv(x, kernel, styles, demodulate=True)
    interior = np.asarray(y[:, 1:-1, 1:-1, :])  # away from the zero padding
    per_channel = interior.std(axis=(1, 2))  # [N, O]: each sample's own output variance
    np.testing.assert_allclose(per_channel, 1.0, atol=0.05)
    # without demodulation the variance follows the styles and weights, not 1
    raw = np.asarray(sm.modulated_conv(x, kernel, styles, demodulate=False))[:, 1:-1, 1:-1]
    assert np.abs(raw.std(axis=(1, 2)) - 1.0).max() > 0.5


def test_modulated_conv_equals_per_sample_weights():
    """The scale-input / scale-output form equals convolving each sample with its own w''."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(k1, (3, 6, 6, 4))
    kernel = jax.random.normal(k2, (3, 3, 4, 5))
    styles = jax.random.normal(k3, (3, 4))
    y = sm.modulated_conv(x, kernel, styles, demodulate=True)
    for n in range(3):
        w = kernel * styles[n][None, None, :, None]
        w = w / jnp.sqrt(jnp.sum(w ** 2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        np.testing.assert_allclose(np.asarray(y[n]), np.asarray(jax.lax.conv_general_dilated(
            x[n:n + 1], w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]), atol=1e-4)


def test_psi_zero_returns_w_avg_and_the_cutoff_keeps_later_layers():
    ws = jax.random.normal(jax.random.key(2), (5, 6, 7))
    w_avg = jax.random.normal(jax.random.key(3), (7,))
    np.testing.assert_allclose(np.asarray(sm.truncate(ws, w_avg, 0.0)), np.broadcast_to(w_avg, ws.shape), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sm.truncate(ws, w_avg, 1.0)), np.asarray(ws), atol=1e-6)
    cut = np.asarray(sm.truncate(ws, w_avg, 0.0, cutoff=2))
    np.testing.assert_allclose(cut[:, :2], np.broadcast_to(w_avg, (5, 2, 7)), atol=1e-6)
    np.testing.assert_array_equal(cut[:, 2:], np.asarray(ws[:, 2:]))


@pytest.mark.parametrize("cutoff", [1, 3, 5])
def test_style_mixing_switches_sources_exactly_at_the_cutoff(cutoff):
    a = jnp.zeros((2, 6, 3))
    b = jnp.ones((2, 6, 3))
    mixed = np.asarray(sm.mix_styles(a, b, cutoff))
    assert (mixed[:, :cutoff] == 0).all() and (mixed[:, cutoff:] == 1).all()


def test_the_step_mixes_styles_at_one_cutoff_per_batch():
    """With style_mixing = 1, ws take the first latent's w up to a cutoff in [1, num_ws) and the second's after."""
    config = tiny_config()
    config.loss.style_mixing = 1.0
    game = st.build_game(config, (16, 16, 3))
    g_params = game.generator.init({"params": jax.random.key(0), "noise": jax.random.key(1)},
                                   jnp.zeros((1, game.z_dim)))["params"]
    cutoffs = set()
    for seed in range(12):
        ws, w = game.mixed_styles(g_params, jax.random.key(seed), 4)
        ws, w = np.asarray(ws), np.asarray(w)
        first = np.all(np.isclose(ws, w[:, None]), axis=(0, 2))  # per layer: equal to the first latent's w
        cutoff = int(np.argmin(first)) if not first.all() else game.num_ws
        assert first[:cutoff].all() and not first[cutoff:].any()
        assert 1 <= cutoff < game.num_ws
        cutoffs.add(cutoff)
    assert len(cutoffs) > 1


def test_r1_penalty_of_a_linear_critic_is_gamma_half_the_squared_weight_norm():
    a = jnp.arange(12.0).reshape(3, 4) / 10.0
    critic = lambda x: jnp.sum(x * a, axis=(1, 2))  # noqa: E731 - D(x) = <a, x>, gradient a
    real = jax.random.normal(jax.random.key(0), (5, 3, 4))
    assert float(r1_penalty(critic, real, gamma=0.3)) == pytest.approx(0.15 * float(jnp.sum(a ** 2)), rel=1e-5)
    game = types.SimpleNamespace(critic=lambda params, x: critic(x) * params, r1_gamma=0.3, r1_interval=16)
    total, penalty = st.r1_objective(2.0, game, real)  # the critic scaled by 2: 4x the penalty
    assert float(penalty) == pytest.approx(0.6 * float(jnp.sum(a ** 2)), rel=1e-5)
    assert float(total) == pytest.approx(16 * float(penalty), rel=1e-6)


def test_path_length_penalty_of_a_linear_generator_against_hand_values():
    """g(ws) = images with g linear: J^T y = A^T y, so the lengths and the penalty have closed forms."""
    count, num_ws, w_dim, size = 3, 2, 4, 2
    A = jax.random.normal(jax.random.key(5), (num_ws * w_dim, size * size))
    ws_fixed = jax.random.normal(jax.random.key(6), (count, num_ws, w_dim))
    game = types.SimpleNamespace(
        mixed_styles=lambda params, rng, n: (ws_fixed * params, None),
        synthesis=lambda params, ws, rng: (ws.reshape(count, -1) @ A).reshape(count, size, size, 1),
        pl_decay=0.1, pl_weight=2.0, pl_interval=4)
    pl_mean = 0.5
    rng = jax.random.key(7)
    total, (new_mean, penalty, mean_length) = st.path_length_objective(1.0, game, pl_mean, rng, count)
    _, _, y_rng = jax.random.split(rng, 3)
    y = jax.random.normal(y_rng, (count, size, size, 1)) / math.sqrt(size * size)
    grads = np.asarray(y.reshape(count, -1) @ A.T).reshape(count, num_ws, w_dim)  # J^T y per sample
    lengths = np.sqrt(np.mean(np.sum(grads ** 2, axis=2), axis=1))
    expected_mean = pl_mean + 0.1 * (lengths.mean() - pl_mean)
    assert float(new_mean) == pytest.approx(expected_mean, rel=1e-5)
    assert float(penalty) == pytest.approx(np.mean((lengths - expected_mean) ** 2), rel=1e-4)
    assert float(total) == pytest.approx(2.0 * 4 * float(penalty), rel=1e-6)
    assert float(mean_length) == pytest.approx(lengths.mean(), rel=1e-5)


def test_lazy_regularisation_corrects_rate_and_betas():
    from configs.stylegan import stylegan_adam
    section = st.lazy_optimizer(stylegan_adam(0.002), 16, True)
    assert section.learning_rate == pytest.approx(0.002 * 16 / 17)
    assert section.beta2 == pytest.approx(0.99 ** (16 / 17)) and section.beta1 == 0.0
    assert st.lazy_optimizer(stylegan_adam(0.002), 16, False).learning_rate == 0.002


def test_generator_ema_half_life_and_ramp_up():
    late = 10 ** 6  # the ramp no longer binds
    assert float(st.ema_decay_at(late, 32, 10.0, 0.0)) ** (10000 / 32) == pytest.approx(0.5, rel=1e-4)
    assert float(st.ema_decay_at(late, 32, 10.0, 0.05)) == float(st.ema_decay_at(late, 32, 10.0, 0.0))
    # step 100 with ramp-up 0.05: half-life 0.05 * 3,200 images seen = 160 images = 5 steps
    assert float(st.ema_decay_at(100, 32, 10.0, 0.05)) ** 5 == pytest.approx(0.5, rel=1e-4)
    assert float(st.ema_decay_at(0, 32, 10.0, 0.05)) == 0.0  # the first step copies the generator
    assert float(st.ema_decay_at(100, 32, 0.0, 0.05)) == 0.0  # EMA off


def test_minibatch_stddev_is_the_group_standard_deviation():
    x = jax.random.normal(jax.random.key(8), (8, 2, 2, 3))
    out = np.asarray(sm.minibatch_stddev(x, group_size=4))
    assert out.shape == (8, 2, 2, 4)
    np.testing.assert_array_equal(out[..., :3], np.asarray(x))
    xs = np.asarray(x)
    for n in range(8):
        group = xs[n % 2::2]  # sample n is in group n mod (N / G)
        assert out[n, 0, 0, 3] == pytest.approx(np.sqrt(group.var(axis=0) + 1e-8).mean(), rel=1e-5)


def test_critic_collapse_response_isolates_the_minibatch_stddev_feature():
    from aigc_jax.families.gan.stylegan_metrics import critic_collapse_response
    real = jax.random.normal(jax.random.key(10), (16, 2, 2, 3))
    # a critic that judges each image alone: the two arrangements hold the same images, so no penalty
    per_image = lambda x: jnp.sum(x * jnp.arange(12.0).reshape(2, 2, 3), axis=(1, 2, 3))  # noqa: E731
    out = critic_collapse_response(per_image, real, group_size=4)
    assert out["copies_within"] == pytest.approx(out["copies_across"], abs=1e-5)
    assert out["mbstd_penalty"] == pytest.approx(0.0, abs=1e-5)
    assert out["one_image"] == pytest.approx(float(per_image(real[:1])[0]), rel=1e-6)
    assert out["real"] == pytest.approx(float(jnp.mean(per_image(real))), rel=1e-6)
    # a critic that is the minibatch-stddev feature itself: zero (up to its epsilon) for groups of copies,
    # so the arrangement matches the layer's grouping (group j = rows j, j + N/G, ...)
    mbstd_only = lambda x: sm.minibatch_stddev(x, 4)[:, 0, 0, -1]  # noqa: E731
    out = critic_collapse_response(mbstd_only, real, group_size=4)
    assert out["copies_within"] == pytest.approx(1e-4, rel=1e-3) and out["copies_across"] > 0.5
    assert out["mbstd_penalty"] == pytest.approx(out["copies_across"] - out["copies_within"])
    with pytest.raises(ValueError, match="group size"):
        critic_collapse_response(per_image, real, group_size=8)  # 2 distinct images cannot fill a group of 8


def test_mapping_depth_zero_feeds_the_normalised_z_as_w():
    """The StyleGAN paper's mapping-depth-0 ablation: no mapping parameters, w = z / rms(z)."""
    from aigc_jax.config import load_config
    generator = sm.StyleGenerator(image_size=8, channels=1, z_dim=16, w_dim=16, mapping_layers=0,
                                  channel_base=32, channel_max=8)
    z = jax.random.normal(jax.random.key(11), (4, 16)) * 3.0
    params = generator.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, z)["params"]
    assert "mapping_net" not in params
    w = generator.apply({"params": params}, z, method="mapping")
    np.testing.assert_allclose(np.asarray(w), np.asarray(z / jnp.sqrt(jnp.mean(z ** 2, axis=1, keepdims=True))),
                               rtol=1e-5)
    config = load_config("configs/stylegan.py:tiny", ["model.mapping_layers=0", "model.w_dim=8"])
    with pytest.raises(ValueError, match="w_dim=8 must equal model.z_dim=16"):
        st.check_config(config)


def test_slerp_stays_on_the_sphere_and_hits_the_ends():
    a = jax.random.normal(jax.random.key(9), (4, 16))
    b = a[::-1] * 1.0
    t = jnp.array([0.0, 0.3, 0.7, 1.0])
    out = np.asarray(latent_space.slerp(a, b, t))
    np.testing.assert_allclose(out[0], np.asarray(a[0]), atol=1e-5)
    np.testing.assert_allclose(out[3], np.asarray(b[3]), atol=1e-5)


def test_conditional_entropy_and_separability_on_a_separable_toy():
    assert latent_space.conditional_entropy(np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])) == 0.0
    assert latent_space.conditional_entropy(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0])) == pytest.approx(
        math.log(2))
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((400, 5))
    attributes = {"separable": latents[:, 0] > 0, "random": rng.random(400) > 0.5}
    confidence = {name: np.ones(400) for name in attributes}
    out = latent_space.linear_separability(latents, attributes, confidence, keep_fraction=1.0)
    assert out["separability_entropy_separable"] < 0.05
    assert out["separability_entropy_random"] > 0.5
    assert out["separability_attributes"] == 2
    constant = latent_space.linear_separability(latents, {"never": np.zeros(400, bool)}, {"never": np.ones(400)})
    assert constant["separability_attributes"] == 0 and math.isnan(constant["separability_entropy_never"])


def tiny_config():
    from aigc_jax.config import load_config
    from tests.conftest import config_path
    return load_config(config_path("stylegan.py:tiny"))


def test_a_trained_run_reads_back_mixes_and_truncates(tmp_path):
    """End to end on the shapes world: train a tiny run, read it back, and check the style-mixing
    grid and the truncation trade-off where they have exact answers."""
    from aigc_jax import families
    from aigc_jax.config import load_config
    from aigc_jax.families.gan import stylegan_sampling
    from tests.conftest import config_path
    # the tiny config as the family contract trains it: the same compiled programs
    config = load_config(config_path("stylegan.py:tiny"), ["train.progress_bar=false"])
    families.train(config, str(tmp_path), echo=lambda *_: None)
    trained = st.load_trained(str(tmp_path))
    assert int(trained.state.step) == config.train.num_steps
    # the exact answers below hold without per-pixel noise: its learned strengths set to zero
    def silence(path, leaf):
        return jnp.zeros_like(leaf) if path[-1].key == "noise_strength" else leaf

    ema = jax.tree_util.tree_map_with_path(silence, trained.state.extra["ema"])
    silenced = [a for a, b in zip(jax.tree_util.tree_leaves(trained.state.extra["ema"]), jax.tree_util.tree_leaves(ema))
                if a is not b]
    convolutions = 2 * len(sm.resolutions(config.data.image_size)) - 1  # one at 4x4, two per larger resolution
    assert len(silenced) == convolutions and any(float(x) != 0 for x in silenced)
    trained = dataclasses.replace(trained, state=trained.state.replace(extra={**trained.state.extra, "ema": ema}))
    state, game = trained.state, trained.game
    # a source equal to the destination changes nothing; another source changes the image
    grid, labels = stylegan_sampling.style_mixing_grid(state, game, 16, [1], [1, 2])
    assert grid.shape[:2] == (1 + 3, 3) and labels[1].startswith("coarse")
    for row in grid[1:]:
        np.testing.assert_allclose(row[1], row[0], atol=1e-6)
        assert np.abs(row[2] - row[0]).max() > 0
    # psi = 0: every sample is the generator at w_avg, so the samples do not vary at all
    at_zero = st.score_samples(trained, 64, psi=0.0, seed=0, batch_size=32)
    at_one = st.score_samples(trained, 64, psi=1.0, seed=0, batch_size=32)
    # zero up to the float32 cancellation of E[ff^T] - E[f]E[f]^T
    assert at_zero["feature_spread"] < 1e-3 * at_one["feature_spread"]
    assert "factor_match" in at_one and "frechet_distance" in at_one
    # the README's analysis command on the same run: its report holds the real images' spread beside
    # the samples' (psi 0 collapses the samples onto one image)
    out = tmp_path / "analysis"
    subprocess.run([sys.executable, "-m", "experiments.stylegan", f"--workdir={tmp_path}", f"--out={out}", "--psis=1,0",
                    "--truncation_samples=64", "--ppl_samples=0", "--separability_samples=0"], check=True,
                   capture_output=True)
    report = json.loads((out / "analysis.json").read_text())
    spreads = {row["psi"]: row["feature_spread"] for row in report["truncation"]}
    assert report["real_feature_spread"] > 0 and spreads[0.0] < 1e-2 * spreads[1.0]
    assert {"samples_psi1.png", "style_mixing.png", "interpolation_w.png", "truncation.png"} <= set(os.listdir(out))
    layers = report["style_sensitivity"]["layers"]  # every modulated layer: the convolutions and the toRGBs
    assert len(layers) == convolutions + len(sm.resolutions(config.data.image_size)) and list(layers)[0] == "b4_conv1"
    assert all(v["style_std"] > 0 for v in layers.values()) and report["style_sensitivity"]["pixel_std"] > 0
    assert all(v["style_cv"] == pytest.approx(v["style_std"] / v["style_mean_abs"]) for v in layers.values())
    # the generator as the run's seed initialised it, beside the trained one: same layers, other values
    at_init = report["style_sensitivity_at_init"]
    assert list(at_init["layers"]) == list(layers) and at_init["pixel_std"] != report["style_sensitivity"]["pixel_std"]
    collapse = report["critic_collapse"]  # the discriminator's logits on real and collapsed real batches
    assert collapse["mbstd_penalty"] == pytest.approx(collapse["copies_across"] - collapse["copies_within"])
    assert all(math.isfinite(v) for v in collapse.values()) and collapse["one_image"] != collapse["real"]
    # a run saved before train.ema_rampup existed reads back as it trained: without the ramp
    from aigc_jax.config import SAVED_CONFIG_FILE
    saved_path = tmp_path / SAVED_CONFIG_FILE
    saved = json.loads(saved_path.read_text())
    assert trained.game.ema_rampup == saved["train"].pop("ema_rampup") > 0
    saved_path.write_text(json.dumps(saved))
    assert st.load_trained(str(tmp_path)).game.ema_rampup == 0.0


def test_stylegan_and_dcgan_mnist_runs_share_one_judge():
    """The comparison in experiments/results/stylegan.md is only fair if both runs' Frechet distances
    live in one feature space: the same images (MNIST at 32x32) and the same classifier settings."""
    from configs import dcgan, stylegan
    style, dc = stylegan.get_config("mnist"), dcgan.get_config("mnist")
    assert style.data.path == dc.data.path and style.data.labels_path == dc.data.labels_path
    assert style.data.test_fraction == dc.data.test_fraction
    assert style.eval.classifier_steps == dc.eval.classifier_steps
    assert style.eval.classifier_cache == dc.eval.classifier_cache
