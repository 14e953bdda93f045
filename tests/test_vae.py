"""The VAE: closed-form KL against Monte Carlo, the ELBO <= IWAE_k <= log p(x) chain on a linear
Gaussian model whose log p(x) is known exactly, likelihoods by hand, and a tiny run end to end."""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal, norm
from PIL import Image

from aigc_jax.config import load_config
from aigc_jax.families.vae import model as vae_model
from aigc_jax.families.vae.model import VAE
from aigc_jax.families import build_task
from aigc_jax.families.vae import task as vae_task
from aigc_jax.families.vae import losses as vae_losses
from aigc_jax import families
from aigc_jax.train import loop
from aigc_jax.train.metrics import read_metrics
from tests.conftest import config_path


def quiet(*_args):
    pass


def tiny_config(*overrides):
    return load_config(config_path("vae.py:tiny"), ["train.progress_bar=false", *overrides])


def test_closed_form_kl_matches_monte_carlo_and_hand_values():
    mean = jnp.array([0.7, -1.2, 0.0, 2.0])
    log_var = jnp.array([-0.5, 0.3, -2.0, 1.0])
    closed = float(vae_losses.gaussian_kl_to_standard_normal(mean, log_var))
    # E_q[log q(z) - log p(z)] from 400k reparameterised samples
    z = vae_losses.reparameterize(jax.random.key(0), mean[None], log_var[None], num_samples=400_000)[:, 0]
    log_ratio = (vae_losses.diagonal_gaussian_log_density(z, mean, log_var)
                 - vae_losses.diagonal_gaussian_log_density(z, jnp.zeros(4), jnp.zeros(4)))
    estimate, stderr = float(jnp.mean(log_ratio)), float(jnp.std(log_ratio)) / math.sqrt(len(log_ratio))
    assert abs(estimate - closed) < 4 * stderr, (estimate, closed, stderr)
    # by hand: KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e^2) || N(0, 1)) = (e^2 - 1 - 2) / 2
    assert float(vae_losses.gaussian_kl_to_standard_normal(jnp.array([1.0]), jnp.array([0.0]))) == pytest.approx(0.5)
    assert float(vae_losses.gaussian_kl_to_standard_normal(jnp.zeros(1), jnp.full(1, 2.0))) == pytest.approx(
        (math.exp(2.0) - 3.0) / 2.0, rel=1e-6)


def test_reparameterised_samples_have_the_posterior_moments_and_gradients():
    mean, log_var = jnp.array([[1.5, -0.5]]), jnp.array([[0.4, -1.0]])
    z = vae_losses.reparameterize(jax.random.key(1), mean, log_var, num_samples=200_000)[:, 0]
    np.testing.assert_allclose(np.mean(z, 0), mean[0], atol=0.01)
    np.testing.assert_allclose(np.var(z, 0), np.exp(log_var[0]), rtol=0.02)
    # the objective averages z_j^2 over the 2 dimensions: d/d mean_j = mean_j, d/d log_var_j = var_j / 2
    grad_mean, grad_log_var = jax.grad(
        lambda m, lv: jnp.mean(jnp.square(vae_losses.reparameterize(jax.random.key(2), m, lv, 200_000))),
        argnums=(0, 1))(mean, log_var)
    np.testing.assert_allclose(grad_mean[0], mean[0], rtol=0.02)
    np.testing.assert_allclose(grad_log_var[0], np.exp(log_var[0]) / 2, rtol=0.03)


def test_decoder_log_likelihoods_match_their_formulas():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    x = (rng.uniform(size=(3, 4, 4, 1)) < 0.5).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-logits))
    by_hand = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    np.testing.assert_allclose(vae_model.log_likelihood("bernoulli", logits, x, 0.01), by_hand, rtol=1e-5)
    output = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    grey = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
    std = 0.05 + np.log1p(np.exp(output[..., 1:]))
    expected = np.sum(norm.logpdf(grey, output[..., :1], std), axis=(1, 2, 3))
    np.testing.assert_allclose(vae_model.log_likelihood("gaussian", output, grey, 0.05), expected, rtol=1e-5)


