"""RealNVP (model.py beside this file) as a family on the one training loop: maximum likelihood
by the change of variables, log p(x) = log N(f(x); 0, I) + log |det df/dx|.

2-D densities (aigc_jax/data/density2d.py: moons, circles, spirals, checkerboard): training
batches are fresh draws at every step; evaluation reports the test set's negative log-likelihood
in nats per point (`loss`; a continuous density, so it can be negative). At each evaluation the
workdir gets density/step_*.png (a heat map of p(x) on a grid beside samples of the flow), and
the metric `grid_mass`, the density summed over that grid times the cell area (1 when the grid
holds all the mass).

Images (aigc_jax/data/images.py) with L grey levels (`data.num_levels`; 0 infers 17 for the 8x8
digits, whose values are k/16, and 256 for 8-bit files) are dequantised with uniform noise
(Theis et al. 2016; RealNVP section 4.1): y = (k + u) / L, u ~ U[0, 1)^D for the integer level k.
Then -log P(k) <= E_u[-log p(y)] + D log L, and we report that bound in bits per dimension,
  bits_per_dim = (-log p(y) + D log L) / (D ln 2)
(`loss`; one fixed noise draw per test image, the same at every evaluation), and `nats` per image.
samples/step_*.png shows samples at temperature `eval.temperature` (z ~ N(0, T^2 I)).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config as config_lib
from aigc_jax import config_rules as rules
from aigc_jax.data import density2d
from aigc_jax.data import images as image_data
from aigc_jax.image_grid import save_image_grid
from aigc_jax.families.flow.model import RealNVP2D, RealNVPImage, check_image_shape
from aigc_jax.nn.params import count_params
from aigc_jax.train.task import Task
from aigc_jax.train.restore import restore_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.state import TrainState
from aigc_jax.train.update import apply_update
from aigc_jax.families.flow.losses import dequantize, image_negative_log_likelihood, infer_num_levels, log_density
from aigc_jax.families.flow.plots import density_grid, save_density_figure

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path", "data.num_levels")
# Declared ranges and choices (aigc_jax/config_rules.py), checked before anything is built.
FIELD_RULES = {
    "data.dataset": rules.Choices(("digits",) + density2d.DATASETS), "data.path": rules.TEXT,
    "data.test_fraction": rules.OPEN_FRACTION, "data.noise": rules.NON_NEGATIVE, "data.num_test": rules.at_least(1),
    "data.num_levels": rules.AnyOf((rules.Choices((0,)), rules.at_least(2))),  # 0: inferred from the data
    "model.num_couplings": rules.at_least(1), "model.hidden_dim": rules.at_least(1),
    "model.num_hidden_layers": rules.at_least(1), "model.num_scales": rules.at_least(1),
    "model.couplings_per_scale": rules.at_least(1), "model.hidden_channels": rules.at_least(1),
    "model.num_blocks": rules.at_least(0), "model.log_scale_bound": rules.POSITIVE,
    "model.alpha": rules.Range(low=0, high=0.5, low_open=True, high_open=True),
    "eval.grid_samples": rules.at_least(1), "eval.temperature": rules.POSITIVE, "eval.plot_extent": rules.POSITIVE,
    "eval.grid_resolution": rules.at_least(2),
}
_EVAL_SALT = 0xE7A1
_SAMPLE_SALT = 0x5A4


# ----------------------------------------------------------------------------------------
# The math: pure functions.
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# The steps.
# ----------------------------------------------------------------------------------------

def _descend(state, loss_fn, tx, schedule):
    """One optimizer step on loss_fn(params) -> (loss, aux metrics)."""
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": loss, **aux, "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def train_step_2d(state: TrainState, batch, rng, *, model: RealNVP2D, tx, schedule):
    """One step on the mean negative log-likelihood (nats per point) of points [B, 2]."""
    del rng
    loss_fn = lambda params: (-jnp.mean(log_density(model, params, batch)), {})  # noqa: E731
    return _descend(state, loss_fn, tx, schedule)


def eval_step_2d(state: TrainState, batch, *, model: RealNVP2D):
    log_p = log_density(model, state.params, batch["points"])
    return {"nats": -jnp.sum(batch["weight"] * log_p), "count": jnp.sum(batch["weight"])}


def summarize_eval_2d(sums: dict) -> dict:
    return {"loss": float(sums["nats"]) / max(float(sums["count"]), 1.0)}


def train_step_image(state: TrainState, batch, rng, *, model: RealNVPImage, tx, schedule, num_levels: int):
    """One step on bits per dimension of a batch of integer levels [B, H, W, C], freshly dequantised."""
    noise = jax.random.uniform(jax.random.fold_in(rng, state.step), batch.shape)
    dims = math.prod(batch.shape[1:])

    def loss_fn(params):
        nats = jnp.mean(image_negative_log_likelihood(model, params, dequantize(batch, noise, num_levels),
                                                      num_levels))
        return nats / (dims * math.log(2.0)), {"nats": nats}

    return _descend(state, loss_fn, tx, schedule)


def eval_step_image(state: TrainState, batch, *, model: RealNVPImage, num_levels: int, eval_key: jax.Array):
    """Sums of the dequantisation bound (nats) over the batch; each test image has fixed noise."""
    keys = jax.vmap(lambda i: jax.random.fold_in(eval_key, i))(batch["index"])
    shape = batch["levels"].shape[1:]
    noise = jax.vmap(lambda key: jax.random.uniform(key, shape))(keys)
    nats = image_negative_log_likelihood(model, state.params, dequantize(batch["levels"], noise, num_levels),
                                         num_levels)
    return {"nats": jnp.sum(batch["weight"] * nats), "count": jnp.sum(batch["weight"])}


def summarize_eval_image(sums: dict, dims: int) -> dict:
    nats = float(sums["nats"]) / max(float(sums["count"]), 1.0)
    return {"loss": nats / (dims * math.log(2.0)), "bits_per_dim": nats / (dims * math.log(2.0)), "nats": nats}


# ----------------------------------------------------------------------------------------
# Figures.
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Building the task.
# ----------------------------------------------------------------------------------------

def is_2d(config) -> bool:
    return not config.data.path and config.data.dataset in density2d.DATASETS


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)


def make_2d_model(model_cfg) -> RealNVP2D:
    return RealNVP2D(num_couplings=model_cfg.num_couplings, hidden_dim=model_cfg.hidden_dim,
                     num_hidden_layers=model_cfg.num_hidden_layers, log_scale_bound=model_cfg.log_scale_bound)


def make_image_model(model_cfg, image_shape: tuple) -> RealNVPImage:
    check_image_shape(image_shape, model_cfg.num_scales)
    return RealNVPImage(image_shape=tuple(int(d) for d in image_shape), num_scales=model_cfg.num_scales,
                        couplings_per_scale=model_cfg.couplings_per_scale,
                        hidden_channels=model_cfg.hidden_channels, num_blocks=model_cfg.num_blocks,
                        log_scale_bound=model_cfg.log_scale_bound, alpha=model_cfg.alpha)


@dataclasses.dataclass
class _Parts:
    model: object
    init: object
    train_step: object
    eval_step: object
    train_batch: object
    eval_set: list
    summarize_eval: object
    on_eval: object
    description: str


def build(config, workdir: str) -> Task:
    check_config(config)
    parts = _build_2d(config) if is_2d(config) else _build_image(config)
    abstract = jax.eval_shape(parts.init, jax.random.key(0))
    num_params = count_params(abstract.params)
    return Task(model_fields=MODEL_FIELDS, init=parts.init, train_step=parts.train_step, eval_step=parts.eval_step,
                train_batch=parts.train_batch, eval_batches=lambda: parts.eval_set,
                summarize_eval=parts.summarize_eval, num_params=num_params,
                items_per_step=config.train.batch_size, item_name="examples",
                description=parts.description, headline_metrics=("loss",), on_eval=parts.on_eval)


def load_trained(workdir: str) -> tuple:
    """(model, params of the newest checkpoint, config) of a flow workdir, for analyses that call
    `log_density` (2-D) or `image_negative_log_likelihood` on a trained flow."""
    config = config_lib.load_saved_config(workdir)
    if config.task != "flow":
        raise config_lib.ConfigError(f"workdir {workdir!r} holds a {config.task!r} run, not a flow")
    check_config(config)
    parts = _build_2d(config) if is_2d(config) else _build_image(config)
    run = restore_params(workdir, expect_params=jax.eval_shape(parts.init, jax.random.key(0)).params)
    return parts.model, run.params, config


def _build_2d(config) -> _Parts:
    data_cfg = config.data
    density2d.check_dataset(data_cfg.dataset, data_cfg.noise)
    model = make_2d_model(config.model)
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    test = density2d.test_set(data_cfg.dataset, config.seed, data_cfg.num_test, data_cfg.noise)
    grid, cell_area = density_grid(config.eval.plot_extent, config.eval.grid_resolution)
    z = np.random.default_rng([config.seed, _SAMPLE_SALT]).standard_normal((config.eval.grid_samples, 2))
    evaluate_grid = jax.jit(lambda params: log_density(model, params, jnp.asarray(grid)))
    sample = jax.jit(lambda params: model.apply({"params": params}, jnp.asarray(z, jnp.float32),
                                                method=RealNVP2D.inverse))

    def init(rng):
        return TrainState.create(model.init(rng, jnp.zeros((1, 2)))["params"], tx)

    def on_eval(state, step: int, workdir: str) -> dict:
        params = jax.device_get(state.params)
        density = np.exp(np.asarray(evaluate_grid(params)))
        resolution = config.eval.grid_resolution
        save_density_figure(density.reshape(resolution, resolution), np.asarray(sample(params)), test,
                            config.eval.plot_extent, os.path.join(workdir, "density", f"step_{step:07d}.png"),
                            f"{data_cfg.dataset}, step {step}")
        return {"grid_mass": float(density.sum() * cell_area)}

    return _Parts(
        model=model, init=init,
        train_step=functools.partial(train_step_2d, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step_2d, model=model),
        train_batch=lambda step: density2d.train_batch(data_cfg.dataset, config.seed, step,
                                                       config.train.batch_size, data_cfg.noise),
        eval_set=padded_batches({"points": test}, config.eval.batch_size, with_index=True),
        summarize_eval=summarize_eval_2d, on_eval=on_eval,
        description=(f"2-D {data_cfg.dataset} (noise {data_cfg.noise:g}), fresh batches, {len(test)} test points; "
                     f"RealNVP with {model.num_couplings} affine couplings"))


def _build_image(config) -> _Parts:
    splits = image_data.load_image_splits(config.data)
    num_levels = config.data.num_levels or infer_num_levels(splits.train_images)
    to_levels = lambda x: np.round(x * (num_levels - 1)).astype(np.float32)  # noqa: E731
    train_levels, test_levels = to_levels(splits.train_images), to_levels(splits.test_images)
    if config.data.num_test < len(test_levels):
        test_levels = test_levels[:config.data.num_test]
    image_shape = splits.shape
    dims = math.prod(image_shape)
    model = make_image_model(config.model, image_shape)
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    no_labels = np.zeros(len(train_levels), np.int32)
    z = np.random.default_rng([config.seed, _SAMPLE_SALT]).standard_normal((config.eval.grid_samples, dims))
    sample = jax.jit(lambda params: model.apply({"params": params},
                                                jnp.asarray(z * config.eval.temperature, jnp.float32),
                                                method=RealNVPImage.inverse))

    def init(rng):
        return TrainState.create(model.init(rng, jnp.full((1,) + image_shape, 0.5))["params"], tx)

    def train_batch(step: int) -> np.ndarray:
        return image_data.image_batch(train_levels, no_labels, config.seed, step, config.train.batch_size)[0]

    def on_eval(state, step: int, workdir: str) -> dict:
        samples = np.clip(np.asarray(sample(jax.device_get(state.params))), 0.0, 1.0)
        save_image_grid(samples, os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                        scale=max(1, 64 // image_shape[0]))
        return {}

    return _Parts(
        model=model, init=init,
        train_step=functools.partial(train_step_image, model=model, tx=tx, schedule=schedule,
                                     num_levels=num_levels),
        eval_step=functools.partial(eval_step_image, model=model, num_levels=num_levels,
                                    eval_key=jax.random.fold_in(jax.random.key(config.seed), _EVAL_SALT)),
        train_batch=train_batch,
        eval_set=padded_batches({"levels": test_levels}, config.eval.batch_size, with_index=True),
        summarize_eval=functools.partial(summarize_eval_image, dims=dims), on_eval=on_eval,
        description=(f"{splits.description}, {image_shape[0]}x{image_shape[1]}x{image_shape[2]}, {num_levels} "
                     f"grey levels, uniformly dequantised; {len(test_levels)} test images; multi-scale RealNVP, "
                     f"{model.num_scales} scales"))
