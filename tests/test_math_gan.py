"""Item 5 of the math reproductions: D*, V(D*, G) = -log 4 + 2 JSD, and the generator gradients."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.gan import losses
from aigc_jax.reproductions import gan_game
from aigc_jax.reproductions.gan_game import Gaussian


def test_value_at_an_undecided_discriminator_is_minus_log_4_and_jsd_bounds():
    p, q = Gaussian(0.0, 1.0), Gaussian(1.5, 0.7)
    half = lambda x: np.zeros_like(x)  # noqa: E731 - D = 1/2 everywhere
    assert gan_game.value_by_quadrature(half, p, q) == pytest.approx(-math.log(4), abs=1e-9)
    assert gan_game.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-9)
    assert gan_game.jensen_shannon(p, q) == pytest.approx(gan_game.jensen_shannon(q, p), abs=1e-9)
    assert 0 < gan_game.jensen_shannon(p, q) < math.log(2)
    assert gan_game.jensen_shannon(p, Gaussian(30.0, 1.0)) == pytest.approx(math.log(2), abs=1e-9)


def test_optimal_discriminator_beats_any_other():
    p, q = Gaussian(0.0, 1.0), Gaussian(1.0, 1.0)
    best = gan_game.value_by_quadrature(lambda x: gan_game.optimal_logit(x, p, q), p, q)
    for wrong in (lambda x: gan_game.optimal_logit(x, p, q) + 0.3, lambda x: 0.8 * gan_game.optimal_logit(x, p, q)):
        assert gan_game.value_by_quadrature(wrong, p, q) < best


def test_generator_losses_agree_with_the_gan_family():
    if not hasattr(losses, "gan_generator_loss_saturating"):
        pytest.skip("aigc_jax.families.gan.losses has no GAN losses yet")
    logits = jnp.linspace(-8.0, 8.0, 33)
    saturating, nonsaturating = gan_game.generator_losses(logits)
    assert float(saturating) == pytest.approx(float(losses.gan_generator_loss_saturating(logits)), abs=1e-6)
    assert float(nonsaturating) == pytest.approx(float(losses.gan_generator_loss_nonsaturating(logits)), abs=1e-6)


def test_shift_generator_gradients_closed_forms():
    z = np.random.default_rng(0).standard_normal(1000)
    g = gan_game.shift_generator_gradients(3.0, Gaussian(0.0, 1.0), z)
    assert g["saturating"] == pytest.approx(g["saturating_closed"], rel=1e-4)
    assert g["nonsaturating"] == pytest.approx(g["nonsaturating_closed"], rel=1e-4)
    # theta E[D] and theta E[1 - D] add up to theta
    assert g["saturating"] + g["nonsaturating"] == pytest.approx(3.0, rel=1e-5)


def test_item_5(tmp_path):
    report = gan_game.reproduce(str(tmp_path), steps=1500, batch=2048, mc_samples=50_000)  # D* within 0.040 of 0.05
    assert [c.passed for c in report.checks] == [True] * len(report.checks), report.checks
    for name in report.figures:
        assert (tmp_path / name).stat().st_size > 1000
