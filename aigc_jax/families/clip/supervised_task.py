"""The supervised baseline of the contrastive model's linear probes (task "clip_supervised"):
the same image encoder, trained with the shapes world's labels instead of captions.

One linear head per factor of the scene's main (largest) object and the scene (aigc_jax/data/
shapes.py targets: count, background, shape, colour, size, position), the loss the mean of their
cross-entropies. Evaluation: each head's accuracy on the seen test scenes of the contrastive runs
(mean_error = 1 - their mean). `python -m experiments.clip --workdirs=... --probe` then fits the same linear
probes on its features as on a contrastive run's.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aigc_jax.data import images as image_data
from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip import task as clip_task
from aigc_jax.families.clip.model import FactorEncoder
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = clip_task.MODEL_FIELDS
HEADS = ("count", "background", "shape", "colour", "size", "position")
_SALT = 0x5E9


def check_config(config) -> None:
    clip_task.check_config(config)
    if not image_data.uses_shapes_world(config.data) or config.data.pairs_path:
        raise DataError("the supervised baseline needs the shapes world's labels: data.dataset=shapes, no data.path "
                        "or data.pairs_path")


def head_sizes(world: shapes.ShapesWorld) -> tuple:
    return (("count", world.max_objects - world.min_objects + 1), ("background", len(shapes.BACKGROUNDS)),
            ("shape", len(shapes.SHAPES)), ("colour", len(shapes.COLOURS)), ("size", len(shapes.SIZES)),
            ("position", shapes.POSITION_BINS ** 2))


def build_model(config) -> FactorEncoder:
    m = config.model
    return FactorEncoder(image_encoder=m.image_encoder, head_sizes=head_sizes(image_data.shapes_world(config.data)),
                         width=m.width, vision_depth=m.vision_depth, num_heads=m.num_heads, patch_size=m.patch_size,
                         cnn_widths=tuple(m.cnn_widths), cnn_convs_per_stage=m.cnn_convs_per_stage)


def objective(params, batch, *, model: FactorEncoder):
    logits = model.apply({"params": params}, batch["images"])
    losses = {name: optax.softmax_cross_entropy_with_integer_labels(logits[name], batch[name]).mean() for name in HEADS}
    accuracy = {f"{name}_acc": jnp.mean(jnp.argmax(logits[name], -1) == batch[name]) for name in HEADS}
    return sum(losses.values()) / len(HEADS), accuracy


def train_step(state: TrainState, batch, rng, *, model: FactorEncoder, tx, schedule):
    (loss, accuracy), grads = jax.value_and_grad(objective, has_aux=True)(state.params, batch, model=model)
    new_state, norms = apply_update(state, grads, tx)
    return new_state.replace(step=state.step + 1), {"loss": loss, **accuracy, "learning_rate": schedule(state.step),
                                                    **norms}


def eval_step(state: TrainState, batch, *, model: FactorEncoder):
    logits = model.apply({"params": state.params}, batch["images"])
    weight = batch["weight"]
    out = {name: jnp.sum(weight * (jnp.argmax(logits[name], -1) == batch[name])) for name in HEADS}
    return {**out, "examples": jnp.sum(weight)}


def build(config, workdir: str) -> Task:
    check_config(config)
    data = clip_data.load_for_run(config, workdir)
    world = image_data.shapes_world(config.data)
    model = build_model(config)
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    train_targets = shapes.targets(world, data.train_factors)

    def init(rng):
        return TrainState.create(model.init(rng, jnp.zeros((1,) + data.image_shape))["params"], tx)

    def train_batch(step: int) -> dict:
        index = np.random.default_rng([config.seed, step, _SALT]).integers(0, len(data.train_images),
                                                                           size=config.train.batch_size)
        return {"images": data.train_images[index], **{name: train_targets[name][index] for name in HEADS}}

    seen = data.retrieval_sets[0]
    seen_targets = shapes.targets(world, seen.factors)
    eval_set = padded_batches({"images": seen.images, **{name: seen_targets[name] for name in HEADS}},
                              config.eval.batch_size)

    def summarize(sums: dict) -> dict:
        n = max(float(sums["examples"]), 1.0)
        accuracy = {f"{name}_acc": float(sums[name]) / n for name in HEADS}
        return {"mean_error": 1.0 - float(np.mean(list(accuracy.values()))), **accuracy}

    abstract = jax.eval_shape(init, jax.random.key(0))
    return Task(
        model_fields=MODEL_FIELDS, init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step, model=model), train_batch=train_batch,
        eval_batches=lambda: eval_set, summarize_eval=summarize, num_params=count_params(abstract.params),
        items_per_step=config.train.batch_size, item_name="images",
        description=(f"{data.description}; supervised baseline: the {config.model.image_encoder} image encoder with "
                     f"heads {', '.join(HEADS)}"),
        headline_metrics=("loss", "shape_acc"), eval_metric="mean_error",
    )
