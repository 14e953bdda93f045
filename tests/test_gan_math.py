"""GAN losses, penalties, packing, models and metrics against hand-checked values and closed forms."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from aigc_jax.metrics import classifier_score
from aigc_jax.metrics import frechet
from aigc_jax.metrics import mode_coverage
from aigc_jax.families.gan import losses
from aigc_jax.data import toy2d
from aigc_jax.families.gan.model import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator,
                                 attach_labels, pack)

LN2, LN3 = math.log(2.0), math.log(3.0)
# D(x) = sigmoid(logit): real logits [0, ln 3] -> D = [1/2, 3/4]; fake logits [0, -ln 3] -> D = [1/2, 1/4]
REAL_LOGITS = jnp.array([0.0, LN3])
FAKE_LOGITS = jnp.array([0.0, -LN3])
REAL_SCORES = jnp.array([2.0, 0.5])
FAKE_SCORES = jnp.array([-2.0, 0.5])


def test_minimax_losses_by_hand():
    # -E log D(x) - E log(1 - D(G(z))) = mean(ln 2, ln 4/3) + mean(ln 2, ln 4/3) = ln 8/3
    assert float(losses.gan_discriminator_loss(REAL_LOGITS, FAKE_LOGITS)) == pytest.approx(math.log(8 / 3), 1e-6)
    # saturating: E log(1 - D(G(z))) = mean(ln 1/2, ln 3/4)
    assert float(losses.gan_generator_loss_saturating(FAKE_LOGITS)) == pytest.approx(
        0.5 * (math.log(0.5) + math.log(0.75)), 1e-6)
    # non-saturating: -E log D(G(z)) = mean(ln 2, ln 4)
    assert float(losses.gan_generator_loss_nonsaturating(FAKE_LOGITS)) == pytest.approx(1.5 * LN2, 1e-6)


def test_saturating_generator_gradient_vanishes_where_nonsaturating_does_not():
    confident_fake = jnp.array([-10.0])  # D(G(z)) ~ 4.5e-5: the discriminator rejects the fake
    saturating = jax.grad(lambda f: losses.gan_generator_loss_saturating(f))(confident_fake)
    nonsaturating = jax.grad(lambda f: losses.gan_generator_loss_nonsaturating(f))(confident_fake)
    assert abs(float(saturating[0])) < 1e-4 and abs(float(nonsaturating[0])) > 0.99


def test_hinge_wasserstein_least_squares_by_hand():
    # hinge: mean(relu(1 - [2, .5])) + mean(relu(1 + [-2, .5])) = 0.25 + 0.75
    assert float(losses.hinge_discriminator_loss(REAL_SCORES, FAKE_SCORES)) == pytest.approx(1.0)
    assert float(losses.hinge_generator_loss(FAKE_SCORES)) == pytest.approx(0.75)
    # Wasserstein critic: mean(fake) - mean(real) = -0.75 - 1.25
    assert float(losses.wasserstein_critic_loss(REAL_SCORES, FAKE_SCORES)) == pytest.approx(-2.0)
    assert float(losses.wasserstein_generator_loss(FAKE_SCORES)) == pytest.approx(0.75)
    # least squares: 1/2 mean((r - 1)^2) + 1/2 mean(f^2) = 1/2 (1 + 1/4)/2 + 1/2 (4 + 1/4)/2
    assert float(losses.least_squares_discriminator_loss(REAL_SCORES, FAKE_SCORES)) == pytest.approx(1.375)
    assert float(losses.least_squares_generator_loss(FAKE_SCORES)) == pytest.approx(0.5 * (9 + 0.25) / 2)


def linear_critic(weights):
    return lambda x: x.reshape(x.shape[0], -1) @ weights.reshape(-1)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_and_closed_form_otherwise():
    rng = np.random.default_rng(0)
    real = jnp.asarray(rng.normal(size=(16, 3, 2)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(16, 3, 2)), jnp.float32)
    w = rng.normal(size=(3, 2))
    unit = jnp.asarray(w / np.linalg.norm(w), jnp.float32)
    assert float(losses.gradient_penalty(linear_critic(unit), real, fake, jax.random.key(1))) == pytest.approx(
        0.0, abs=1e-5)
    # ||grad|| = 3 everywhere: lambda * (3 - 1)^2 with the default lambda = 10
    assert float(losses.gradient_penalty(linear_critic(3 * unit), real, fake, jax.random.key(1))) == pytest.approx(
        40.0, rel=1e-5)


def test_gradient_penalty_is_taken_at_interpolates():
    """For f(x) = ||x||^2 / 2 the gradient is x_hat itself; with real = 0 and fake = 1 (4 dims),
    ||x_hat|| = 2 (1 - eps), so the penalty is lambda * E(1 - 2 eps)^2 = lambda / 3 for eps ~ U[0, 1]."""
    real, fake = jnp.zeros((20000, 4)), jnp.ones((20000, 4))
    quadratic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=-1)  # noqa: E731
    value = float(losses.gradient_penalty(quadratic, real, fake, jax.random.key(0), weight=1.0))
    assert value == pytest.approx(1.0 / 3.0, abs=0.01)


def test_r1_equals_the_squared_gradient_norm_on_real_data():
    rng = np.random.default_rng(1)
    real = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    quadratic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=-1)  # noqa: E731 - gradient = x
    expected = 0.5 * 2.0 * np.mean(np.sum(np.square(np.asarray(real)), axis=-1))
    assert float(losses.r1_penalty(quadratic, real, gamma=2.0)) == pytest.approx(expected, rel=1e-5)
    w = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
    assert float(losses.r1_penalty(linear_critic(w), real, gamma=10.0)) == pytest.approx(
        5.0 * float(jnp.sum(w * w)), rel=1e-5)


def test_pacgan_packing_shapes_and_layout():
    x = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(pack(x, 2), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    assert pack(x, 1) is x
    images = jnp.asarray(np.random.default_rng(0).normal(size=(6, 8, 8, 2)), jnp.float32)
    packed = pack(images, 3)
    assert packed.shape == (2, 8, 8, 6)
    for j in range(2):
        for k in range(3):  # example k of pack j sits in channels 2k, 2k + 1
            np.testing.assert_array_equal(packed[j, :, :, 2 * k:2 * k + 2], images[3 * j + k])
    with pytest.raises(ValueError, match="cannot pack 6 examples into groups of 4"):
        pack(images, 4)


def test_labels_are_attached_as_features_or_channels():
    vectors = attach_labels(jnp.zeros((3, 2)), jnp.array([0, 2, 1]), 3)
    np.testing.assert_array_equal(vectors[:, 2:], np.eye(3)[[0, 2, 1]])
    maps = attach_labels(jnp.zeros((2, 4, 4, 1)), jnp.array([1, 0]), 2)
    assert maps.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(maps[0, :, :, 2], np.ones((4, 4)))
    np.testing.assert_array_equal(maps[1, :, :, 2], np.zeros((4, 4)))


@pytest.mark.parametrize("size", [8, 28])
def test_dcgan_shapes_and_packed_discriminator(size):
    z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16)), jnp.float32)
    generator = DCGANGenerator(image_size=size, width=16, num_classes=10)
    labels = jnp.array([0, 1, 2, 3])
    variables = generator.init(jax.random.key(0), z, labels, train=False)
    images, _ = generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])
    assert images.shape == (4, size, size, 1) and float(jnp.max(jnp.abs(images))) <= 1.0
    other = generator.apply(variables, z, labels + 1, train=False)
    assert float(jnp.max(jnp.abs(other - generator.apply(variables, z, labels, train=False)))) > 0
    discriminator = DCGANDiscriminator(width=8)
    packed = pack(attach_labels(images, labels, 10), 2)
    d_params = discriminator.init(jax.random.key(1), packed)
    assert discriminator.apply(d_params, packed).shape == (2,)


def test_dcgan_generator_without_batch_norm_draws_each_sample_alone():
    """With batch norm a training-mode sample depends on its batch; without (model.g_batch_norm=False,
    the StyleGAN2 mode-collapse diagnostic) it does not, and there are no batch statistics."""
    z = jnp.asarray(np.random.default_rng(1).normal(size=(8, 16)), jnp.float32)
    for batch_norm in (True, False):
        generator = DCGANGenerator(image_size=8, width=16, batch_norm=batch_norm)
        variables = generator.init(jax.random.key(0), z, train=False)
        assert ("batch_stats" in variables) == batch_norm
        full, _ = generator.apply(variables, z, train=True, mutable=["batch_stats"])
        part, _ = generator.apply(variables, z[:3], train=True, mutable=["batch_stats"])
        coupled = float(jnp.max(jnp.abs(full[:3] - part))) > 1e-3
        assert coupled == batch_norm


def test_mlp_models_and_batch_independent_sampling():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(32, 2)), jnp.float32)
    generator = MLPGenerator(hidden=16, num_layers=2)
    variables = generator.init(jax.random.key(0), z, train=False)
    trained = {"params": variables["params"],
               "batch_stats": jax.tree_util.tree_map(lambda s: s + 0.3, variables["batch_stats"])}
    full = generator.apply(trained, z, train=False)
    np.testing.assert_allclose(generator.apply(trained, z[:3], train=False), full[:3], rtol=1e-5, atol=1e-6)
    train_full, _ = generator.apply(trained, z, train=True, mutable=["batch_stats"])
    train_part, _ = generator.apply(trained, z[:3], train=True, mutable=["batch_stats"])
    assert float(jnp.max(jnp.abs(train_full[:3] - train_part))) > 1e-3  # batch statistics in training
    discriminator = MLPDiscriminator(hidden=8, num_layers=2, maxout_pieces=3)
    d_params = discriminator.init(jax.random.key(1), pack(full, 4))
    assert d_params["params"]["Dense_0"]["kernel"].shape == (8, 1)
    assert discriminator.apply(d_params, pack(full, 4)).shape == (8,)


def test_mixture_setups_match_the_papers():
    ring = toy2d.ring_means(8, 1.0)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)
    np.testing.assert_allclose(ring[2], [0.0, 1.0], atol=1e-12)
    grid = toy2d.grid_means(5, 2.0)
    assert sorted(set(grid[:, 0])) == [-4.0, -2.0, 0.0, 2.0, 4.0] and len({tuple(p) for p in grid}) == 25
    mixture = toy2d.Mixture2D(means=grid, std=0.05, name="grid")
    points, labels = mixture.sample(np.random.default_rng(0), 50_000)
    np.testing.assert_allclose(np.std(points - grid[labels], axis=0), 0.05, rtol=0.03)
    assert np.bincount(labels, minlength=25).min() > 1800


def test_mode_collapse_metrics_by_hand():
    means = jnp.asarray(toy2d.ring_means(8, 1.0), jnp.float32)
    samples = jnp.array([[1.0, 0.0], [1.0, 0.029], [1.0, -0.02], [-1.0, 0.0], [0.0, 0.0], [1.0, 0.031]])
    sums = mode_coverage.mode_sums(samples, means, 0.01, jnp.ones(6))
    np.testing.assert_array_equal(sums["mode_counts"], [3, 0, 0, 0, 1, 0, 0, 0])  # 3.1 std is not high quality
    metrics = mode_coverage.mode_collapse_metrics(np.asarray(sums["mode_counts"]), 6)
    assert metrics["modes_captured"] == 2
    assert metrics["high_quality_percent"] == pytest.approx(400 / 6)
    assert metrics["reverse_kl"] == pytest.approx(0.75 * math.log(8 * 0.75) + 0.25 * math.log(8 * 0.25))
    uniform = mode_coverage.mode_collapse_metrics(np.full(8, 5.0), 40)
    assert uniform["reverse_kl"] == pytest.approx(0.0, abs=1e-12) and uniform["modes_captured"] == 8
    assert mode_coverage.mode_collapse_metrics(np.zeros(8), 10)["reverse_kl"] == pytest.approx(math.log(8))


def test_frechet_distance_closed_forms():
    diag = frechet.frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
    assert diag == pytest.approx(5.0 + 1.0 + 1.0)  # |mu|^2 + sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-6)
    assert frechet.frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0.0, abs=1e-8)


def test_feature_sums_over_batches_give_the_sample_gaussian():
    features = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    weight = np.ones(40, np.float32)
    weight[30:] = 0  # padding rows must not count
    padded = np.concatenate([features, 100 * np.ones((10, 4), np.float32)])
    first = frechet.feature_sums(jnp.asarray(padded[:20]), jnp.asarray(weight[:20]))
    second = frechet.feature_sums(jnp.asarray(padded[20:]), jnp.asarray(weight[20:]))
    total = jax.tree_util.tree_map(lambda x, y: x + y, first, second)
    mean, cov = frechet.gaussian_from_sums(total["feature_sum"], total["feature_outer"], total["count"])
    np.testing.assert_allclose(mean, features.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-4, atol=1e-5)


def test_classifier_score_limits():
    confident = jnp.asarray(50.0 * np.eye(10)[np.arange(100) % 10], jnp.float32)
    sums = classifier_score.classifier_sums(confident, jnp.ones(100), labels=jnp.arange(100) % 10)
    sums["count"] = 100.0
    metrics = classifier_score.classifier_metrics_from_sums(sums)
    assert metrics["classifier_score"] == pytest.approx(10.0, rel=1e-4)  # confident and balanced
    assert metrics["mean_confidence"] == pytest.approx(1.0) and metrics["label_accuracy"] == 1.0
    collapsed = classifier_score.classifier_sums(jnp.asarray(50.0 * np.eye(10)[np.zeros(100, int)]), jnp.ones(100))
    collapsed["count"] = 100.0
    assert classifier_score.classifier_metrics_from_sums(collapsed)["classifier_score"] == pytest.approx(1.0, rel=1e-4)
