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
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config as config_lib
from aigc_jax.data import images as image_data
from aigc_jax import config_rules as rules
from aigc_jax.families.vae.model import KINDS, LIKELIHOODS, VAE
from aigc_jax.nn.params import count_params
from aigc_jax.train.task import Task
from aigc_jax.train.restore import restore_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.state import TrainState
from aigc_jax.train.update import apply_update
from aigc_jax.families.vae.losses import elbo, iwae_bound
from aigc_jax.families.vae.plots import save_figures

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path")
BINARIZATIONS = ("threshold", "stochastic", "none")
# Declared ranges and choices (aigc_jax/config_rules.py), checked before anything is built.
FIELD_RULES = {
    "data.dataset": rules.Choices(("digits",)), "data.path": rules.TEXT, "data.test_fraction": rules.OPEN_FRACTION,
    "data.binarize": rules.Choices(BINARIZATIONS), "model.kind": rules.Choices(KINDS),
    "model.decoder": rules.Choices(LIKELIHOODS), "model.latent_dim": rules.at_least(1),
    "model.hidden_dim": rules.at_least(1), "model.num_layers": rules.at_least(1),
    "model.conv_channels": rules.at_least(1), "model.min_std": rules.POSITIVE, "loss.beta": rules.NON_NEGATIVE,
    "eval.iwae_samples": rules.at_least(1), "eval.num_examples": rules.at_least(0),  # 0: the whole test split
    "eval.grid_samples": rules.at_least(1), "eval.interpolation_steps": rules.at_least(2),
}
_BINARIZE_SALT = 0xB1
_EVAL_SALT = 0xE7A1


# ----------------------------------------------------------------------------------------
# The math: pure functions of arrays.
# ----------------------------------------------------------------------------------------


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
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": loss, "negative_elbo": kl - reconstruction, "reconstruction": -reconstruction, "kl": kl,
               "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


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
    rules.check_family(config, FIELD_RULES)
    if config.model.decoder == "bernoulli" and config.data.binarize == "none":
        raise config_lib.ConfigError("model.decoder='bernoulli' needs binary images: set data.binarize to "
                                     "'threshold' or 'stochastic' (or use model.decoder='gaussian' for grey levels)")


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

    eval_set = padded_batches({"images": setup.test_images}, config.eval.batch_size, with_index=True)
    prior_z = np.random.default_rng([config.seed, _EVAL_SALT]).standard_normal(
        (config.eval.grid_samples, model.latent_dim)).astype(np.float32)

    def on_eval(state, step: int, workdir: str) -> dict:
        save_figures(model, jax.device_get(state.params), setup.test_images, prior_z, workdir, step,
                     config.eval.interpolation_steps)
        return {}

    abstract = jax.eval_shape(init, jax.random.key(0))
    num_params = count_params(abstract.params)
    return Task(model_fields=MODEL_FIELDS, 
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
        raise config_lib.ConfigError(f"workdir {workdir!r} holds a {config.task!r} run, not a VAE")
    setup = prepare(config)
    shapes = jax.eval_shape(setup.model.init, jax.random.key(0), jnp.zeros((1,) + setup.train_images.shape[1:]))
    run = restore_params(workdir, expect_params=shapes["params"])
    return setup, run.params, config
