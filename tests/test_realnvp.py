"""RealNVP: inversion, each coupling's log-determinant against jax.jacfwd, a 2-D density that
integrates to 1, the logit/dequantisation bookkeeping in closed form, the 2-D data, and tiny runs."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from aigc_jax.config import ConfigError, load_config
from aigc_jax.data import density2d
from aigc_jax.data.text import DataError
from aigc_jax.families.flow import model as realnvp
from aigc_jax.families.flow.model import AffineCoupling, RealNVP2D, RealNVPImage
from aigc_jax.families import build_task
from aigc_jax.families.flow import task as flow_task
from aigc_jax.families.flow import losses as flow_losses
from aigc_jax import families
from aigc_jax.train.metrics import read_metrics
from tests.conftest import config_path


def quiet(*_args):
    pass


def perturbed(params, seed: int, std: float):
    """params + N(0, std^2) noise: moves the zero-initialised output layers off the identity."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [x + std * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def log_abs_det_jacobian(fn, x_one):
    """log |det d fn / d x| for one example, by jax.jacfwd on the flattened input."""
    shape = x_one.shape
    jacobian = jax.jit(jax.jacfwd(lambda flat: fn(flat.reshape((1,) + shape)).reshape(-1)))(x_one.reshape(-1))
    sign, log_det = jnp.linalg.slogdet(jacobian)
    assert float(sign) != 0.0
    return float(log_det)


COUPLINGS = [("alternate", 0, (2,)), ("alternate", 1, (2,)), ("checkerboard", 0, (4, 4, 2)),
             ("checkerboard", 1, (4, 4, 2)), ("channel", 0, (4, 4, 2)), ("channel", 1, (2, 2, 4))]


@pytest.mark.parametrize("mask, parity, shape", COUPLINGS)
def test_coupling_log_det_equals_jacobian_and_inverse_is_exact(mask, parity, shape):
    coupling = AffineCoupling(mask, parity, hidden=8, depth=1, log_scale_bound=3.0)
    x = jax.random.normal(jax.random.key(0), (3,) + shape)
    params = perturbed(coupling.init(jax.random.key(1), x)["params"], seed=2, std=0.3)
    y, log_det = coupling.apply({"params": params}, x, method=AffineCoupling.forward)
    forward = lambda inputs: coupling.apply({"params": params}, inputs, method=AffineCoupling.forward)[0]  # noqa: E731
    for i in range(2):
        assert log_det[i] == pytest.approx(log_abs_det_jacobian(forward, x[i]), abs=1e-4)
    assert float(jnp.max(jnp.abs(log_det))) > 0.1  # not the identity
    b = realnvp.coupling_mask(mask, parity, shape).astype(x.dtype)
    np.testing.assert_array_equal(y * b, x * b)  # the conditioning half passes through unchanged
    inverse = coupling.apply({"params": params}, y, method=AffineCoupling.inverse)
    np.testing.assert_allclose(inverse, x, rtol=1e-5, atol=1e-5)


def test_log_scale_is_bounded():
    raw = jnp.array([-1e4, -1.0, 0.0, 1e-3, 5.0, 1e4])
    scale = realnvp.bounded_log_scale(raw, 2.0)
    assert float(jnp.max(jnp.abs(scale))) <= 2.0
    assert float(scale[3]) == pytest.approx(1e-3, rel=1e-5)  # ~ identity near 0