def linear_gaussian(rng, latent_dim=2, data_dim=5, sigma=0.6):
    """p(z) = N(0, I), p(x | z) = N(W z + b, sigma^2 I), W with orthogonal columns so that the
    exact posterior N(mu, S) is diagonal: S = (I + W^T W / sigma^2)^-1, mu = S W^T (x - b) / sigma^2."""
    q, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))
    w = jnp.asarray(q * np.array([2.0, 1.2])[:latent_dim], jnp.float32)
    b = jnp.asarray(rng.normal(size=data_dim), jnp.float32)
    posterior_var = 1.0 / (1.0 + jnp.sum(w * w, axis=0) / sigma ** 2)  # [L]

    def log_likelihood(z, x):
        return jnp.sum(norm.logpdf(x, z @ w.T + b, sigma), axis=-1)

    def exact_encode(x):
        mean = (x - b) @ w * posterior_var / sigma ** 2
        return mean, jnp.broadcast_to(jnp.log(posterior_var), mean.shape)

    def log_marginal(x):
        return multivariate_normal.logpdf(x, b, w @ w.T + sigma ** 2 * jnp.eye(data_dim))

    return exact_encode, log_likelihood, log_marginal, b


def test_iwae_is_exact_with_the_true_posterior_and_elbo_le_iwae_k_increasing_to_log_p():
    exact_encode, log_likelihood, log_marginal, b = linear_gaussian(np.random.default_rng(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 5)) * 2.0 + np.asarray(b), jnp.float32)
    truth = log_marginal(x)
    # with q = the exact posterior every importance weight equals p(x): L_k = log p(x) for every draw
    for k in (1, 7):
        np.testing.assert_allclose(
            vae_losses.importance_weighted_bound(exact_encode, log_likelihood, x, jax.random.key(k), k), truth,
            atol=2e-4)
    # ELBO = log p(x) - KL(q || posterior): exact in expectation (one-sample estimates vary)
    keys = jax.random.split(jax.random.key(3), 400)
    exact_elbo = jax.jit(jax.vmap(
        lambda key: vae_losses.elbo_terms(exact_encode, log_likelihood, x, key)["elbo"]))(keys)
    standard_error = float(jnp.max(jnp.std(exact_elbo, axis=0))) / math.sqrt(len(keys))
    np.testing.assert_allclose(jnp.mean(exact_elbo, axis=0), truth, atol=4 * standard_error)

    # a poor encoder (shrunken mean, too-wide variance): the gaps are large and ordered
    def poor_encode(data):
        mean, log_var = exact_encode(data)
        return 0.5 * mean, log_var + 1.0

    def mean_over_keys(fn):
        return jnp.mean(jax.jit(jax.vmap(fn))(keys), axis=0)

    elbo_mean = mean_over_keys(lambda key: vae_losses.elbo_terms(poor_encode, log_likelihood, x, key)["elbo"])
    bounds = {k: mean_over_keys(lambda key, k=k: vae_losses.importance_weighted_bound(
        poor_encode, log_likelihood, x, key, k)) for k in (1, 3, 10, 30, 1000)}
    # L_1 is an unbiased estimate of the ELBO (the closed-form KL changes only the variance)
    np.testing.assert_allclose(bounds[1], elbo_mean, atol=0.15)
    for small, large in ((1, 3), (3, 10), (10, 30)):
        assert np.all(bounds[large] > bounds[small]), (small, large)
    assert np.all(elbo_mean < bounds[3]) and np.all(bounds[1000] <= truth + 0.02)
    # the bound approaches log p(x): the gap shrinks with k
    assert np.all(truth - bounds[1000] < 0.2 * (truth - elbo_mean))


def test_vae_module_elbo_below_iwae_on_average_and_rising_with_k():
    config = tiny_config()
    model = VAE.from_config(config.model, (8, 8, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    x = (np.random.default_rng(0).uniform(size=(8, 8, 8, 1)) < 0.3).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), 64)
    elbo_mean = float(jnp.mean(jax.jit(jax.vmap(lambda k: vae_losses.elbo(model, params, x, k)["elbo"]))(keys)))
    bounds = [float(jnp.mean(jax.jit(jax.vmap(lambda key, k=k: vae_losses.iwae_bound(
        model, params, x, key, num_samples=k)))(keys))) for k in (1, 10, 100)]
    assert abs(bounds[0] - elbo_mean) < 0.05
    assert elbo_mean < bounds[1] < bounds[2]


