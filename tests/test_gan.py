"""GANs on the one training loop: the step's phases, learning on the ring, resume, DCGAN, bad input."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.config import load_config
from aigc_jax.data.text import DataError
from aigc_jax.metrics import classifier as classifier_lib
from aigc_jax.families import build_task
from aigc_jax import families
from aigc_jax.train.metrics import read_metrics
from tests.conftest import config_path


def quiet(*_args):
    pass


def ring_config(*overrides):
    return load_config(config_path("gan_2d.py:tiny"), ["train.progress_bar=false", *overrides])


def leaves_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_step_updates_critic_then_generator_batch_norm_in_both_phases_and_ema(tmp_path):
    config = ring_config("train.n_critic=2", "train.ema_decay=0.75", "g_optimizer.learning_rate=0.0",
                         "g_optimizer.min_learning_rate=0.0")
    task = build_task(config, str(tmp_path))
    game = task.train_step.keywords["game"]
    state = jax.jit(task.init)(jax.random.key(0))
    batch = task.train_batch(0)
    assert batch["real"].shape == (2, 16, 2) and batch["labels"].shape == (2, 16)
    rng = jax.random.key(7)
    new_state, metrics = jax.jit(task.train_step)(state, batch, rng)
    # the generator (learning rate 0) is unchanged; the discriminator moved
    leaves_equal(new_state.params["generator"], state.params["generator"])
    assert any(float(jnp.max(jnp.abs(a - b))) > 0 for a, b in zip(
        jax.tree_util.tree_leaves(new_state.params["discriminator"]),
        jax.tree_util.tree_leaves(state.params["discriminator"])))
    # running averages advance once per generator forward pass: two critic updates, then G's
    step_rng = jax.random.fold_in(rng, 0)
    stats = state.extra["batch_stats"]
    for index in range(3):
        latent_rng = jax.random.split(jax.random.fold_in(step_rng, index))[0] if index < 2 else \
            jax.random.fold_in(step_rng, 2)
        z, labels = game.latents(latent_rng, 16)
        _, stats = game.generate(state.params["generator"], stats, z, labels, train=True)
    for x, y in zip(jax.tree_util.tree_leaves(new_state.extra["batch_stats"]), jax.tree_util.tree_leaves(stats)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # EMA: 0.75 * old + 0.25 * new
    for ema, old, new in zip(jax.tree_util.tree_leaves(new_state.extra["ema"]),
                             jax.tree_util.tree_leaves(state.extra["ema"]),
                             jax.tree_util.tree_leaves(new_state.params["generator"])):
        np.testing.assert_allclose(ema, 0.75 * old + 0.25 * new, rtol=1e-6)
    assert set(metrics) >= {"d_loss", "g_loss", "d_real", "d_fake", "gradient_penalty", "d_grad_norm"}


def test_a_few_hundred_steps_move_samples_toward_the_ring_modes(tmp_path):
    # The ring's geometry (8 modes, radius 1) with standard deviation 0.1 instead of the papers'
    # 0.01, so that 300 steps of a small model show the movement (0.01 takes thousands).
    config = ring_config("data.std=0.1", "model.g_hidden=64", "model.d_hidden=64", "train.batch_size=64",
                         "train.num_steps=300", "train.eval_every=300", "train.checkpoint_every=300",
                         "train.log_every=100", "g_optimizer.learning_rate=1e-3", "g_optimizer.min_learning_rate=1e-3",
                         "d_optimizer.learning_rate=1e-3", "d_optimizer.min_learning_rate=1e-3",
                         "g_optimizer.beta1=0.5", "d_optimizer.beta1=0.5")
    families.train(config, str(tmp_path / "run"), echo=quiet)
    first, last = read_metrics(str(tmp_path / "run"), "eval")
    assert (first["step"], last["step"]) == (0, 300)
    assert last["mean_mode_distance"] < 0.8 * first["mean_mode_distance"]
    assert last["high_quality_percent"] > 2 * first["high_quality_percent"] + 10  # within 3 std of a mode
    assert last["modes_captured"] >= first["modes_captured"] and last["reverse_kl"] < first["reverse_kl"]
    assert os.path.exists(tmp_path / "run" / "samples" / "step_0000300.png")


@pytest.mark.slow  # the dcgan family row of test_family_contract covers the image GAN by default
def test_conditional_dcgan_on_digits_scores_and_writes_grids(tmp_path):
    cache = str(tmp_path / "cache")
    config = load_config(config_path("dcgan.py:tiny"), [
        "train.progress_bar=false", "model.num_classes=10", f"eval.classifier_cache={cache}"])
    summary = families.train(config, str(tmp_path / "run"), echo=quiet)
    final = summary["final_eval"]
    assert 1.0 <= final["classifier_score"] <= 10.0 and 0.0 <= final["label_accuracy"] <= 1.0
    assert final["frechet_distance"] > 0 and 0.1 <= final["mean_confidence"] <= 1.0
    from PIL import Image
    grid = Image.open(tmp_path / "run" / "samples" / "step_0000020.png")
    # 20 samples, one column per class: 10 x 2 tiles of 8x8 at scale 8 with 1-pixel padding
    assert grid.size == ((10 * 9 + 1) * 8, (2 * 9 + 1) * 8)
    assert len(os.listdir(cache)) == 1  # the scoring classifier was trained once and cached


def test_classifier_is_cached_per_data_set(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(64, 8, 8, 1)).astype(np.float32)
    labels = (np.arange(64) % 4).astype(np.int32)
    settings = classifier_lib.ClassifierSettings(num_classes=4, steps=5, batch_size=16)
    cache = str(tmp_path)
    _, params, accuracy, path = classifier_lib.load_or_train_classifier(images, labels, images, labels, settings,
                                                                         cache)

    def no_training(*_args):
        raise AssertionError("the cached classifier was trained again")
    monkeypatch.setattr(classifier_lib, "train_classifier", no_training)
    _, again, accuracy_again, path_again = classifier_lib.load_or_train_classifier(
        images, labels, images, labels, settings, cache)
    assert path_again == path and accuracy_again == accuracy
    leaves_equal(params, again)
    with pytest.raises(AssertionError, match="trained again"):  # other data: another cache entry
        classifier_lib.load_or_train_classifier(images[::-1].copy(), labels, images, labels, settings, cache)


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="config field loss.name='wgan' is not allowed: expected one of minimax"):
        build_task(ring_config("loss.name=wgan"), str(tmp_path))
    with pytest.raises(ValueError, match="config field data.dataset='spiral' is not allowed: expected one of ring, grid, digits"):
        build_task(ring_config("data.dataset=spiral"), str(tmp_path))
    with pytest.raises(ValueError, match="config field model.pack=0 is not allowed: expected an integer >= 1"):
        build_task(ring_config("model.pack=0"), str(tmp_path))
    with pytest.raises(DataError, match="model.num_classes=5 but the data have 8 classes"):
        build_task(ring_config("model.num_classes=5"), str(tmp_path))
    unlabeled = tmp_path / "unlabeled.npz"
    np.savez(unlabeled, images=np.random.default_rng(0).uniform(size=(40, 8, 8)))
    dcgan = ["train.progress_bar=false", f"data.path={unlabeled}", "eval.classifier_steps=0"]
    with pytest.raises(DataError, match="class-conditional.*needs labels"):
        build_task(load_config(config_path("dcgan.py:tiny"), dcgan + ["model.num_classes=10"]), str(tmp_path))
    with pytest.raises(ValueError, match="image size divisible by 4, got 10"):
        build_task(load_config(config_path("dcgan.py:tiny"), dcgan + ["data.image_size=10"]), str(tmp_path))
