"""The variational autoencoder as a family on the one training loop (Kingma & Welling 2014).

Objective (maximised; the loop minimises its negative): the beta-weighted evidence lower bound
  ELBO_beta(x) = E_q(z|x)[log p(x | z)] - beta KL(q(z | x) || p(z)),  p(z) = N(0, I),
with the expectation estimated by one reparameterised sample z = mean + exp(log_var / 2) * eps,
eps ~ N(0, I), and the KL in closed form for diagonal Gaussians. beta = 1 is the ELBO proper;
beta != 1 is the beta-VAE (Higgins et al. 2017).

Evaluation on the test split, in nats per image (sums over pixels):
  negative_elbo   -(E_q[log p(x | z)] - KL) with one sample per image (beta = 1);
  reconstruction  -E_q[log p(x | z)];  kl  KL(q(z | x) || p(z));
  negative_iwae   -L_k, the importance-weighted bound of Burda et al. (2016),
                  L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z | x), k = eval.iwae_samples;
                  ELBO = L_1 <= L_k <= L_{k+1} <= log p(x), so -L_k is an upper bound on -log p(x).
Evaluation noise is a fixed function of (seed, test-image index), the same at every evaluation.

Images (aigc_jax/data/images.py) for the Bernoulli decoder are binarised (`data.binarize`):
  threshold   x >= 0.5 -> 1, else 0 (deterministic; default);
  stochastic  x ~ Bernoulli(grey level): training images afresh at every step from rng([seed, step]),
              the test split once from a fixed seed (dynamic binarisation, as in Burda et al.);
  none        grey levels in [0, 1] (for the Gaussian decoder).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config as config_lib
from aigc_jax.data import images as image_data
from aigc_jax.data.text import DataError
from aigc_jax.image_grid import save_image_grid
from aigc_jax.models import vae as vae_model
from aigc_jax.models.vae import VAE
from aigc_jax.tasks import Task
from aigc_jax.train.checkpoints import Checkpointer
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path")
BINARIZATIONS = ("threshold", "stochastic", "none")
_BINARIZE_SALT = 0xB1
_EVAL_SALT = 0xE7A1

LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------
# The math: pure functions of arrays.
# ----------------------------------------------------------------------------------------

def gaussian_kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) = 1/2 sum_j (exp(log_var_j) + mean_j^2 - 1 - log_var_j)
    (Kingma & Welling 2014, appendix B). mean, log_var [..., L] -> [...] nats."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)


def diagonal_gaussian_log_density(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """log N(z; mean, diag exp(log_var)) = -1/2 sum_j ((z_j - mean_j)^2 / var_j + log var_j + log 2 pi);
    [..., L] -> [...]."""
    return -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-log_var) + log_var + LOG_2PI, axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """log N(z; 0, I), [..., L] -> [...]."""
    return -0.5 * jnp.sum(jnp.square(z) + LOG_2PI, axis=-1)


def reparameterize(rng: jax.Array, mean: jax.Array, log_var: jax.Array,
                   num_samples: Optional[int] = None) -> jax.Array:
    """z = mean + exp(log_var / 2) * eps, eps ~ N(0, I): differentiable in (mean, log_var).
    mean, log_var [B, L] -> z [B, L], or [num_samples, B, L] when num_samples is given."""
    shape = mean.shape if num_samples is None else (num_samples,) + mean.shape
    eps = jax.random.normal(rng, shape, mean.dtype)
    return mean + jnp.exp(0.5 * log_var) * eps


# encode(x [B, ...]) -> (mean, log_var) [B, L]; log_likelihood(z [B, L], x [B, ...]) -> [B]
EncodeFn = Callable[[jax.Array], tuple]
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]


def elbo_terms(encode: EncodeFn, log_likelihood: LogLikelihoodFn, x: jax.Array, rng: jax.Array) -> dict:
    """One-sample ELBO of each example: {'reconstruction': log p(x | z) (z ~ q by the
    reparameterisation trick), 'kl': closed-form KL(q(z | x) || N(0, I)),
    'elbo': reconstruction - kl}, each [B] in nats."""
    mean, log_var = encode(x)
    z = reparameterize(rng, mean, log_var)
    reconstruction = log_likelihood(z, x)
    kl = gaussian_kl_to_standard_normal(mean, log_var)
    return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}


def importance_weighted_bound(encode: EncodeFn, log_likelihood: LogLikelihoodFn, x: jax.Array,
                              rng: jax.Array, num_samples: int) -> jax.Array:
    """The IWAE bound (Burda et al. 2016) of each example, [B] nats:
    L_k(x) = log (1/k) sum_{i=1..k} w_i, w_i = p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x),
    computed as logsumexp(log w) - log k."""
    mean, log_var = encode(x)
    z = reparameterize(rng, mean, log_var, num_samples)  # [k, B, L]
    log_px_given_z = jax.vmap(lambda z_i: log_likelihood(z_i, x))(z)  # [k, B]
    log_w = log_px_given_z + standard_normal_log_density(z) - diagonal_gaussian_log_density(z, mean, log_var)
    return jax.nn.logsumexp(log_w, axis=0) - math.log(num_samples)


def model_functions(model: VAE, params) -> tuple[EncodeFn, LogLikelihoodFn]:
    """The (encode, log_likelihood) pair of a VAE module and its parameters."""
    def encode(x):
        return model.apply({"params": params}, x, method=VAE.encode)

    def log_likelihood(z, x):
        output = model.apply({"params": params}, z, method=VAE.decode)
        return vae_model.log_likelihood(model.likelihood, output, x, model.min_std)

    return encode, log_likelihood


def elbo(model: VAE, params, x: jax.Array, rng: jax.Array) -> dict:
    """One-sample ELBO terms of a batch x [B, H, W, C] under a VAE: dict of [B] nats (see elbo_terms)."""
    return elbo_terms(*model_functions(model, params), x, rng)


def iwae_bound(model: VAE, params, x: jax.Array, rng: jax.Array, num_samples: int) -> jax.Array:
    """IWAE bound L_k of a batch x [B, H, W, C] under a VAE with k = num_samples: [B] nats."""
    return importance_weighted_bound(*model_functions(model, params), x, rng, num_samples)


# ----------------------------------------------------------------------------------------
# Data.
# ----------------------------------------------------------------------------------------

def binarize(images: np.ndarray, how: str, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """[N, H, W, C] grey levels in [0, 1] -> binary (threshold 0.5, or Bernoulli draws), or unchanged."""
    if how == "threshold":
        return (images >= 0.5).astype(np.float32)
    if how == "stochastic":
        return (rng.uniform(size=images.shape) < images).astype(np.float32)
    if how == "none":
        return images
    raise ValueError(f"unknown data.binarize {how!r}; expected one of {', '.join(BINARIZATIONS)}")


def padded_batches(images: np.ndarray, batch_size: int) -> list[dict]:
    """Fixed-shape evaluation batches {'images', 'weight', 'index'}; the last is padded with
    zero-weight rows (one compile). `index` (the test image's position) seeds its noise."""
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        count = len(chunk)
        pad = batch_size - count
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
        batches.append({"images": chunk,
                        "weight": np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)]),
                        "index": np.arange(start, start + batch_size, dtype=np.int32)})
    return batches