def test_binarization_threshold_and_seeded_bernoulli():
    grey = np.array([0.0, 7 / 16, 0.5, 1.0], np.float32)
    np.testing.assert_array_equal(vae_task.binarize(grey, "threshold"), [0, 0, 1, 1])
    levels = np.full(100_000, 0.3, np.float32)
    first = vae_task.binarize(levels, "stochastic", np.random.default_rng([0, 5]))
    assert set(np.unique(first)) == {0.0, 1.0} and abs(first.mean() - 0.3) < 0.01
    np.testing.assert_array_equal(first, vae_task.binarize(levels, "stochastic", np.random.default_rng([0, 5])))


def test_evaluation_is_deterministic_and_independent_of_the_batching():
    results = []
    for batch_size in (32, 5):
        task = build_task(tiny_config(f"eval.batch_size={batch_size}"), "")
        state = jax.jit(task.init)(jax.random.key(0))
        results.append(loop.evaluate(jax.jit(task.eval_step), state, task.eval_batches(), task.summarize_eval))
    for other in results[1:]:
        for key in ("negative_elbo", "negative_iwae", "kl", "reconstruction"):
            assert other[key] == pytest.approx(results[0][key], rel=1e-5), key


def test_tiny_run_learns_and_writes_its_figures(tmp_path):
    config = tiny_config("train.num_steps=60", "train.eval_every=60", "train.checkpoint_every=60",
                         "optimizer.learning_rate=0.01")
    workdir = str(tmp_path / "vae")
    families.train(config, workdir, echo=quiet)
    evals = read_metrics(workdir, "eval")
    assert evals[-1]["negative_elbo"] < evals[0]["negative_elbo"] - 5.0
    assert evals[-1]["negative_iwae"] <= evals[-1]["negative_elbo"] + 0.5  # IWAE_8 bound is the tighter one
    assert evals[-1]["kl"] >= 0
    scale, tile = 8, 8 * 8 + 8  # 8x8 digits shown 8x bigger, one-pixel (x8) padding
    sizes = {name: Image.open(os.path.join(workdir, name, "step_0000060.png")).size
             for name in ("samples", "reconstructions", "interpolations")}
    assert sizes["samples"] == (2 * tile + scale, 2 * tile + scale)  # 4 prior samples, 2 x 2
    assert sizes["reconstructions"] == (8 * tile + scale, 8 * tile + scale)  # 4 pairs of rows of 8
    assert sizes["interpolations"] == (3 * tile + scale, 8 * tile + scale)  # 8 pairs x 3 steps
    # the restored checkpoint evaluates to the logged numbers (fixed per-image noise)
    _, params, saved_config = vae_task.load_trained(workdir)
    task = build_task(saved_config, "")
    state = jax.jit(task.init)(jax.random.key(0)).replace(params=params)
    again = loop.evaluate(jax.jit(task.eval_step), state, task.eval_batches(), task.summarize_eval)
    assert again["negative_iwae"] == pytest.approx(evals[-1]["negative_iwae"], rel=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (["model.decoder=bernoulli", "data.binarize=none"], "needs binary images"),
    (["model.kind=dense"], "config field model.kind='dense' is not allowed: expected one of mlp, conv"),
    (["data.binarize=random"], "config field data.binarize='random' is not allowed"),
    (["eval.iwae_samples=0"], "config field eval.iwae_samples=0 is not allowed"),
])
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_task(tiny_config(*overrides), "")


def test_conv_needs_divisible_images_and_runs_on_digits():
    with pytest.raises(ValueError, match="divisible by 4, got 6x6"):
        VAE.from_config(tiny_config("model.kind=conv").model, (6, 6, 1))
    config = tiny_config("model.kind=conv")
    task = build_task(config, "")
    state = jax.jit(task.init)(jax.random.key(0))
    state, metrics = jax.jit(task.train_step)(state, task.train_batch(0), jax.random.key(1))
    # at initialisation the decoder is nearly uniform: about 64 ln 2 nats of reconstruction
    assert abs(float(metrics["reconstruction"]) - 64 * math.log(2)) < 10


def test_config_variants_resolve():
    for variant in ("", "conv", "gaussian", "mnist", "mnist,conv"):
        config = load_config(config_path(f"vae.py:{variant}" if variant else "vae.py"))
        assert config.task == "vae"
    assert load_config(config_path("vae.py:gaussian")).data.binarize == "none"
    with pytest.raises(ValueError, match="unknown vae variant"):
        load_config(config_path("vae.py:huge"))