def test_masks_and_squeeze_by_hand():
    np.testing.assert_array_equal(realnvp.coupling_mask("checkerboard", 0, (2, 3, 1))[..., 0],
                                  [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(realnvp.coupling_mask("channel", 1, (1, 1, 4)), [0, 0, 1, 1])
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    squeezed = realnvp.squeeze(x)
    assert squeezed.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(squeezed[0, 0, 0], [0, 1, 4, 5])  # the top-left 2x2 block
    np.testing.assert_array_equal(realnvp.unsqueeze(squeezed), x)


def small_image_flow():
    model = RealNVPImage((8, 8, 1), num_scales=2, couplings_per_scale=2, hidden_channels=8, num_blocks=1)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    return model, x, model.init(jax.random.key(0), x)["params"]


def test_image_flow_inverts_and_its_total_log_det_is_the_jacobian():
    model, x, params = small_image_flow()
    params = perturbed(params, seed=3, std=0.02)
    z, log_det = model.apply({"params": params}, x, method=RealNVPImage.forward)
    assert z.shape == (2, 64)
    np.testing.assert_allclose(model.apply({"params": params}, z, method=RealNVPImage.inverse), x,
                               rtol=1e-5, atol=1e-5)
    forward = lambda inputs: model.apply({"params": params}, inputs, method=RealNVPImage.forward)[0]  # noqa: E731
    assert float(log_det[0]) == pytest.approx(log_abs_det_jacobian(forward, x[0]), abs=2e-3)


def test_image_flow_at_initialisation_is_the_logit_transform_in_closed_form():
    """Every coupling starts as the identity, so log p(x) = sum_i [log N(logit p_i) + log (1 - 2a)
    - log p_i - log(1 - p_i)], p = a + (1 - 2a) x, whatever order squeeze and factor-out give z."""
    model, x, params = small_image_flow()
    alpha = model.alpha
    p = alpha + (1 - 2 * alpha) * np.asarray(x, np.float64)
    logit = np.log(p) - np.log1p(-p)
    expected = np.sum(-0.5 * logit ** 2 - 0.5 * math.log(2 * math.pi) + math.log(1 - 2 * alpha)
                      - np.log(p) - np.log1p(-p), axis=(1, 2, 3))
    np.testing.assert_allclose(model.apply({"params": params}, x, method=RealNVPImage.log_prob), expected, rtol=1e-5)
    # the dequantisation bound adds D log L; bits per dimension divide nats by D ln 2
    nll = flow_losses.image_negative_log_likelihood(model, params, x, 17)
    np.testing.assert_allclose(nll, -expected + 64 * math.log(17), rtol=1e-5)
    bpd = flow_task.summarize_eval_image({"nats": float(jnp.sum(nll)), "count": 2.0}, dims=64)["bits_per_dim"]
    assert bpd == pytest.approx(float(jnp.mean(nll)) / (64 * math.log(2)), rel=1e-6)


def test_2d_flow_inverts_and_its_density_integrates_to_one():
    """Grid: cell centres of a 800 x 800 grid on [-8, 8]^2 (cell 0.02 x 0.02); tolerance 5e-3."""
    model = RealNVP2D(num_couplings=6, hidden_dim=32, num_hidden_layers=2)
    params = perturbed(model.init(jax.random.key(0), jnp.zeros((1, 2)))["params"], seed=4, std=0.1)
    points = jax.random.normal(jax.random.key(5), (16, 2))
    z, _ = model.apply({"params": params}, points, method=RealNVP2D.forward)
    np.testing.assert_allclose(model.apply({"params": params}, z, method=RealNVP2D.inverse), points,
                               rtol=1e-5, atol=1e-5)
    grid, cell_area = flow_task.density_grid(8.0, 800)
    log_p = jax.jit(lambda g: flow_losses.log_density(model, params, g))(jnp.asarray(grid))
    assert float(jnp.sum(jnp.exp(log_p)) * cell_area) == pytest.approx(1.0, abs=5e-3)
    # and it is not the base density: the integral checks the log-determinants, not an identity map
    base = realnvp.standard_normal_log_density(jnp.asarray(grid))
    assert float(jnp.max(jnp.abs(log_p - base))) > 0.5


def test_2d_densities_are_pure_functions_of_seed_and_step():
    a = density2d.train_batch("moons", 0, 3, 500, 0.1)
    np.testing.assert_array_equal(a, density2d.train_batch("moons", 0, 3, 500, 0.1))
    assert not np.array_equal(a, density2d.train_batch("moons", 0, 4, 500, 0.1))
    noiseless = density2d.train_batch("moons", 0, 0, 1000, 0.0) + np.array([0.5, 0.25])
    on_upper = np.abs(np.hypot(noiseless[:, 0], noiseless[:, 1]) - 1) < 1e-5
    on_lower = np.abs(np.hypot(noiseless[:, 0] - 1, noiseless[:, 1] - 0.5) - 1) < 1e-5
    assert np.all(on_upper | on_lower) and 0.4 < on_upper.mean() < 0.6
    board = density2d.test_set("checkerboard", 0, 5000, 0.1)
    cells = np.floor(board + 2.0).astype(int)
    assert np.all((cells >= 0) & (cells < 4)) and np.all((cells.sum(axis=1) % 2) == 0)
    circles = density2d.test_set("circles", 0, 1000, 0.0)
    assert set(np.round(np.hypot(circles[:, 0], circles[:, 1]), 4)) == {0.5, 1.0}
    with pytest.raises(DataError, match="unknown 2-D data.dataset"):
        density2d.train_batch("swiss", 0, 0, 4, 0.1)


def test_number_of_levels_is_inferred():
    assert flow_losses.infer_num_levels(np.arange(17, dtype=np.float32) / 16) == 17
    assert flow_losses.infer_num_levels(np.arange(256, dtype=np.float32) / 255) == 256
    with pytest.raises(DataError, match="set data.num_levels"):
        flow_losses.infer_num_levels(np.array([0.1234], np.float32))


def test_2d_flow_learns_moons_better_than_any_gaussian(tmp_path):
    config = load_config(config_path("realnvp.py:moons"), [
        "train.progress_bar=false", "train.num_steps=300", "train.eval_every=300", "train.checkpoint_every=300",
        "model.hidden_dim=32", "model.num_couplings=6", "optimizer.learning_rate=0.003",
        "optimizer.warmup_steps=20", "data.num_test=1000", "eval.grid_resolution=100", "eval.grid_samples=200"])
    workdir = str(tmp_path / "moons")
    families.train(config, workdir, echo=quiet)
    final = read_metrics(workdir, "eval")[-1]
    # the best Gaussian's NLL is its entropy: 1/2 log det(2 pi e Cov) of the test points
    test = density2d.test_set("moons", config.seed, 1000, 0.1)
    gaussian_nll = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * np.cov(test.T))[1]
    assert final["loss"] < gaussian_nll - 0.4, (final["loss"], gaussian_nll)
    assert final["grid_mass"] == pytest.approx(1.0, abs=0.02)  # [-3, 3]^2 holds the density
    assert Image.open(os.path.join(workdir, "density", "step_0000300.png")).size[0] > 300
    # the exposed log-density of the restored flow gives the reported test loss
    model, params, _ = flow_task.load_trained(workdir)
    assert -float(jnp.mean(flow_losses.log_density(model, params, jnp.asarray(test)))) == pytest.approx(
        final["loss"], rel=1e-4)


def test_tiny_image_run_learns_and_writes_samples(tmp_path):
    config = load_config(config_path("realnvp.py:tiny"), [
        "train.progress_bar=false", "train.num_steps=40", "train.eval_every=40", "train.checkpoint_every=40",
        "optimizer.learning_rate=0.01"])
    workdir = str(tmp_path / "digits")
    families.train(config, workdir, echo=quiet)
    evals = read_metrics(workdir, "eval")
    assert evals[-1]["bits_per_dim"] < evals[0]["bits_per_dim"] - 0.5
    assert evals[-1]["nats"] == pytest.approx(evals[-1]["bits_per_dim"] * 64 * math.log(2), rel=1e-5)
    tile = 8 * 8 + 8  # 16 samples of 8x8 shown 8x bigger, 4 x 4 with one-pixel (x8) padding
    assert Image.open(os.path.join(workdir, "samples", "step_0000040.png")).size == (4 * tile + 8, 4 * tile + 8)


@pytest.mark.parametrize("overrides, error, message", [
    (["model.num_scales=5"], ValueError, "divisible by 16, got 8x8"),
    (["model.alpha=0.5"], ConfigError, r"config field model.alpha=0.5 is not allowed: expected a finite number > 0 and < 0.5"),
    (["data.dataset=swiss"], ConfigError, "config field data.dataset='swiss' is not allowed: expected one of digits, moons"),
    (["data.path=/nonexistent/images.idx"], DataError, "does not exist"),
])
def test_bad_config_is_a_clear_error(overrides, error, message):
    config = load_config(config_path("realnvp.py:tiny"), overrides)
    with pytest.raises(error, match=message):
        build_task(config, "")


def test_config_variants_resolve():
    assert load_config(config_path("realnvp.py")).task == "flow"
    assert load_config(config_path("realnvp.py:moons")).data.dataset == "moons"
    assert load_config(config_path("realnvp.py:mnist")).data.path.endswith("t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="unknown realnvp variant"):
        load_config(config_path("realnvp.py:huge"))