# ----------------------------------------------------------------------------------------
# The steps.
# ----------------------------------------------------------------------------------------

def train_step(state: TrainState, batch, rng, *, model: VAE, tx, schedule, beta: float):
    """One optimizer step on -ELBO_beta averaged over the batch [B, H, W, C]."""
    step_rng = jax.random.fold_in(rng, state.step)

    def objective(params):
        terms = elbo(model, params, batch, step_rng)
        reconstruction, kl = jnp.mean(terms["reconstruction"]), jnp.mean(terms["kl"])
        return -(reconstruction - beta * kl), (reconstruction, kl)

    (loss, (reconstruction, kl)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree_util.tree_map(lambda p, u: p + u, state.params, updates)
    norm = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))  # noqa: E731
    metrics = {"loss": loss, "negative_elbo": kl - reconstruction, "reconstruction": -reconstruction, "kl": kl,
               "learning_rate": schedule(state.step), "grad_norm": norm(grads), "update_norm": norm(updates),
               "param_norm": norm(params)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(state: TrainState, batch, *, model: VAE, eval_key: jax.Array, iwae_samples: int):
    """Sums over the batch of -ELBO, -log p(x | z), KL and -L_k, each example with its own fixed noise."""
    keys = jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"])

    def one(x, key):
        elbo_key, iwae_key = jax.random.split(key)
        terms = elbo(model, state.params, x[None], elbo_key)
        bound = iwae_bound(model, state.params, x[None], iwae_key, iwae_samples)
        return terms["elbo"][0], terms["reconstruction"][0], terms["kl"][0], bound[0]

    elbo_value, reconstruction, kl, bound = jax.vmap(one)(batch["images"], keys)
    weight = batch["weight"]
    return {"negative_elbo": -jnp.sum(weight * elbo_value), "reconstruction": -jnp.sum(weight * reconstruction),
            "kl": jnp.sum(weight * kl), "negative_iwae": -jnp.sum(weight * bound), "count": jnp.sum(weight)}


def summarize_eval(sums: dict) -> dict:
    count = max(float(sums["count"]), 1.0)
    result = {k: float(sums[k]) / count for k in ("negative_elbo", "reconstruction", "kl", "negative_iwae")}
    result["loss"] = result["negative_elbo"]
    return result


# ----------------------------------------------------------------------------------------
# Figures written at each evaluation.
# ----------------------------------------------------------------------------------------

def save_figures(model: VAE, params, test_images: np.ndarray, prior_z: np.ndarray, workdir: str, step: int,
                 interpolation_steps: int) -> None:
    """samples/ (decoder means at fixed z ~ N(0, I)), reconstructions/ (rows of test images, each
    followed by a row of decoder means at their posterior means) and interpolations/ (decoder
    means along straight lines between the posterior means of pairs of test images)."""
    apply = functools.partial(model.apply, {"params": params})
    mean_of = lambda output: np.asarray(vae_model.decoder_mean(model.likelihood, output, model.min_std))  # noqa: E731
    scale = max(1, 64 // test_images.shape[1])
    name = f"step_{step:07d}.png"
    save_image_grid(mean_of(apply(jnp.asarray(prior_z), method=VAE.decode)),
                    os.path.join(workdir, "samples", name), scale=scale)

    columns = 8
    originals = test_images[:4 * columns]
    posterior_mean, _ = apply(jnp.asarray(originals), method=VAE.encode)
    reconstructions = mean_of(apply(posterior_mean, method=VAE.decode))
    rows = []
    for start in range(0, len(originals), columns):
        rows += [originals[start:start + columns], reconstructions[start:start + columns]]
    save_image_grid(np.concatenate(rows), os.path.join(workdir, "reconstructions", name), columns=columns,
                    scale=scale)

    pairs = min(8, len(test_images) // 2)
    z_start, z_end = posterior_mean[:pairs], apply(jnp.asarray(test_images[pairs:2 * pairs]), method=VAE.encode)[0]
    t = jnp.linspace(0.0, 1.0, interpolation_steps)[None, :, None]
    path = (1.0 - t) * z_start[:, None] + t * z_end[:, None]  # [pairs, steps, L]
    frames = mean_of(apply(path.reshape(-1, path.shape[-1]), method=VAE.decode))
    save_image_grid(frames, os.path.join(workdir, "interpolations", name), columns=interpolation_steps,
                    scale=scale)


# ----------------------------------------------------------------------------------------
# Building the task.
# ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class VAESetup:
    """What a VAE run is made of: the model, its (binarised) data and the optimizer."""
    model: VAE
    train_images: np.ndarray  # [N, H, W, C] as loaded; binarised per batch when stochastic
    test_images: np.ndarray  # [M, H, W, C] binarised once
    description: str


def check_config(config) -> None:
    if config.data.binarize not in BINARIZATIONS:
        raise ValueError(f"unknown data.binarize {config.data.binarize!r}; expected one of {', '.join(BINARIZATIONS)}")
    if config.model.decoder == "bernoulli" and config.data.binarize == "none":
        raise ValueError("model.decoder='bernoulli' needs binary images: set data.binarize to 'threshold' or "
                         "'stochastic' (or use model.decoder='gaussian' for grey levels)")
    for field, value, low in (("train.batch_size", config.train.batch_size, 1),
                              ("eval.batch_size", config.eval.batch_size, 1),
                              ("eval.iwae_samples", config.eval.iwae_samples, 1),
                              ("eval.num_examples", config.eval.num_examples, 0),
                              ("eval.interpolation_steps", config.eval.interpolation_steps, 2),
                              ("eval.grid_samples", config.eval.grid_samples, 1)):
        if value < low:
            raise ValueError(f"{field} must be at least {low}, got {value}")
    if config.loss.beta < 0:
        raise ValueError(f"loss.beta must be non-negative, got {config.loss.beta}")


def prepare(config) -> VAESetup:
    check_config(config)
    splits = image_data.load_image_splits(config.data)
    model = VAE.from_config(config.model, splits.shape)
    test = splits.test_images
    if config.eval.num_examples:
        test = test[:config.eval.num_examples]
    test = binarize(test, config.data.binarize, np.random.default_rng([config.seed, _BINARIZE_SALT]))
    height, width, channels = splits.shape
    binarized = {"threshold": "binarised at 0.5", "stochastic": "binarised stochastically",
                 "none": "grey levels"}[config.data.binarize]
    return VAESetup(model=model, train_images=splits.train_images, test_images=test,
                    description=f"{splits.description}, {height}x{width}x{channels}, {binarized}")


def build(config, workdir: str) -> Task:
    setup = prepare(config)
    model, train_cfg = setup.model, config.train
    tx, schedule = make_optimizer(config.optimizer, train_cfg.num_steps)
    image_shape = setup.train_images.shape[1:]
    no_labels = np.zeros(len(setup.train_images), np.int32)

    def init(rng):
        params = model.init(rng, jnp.zeros((1,) + image_shape, jnp.float32))["params"]
        return TrainState.create(params, tx)

    def train_batch(step: int) -> np.ndarray:
        images, _ = image_data.image_batch(setup.train_images, no_labels, config.seed, step, train_cfg.batch_size)
        return binarize(images, config.data.binarize,
                        np.random.default_rng([config.seed, step, _BINARIZE_SALT]))

    eval_set = padded_batches(setup.test_images, config.eval.batch_size)
    prior_z = np.random.default_rng([config.seed, _EVAL_SALT]).standard_normal(
        (config.eval.grid_samples, model.latent_dim)).astype(np.float32)

    def on_eval(state, step: int, workdir: str) -> dict:
        save_figures(model, jax.device_get(state.params), setup.test_images, prior_z, workdir, step,
                     config.eval.interpolation_steps)
        return {}

    abstract = jax.eval_shape(init, jax.random.key(0))
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract.params))
    return Task(
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, beta=config.loss.beta),
        eval_step=functools.partial(eval_step, model=model, iwae_samples=config.eval.iwae_samples,
                                    eval_key=jax.random.fold_in(jax.random.key(config.seed), _EVAL_SALT)),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=num_params,
        items_per_step=train_cfg.batch_size,
        item_name="images",
        description=(f"{setup.description}; {model.kind} VAE, {model.likelihood} decoder, latent "
                     f"{model.latent_dim}, beta {config.loss.beta:g}; {len(setup.test_images)} test images, "
                     f"IWAE with k={config.eval.iwae_samples}"),
        headline_metrics=("loss", "kl"),
        on_eval=on_eval,
    )


def load_trained(workdir: str) -> tuple:
    """(setup, params of the newest checkpoint, config) of a finished or running VAE workdir,
    for analyses that call `elbo` / `iwae_bound` on a trained model."""
    config = config_lib.load_saved_config(workdir)
    if config.task != "vae":
        raise ValueError(f"workdir {workdir!r} holds a {config.task!r} run, not a VAE")
    setup = prepare(config)
    tx, _ = make_optimizer(config.optimizer, config.train.num_steps)
    template = TrainState.create(
        setup.model.init(jax.random.key(0), jnp.zeros((1,) + setup.train_images.shape[1:]))["params"], tx)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        state, step = checkpointer.restore_latest(template)
    finally:
        checkpointer.close()
    if state is None:
        raise DataError(f"workdir {workdir!r} has no checkpoint yet")
    return setup, state.params, config
