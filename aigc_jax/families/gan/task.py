"""GANs as a family on the one training loop.

min_G max_D V(D, G) = E_data[log D(x)] + E_z[log(1 - D(G(z)))] (Goodfellow et al. 2014) and its
variants (config `loss.name`): minimax (saturating G loss), nonsaturating, hinge, wgan_gp
(Wasserstein + gradient penalty, `loss.gp_weight`, 10 by default), least_squares; plus an R1
penalty on real data (`loss.r1_gamma`, 0 = off) with any of them.

One jit-compiled step: `train.n_critic` discriminator updates (each on its own real batch and
fresh latents), then one generator update; each player has its own optax optimizer. The state:
  params    {"generator", "discriminator"}
  opt_state {"generator", "discriminator"}
  extra     {"ema": exponential moving average of the generator weights (`train.ema_decay`;
             0 keeps it equal to the current weights), "batch_stats": the generator's
             batch-norm running averages, when it has batch norm}
Batch norm: every generator forward pass in training (in the D phase, where the fakes are
constants for D, and in the G phase, where they are differentiated) normalises with the batch's
own statistics and advances the running averages, in order. Sampling normalises with running
averages, so a sample does not depend on the rest of its batch; with EMA weights it uses
"standing" statistics of the EMA generator over a fixed batch of latents, because the running
averages belong to the raw weights.

PacGAN (`model.pack` = m): the discriminator sees m samples concatenated; a step draws
train.batch_size * m real and generated samples and D scores train.batch_size packs.
Train batches {"real": [n_critic, batch_size * m, ...], "labels": [n_critic, batch_size * m]}
are a pure function of (seed, step).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.data import images as image_data
from aigc_jax.data import toy2d
from aigc_jax.families.gan import losses
from aigc_jax.families.gan.losses import LOSSES
from aigc_jax.data.text import DataError
from aigc_jax.families.gan.model import attach_labels, build_models, pack
from aigc_jax.nn.params import count_params
from aigc_jax.train.task import Task
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.state import TrainState
from aigc_jax.train.update import apply_gradients
from aigc_jax.families.gan.data import ImageSource, ToySource

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path", "data.image_size", "data.min_objects",
                "data.max_objects")
# Declared ranges and choices (aigc_jax/config_rules.py), checked before anything is built.
FIELD_RULES = {
    "model.kind": rules.Choices(("mlp", "dcgan")),  # mlp for 2-D data, dcgan for images
    "loss.name": rules.Choices(tuple(LOSSES)), "loss.gp_weight": rules.NON_NEGATIVE, "loss.r1_gamma": rules.NON_NEGATIVE,
    "train.n_critic": rules.at_least(1), "train.ema_decay": rules.FRACTION,
    "model.latent_dim": rules.at_least(1), "model.num_classes": rules.at_least(0), "model.pack": rules.at_least(1),
    "model.bn_momentum": rules.FRACTION, "model.g_hidden": rules.at_least(1), "model.g_layers": rules.at_least(1),
    "model.g_batch_norm": rules.FLAG, "model.d_hidden": rules.at_least(1), "model.d_layers": rules.at_least(1),
    "model.d_maxout_pieces": rules.at_least(1), "model.g_width": rules.at_least(1), "model.d_width": rules.at_least(1),
    "data.dataset": rules.Choices(toy2d.DATASETS + image_data.DATASETS), "data.num_test": rules.at_least(1),
    "data.min_objects": rules.at_least(1), "data.max_objects": rules.at_least(1), "data.path": rules.TEXT, "data.labels_path": rules.TEXT,
    "data.std": rules.NON_NEGATIVE, "data.ring_modes": rules.at_least(1), "data.ring_radius": rules.POSITIVE,
    "data.grid_side": rules.at_least(1), "data.grid_spacing": rules.POSITIVE, "data.num_train": rules.at_least(1),
    "data.test_fraction": rules.OPEN_FRACTION, "data.image_size": rules.at_least(0),  # 0: the images' own size
    "eval.num_samples": rules.at_least(1), "eval.standing_stats_samples": rules.at_least(1),
    "eval.grid_samples": rules.at_least(1), "eval.classifier_steps": rules.at_least(0),  # 0: no classifier scores
    "eval.classifier_cache": rules.TEXT,
    "eval.factor_classifier_steps": rules.at_least(1), "eval.factor_classifier_scenes": rules.at_least(1),
}


@dataclass(frozen=True)
class GanGame:
    """Everything static the step needs (hashable, closed over by jit)."""
    generator: nn.Module
    discriminator: nn.Module
    g_tx: Any
    d_tx: Any
    g_schedule: Any
    d_schedule: Any
    latent_dim: int
    num_classes: int
    pack: int
    n_critic: int
    loss_name: str
    gp_weight: float
    r1_gamma: float
    ema_decay: float

    def generate(self, g_params, batch_stats, z, labels, *, train: bool):
        """(samples, batch_stats): in training, batch statistics are used and the running
        averages advance; otherwise the running averages are used and left unchanged."""
        variables = {"params": g_params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        if train and batch_stats:
            out, updates = self.generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])
            return out, updates["batch_stats"]
        return self.generator.apply(variables, z, labels, train=train), batch_stats

    def latents(self, rng, count: int):
        """z ~ N(0, I) [count, latent_dim]; uniform class labels [count] when conditional, else None."""
        z_rng, y_rng = jax.random.split(rng)
        z = jax.random.normal(z_rng, (count, self.latent_dim))
        labels = jax.random.randint(y_rng, (count,), 0, self.num_classes) if self.num_classes else None
        return z, labels

    def critic(self, d_params, x, labels):
        """x [N, ...] (N = packs * m), labels [N] -> D's output per pack [N / m]."""
        return self.discriminator.apply({"params": d_params}, pack(attach_labels(x, labels, self.num_classes),
                                                                     self.pack))

    def grouped_critic(self, d_params, labels):
        """A critic over packs x [B, m, ...] -> [B], for the input-gradient penalties, whose
        norms are per pack (the discriminator's actual input)."""
        return lambda grouped: self.critic(d_params, grouped.reshape((-1,) + grouped.shape[2:]), labels)

    def group(self, x):
        return x.reshape((x.shape[0] // self.pack, self.pack) + x.shape[1:])


def discriminator_objective(d_params, game: GanGame, real, real_labels, fake, fake_labels, rng):
    """D's loss (+ gradient penalty, + R1) and its parts."""
    d_loss_fn, _ = LOSSES[game.loss_name]
    real_scores = game.critic(d_params, real, real_labels)
    fake_scores = game.critic(d_params, fake, fake_labels)
    loss = d_loss_fn(real_scores, fake_scores)
    penalty = jnp.zeros(())
    if game.loss_name == "wgan_gp":
        penalty = losses.gradient_penalty(game.grouped_critic(d_params, real_labels), game.group(real),
                                          game.group(fake), rng, game.gp_weight)
    r1 = jnp.zeros(())
    if game.r1_gamma:
        r1 = losses.r1_penalty(game.grouped_critic(d_params, real_labels), game.group(real), game.r1_gamma)
    parts = {"d_loss": loss, "gradient_penalty": penalty, "r1_penalty": r1,
             "d_real": jnp.mean(real_scores), "d_fake": jnp.mean(fake_scores)}
    return loss + penalty + r1, parts


def train_step(state: TrainState, batch, rng, *, game: GanGame):
    """n_critic discriminator updates, then one generator update, then the EMA update."""
    step_rng = jax.random.fold_in(rng, state.step)
    g_params, d_params = state.params["generator"], state.params["discriminator"]
    batch_stats = state.extra.get("batch_stats", {})
    num_samples = batch["real"].shape[1]

    def critic_update(carry, inputs):
        d_params, d_opt, batch_stats = carry
        index, real, real_labels = inputs
        z_rng, gp_rng = jax.random.split(jax.random.fold_in(step_rng, index))
        z, fake_labels = game.latents(z_rng, num_samples)
        fake, batch_stats = game.generate(g_params, batch_stats, z, fake_labels, train=True)
        fake = jax.lax.stop_gradient(fake)  # the D phase does not train G
        grads, parts = jax.grad(discriminator_objective, has_aux=True)(
            d_params, game, real, real_labels if game.num_classes else None, fake, fake_labels, gp_rng)
        d_params, d_opt, norms = apply_gradients(d_params, d_opt, grads, game.d_tx, prefix="d_")
        return (d_params, d_opt, batch_stats), {**parts, **norms}

    (d_params, d_opt, batch_stats), d_parts = jax.lax.scan(
        critic_update, (d_params, state.opt_state["discriminator"], batch_stats),
        (jnp.arange(game.n_critic), batch["real"], batch["labels"]))

    _, g_loss_fn = LOSSES[game.loss_name]
    z, fake_labels = game.latents(jax.random.fold_in(step_rng, game.n_critic), num_samples)

    def generator_objective(g_params):
        fake, new_stats = game.generate(g_params, batch_stats, z, fake_labels, train=True)
        return g_loss_fn(game.critic(d_params, fake, fake_labels)), new_stats

    (g_loss, batch_stats), g_grads = jax.value_and_grad(generator_objective, has_aux=True)(g_params)
    g_params, g_opt, g_norms = apply_gradients(g_params, state.opt_state["generator"], g_grads, game.g_tx,
                                               prefix="g_")
    decay = game.ema_decay
    ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.extra["ema"], g_params)

    extra = {"ema": ema}
    if "batch_stats" in state.extra:
        extra["batch_stats"] = batch_stats
    metrics = {k: jnp.mean(v) for k, v in d_parts.items()}  # averaged over the critic updates
    metrics.update({"g_loss": g_loss, **g_norms,
                    "g_learning_rate": game.g_schedule(state.step),
                    "d_learning_rate": game.d_schedule(state.step * game.n_critic)})
    new_state = state.replace(step=state.step + 1,
                              params={"generator": g_params, "discriminator": d_params},
                              opt_state={"generator": g_opt, "discriminator": d_opt}, extra=extra)
    return new_state, metrics


def sampling_variables(state: TrainState, game: GanGame, standing_z, standing_labels):
    """(weights, batch statistics) to sample with: the EMA weights; with batch norm, the running
    averages when EMA is off, else standing statistics of the EMA generator on fixed latents."""
    weights = state.extra["ema"]
    batch_stats = state.extra.get("batch_stats", {})
    if batch_stats and game.ema_decay > 0:
        exact = game.generator.clone(bn_momentum=0.0)  # running average := this batch's statistics
        _, updates = exact.apply({"params": weights, "batch_stats": batch_stats}, standing_z, standing_labels,
                                 train=True, mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
    return weights, batch_stats


def sample(state: TrainState, z, labels, *, game: GanGame, standing_z, standing_labels):
    """Generated samples for latents z [N, latent] (labels [N] when conditional), in data units
    the generator was trained on (2-D points, or images in [-1, 1])."""
    weights, batch_stats = sampling_variables(state, game, standing_z, standing_labels)
    out, _ = game.generate(weights, batch_stats, z, labels, train=False)
    return out


def fixed_latents(seed: int, salt: int, count: int, latent_dim: int, num_classes: int):
    """Deterministic evaluation latents (numpy) and balanced labels (i mod K)."""
    z = np.random.default_rng([seed, salt]).standard_normal((count, latent_dim)).astype(np.float32)
    labels = (np.arange(count) % num_classes).astype(np.int32) if num_classes else np.zeros(count, np.int32)
    return z, labels


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)


def build(config, workdir: str) -> Task:
    check_config(config)
    source = ToySource(config) if config.model.kind == "mlp" else ImageSource(config)
    if config.model.num_classes and not source.has_labels:
        raise DataError(f"model.num_classes={config.model.num_classes} (class-conditional) needs labels, "
                        f"and {source.name} has none (set data.labels_path)")
    return assemble(config, source)


def assemble(config, source) -> Task:
    """The Task from config and a data source (a ToySource 2-D mixture or an ImageSource)."""
    model_cfg, train_cfg = config.model, config.train
    num_classes = model_cfg.num_classes
    if num_classes and source.num_classes and num_classes != source.num_classes:
        raise DataError(f"model.num_classes={num_classes} but the data have {source.num_classes} classes")
    generator, discriminator = build_models(model_cfg, source.example_shape)
    g_tx, g_schedule = make_optimizer(config.g_optimizer, train_cfg.num_steps)
    d_tx, d_schedule = make_optimizer(config.d_optimizer, train_cfg.num_steps * train_cfg.n_critic)
    game = GanGame(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx, g_schedule=g_schedule,
                   d_schedule=d_schedule, latent_dim=model_cfg.latent_dim, num_classes=num_classes,
                   pack=model_cfg.pack, n_critic=train_cfg.n_critic, loss_name=config.loss.name,
                   gp_weight=config.loss.gp_weight, r1_gamma=config.loss.r1_gamma, ema_decay=train_cfg.ema_decay)
    m = model_cfg.pack
    samples_per_step = train_cfg.batch_size * m

    def init(rng):
        g_rng, d_rng = jax.random.split(rng)
        labels = jnp.zeros((m,), jnp.int32) if num_classes else None
        g_vars = generator.init(g_rng, jnp.zeros((m, model_cfg.latent_dim)), labels, train=False)
        example = jnp.zeros((m,) + source.example_shape)
        d_params = discriminator.init(d_rng, pack(attach_labels(example, labels, num_classes), m))["params"]
        params = {"generator": g_vars["params"], "discriminator": d_params}
        extra = {"ema": jax.tree_util.tree_map(jnp.array, g_vars["params"])}
        if "batch_stats" in g_vars:
            extra["batch_stats"] = g_vars["batch_stats"]
        return TrainState.create(params, {"generator": g_tx, "discriminator": d_tx}, extra=extra)

    def train_batch(step: int) -> dict:
        real, labels = source.train_batch(config.seed, step, train_cfg.n_critic * samples_per_step)
        shape = (train_cfg.n_critic, samples_per_step)
        return {"real": real.reshape(shape + real.shape[1:]), "labels": labels.reshape(shape)}

    standing_z, standing_labels = fixed_latents(config.seed, 0x57A4D, config.eval.standing_stats_samples,
                                                model_cfg.latent_dim, num_classes)
    sample_fn = functools.partial(sample, game=game, standing_z=jnp.asarray(standing_z),
                                  standing_labels=jnp.asarray(standing_labels) if num_classes else None)
    eval_z, eval_labels = fixed_latents(config.seed, 0xE7A1, config.eval.num_samples, model_cfg.latent_dim,
                                        num_classes)
    eval_set = padded_batches({"z": eval_z, "labels": eval_labels}, config.eval.batch_size)

    def eval_step(state, batch):
        labels = batch["labels"] if num_classes else None
        return source.eval_sums(sample_fn(state, batch["z"], labels), batch["weight"], labels)

    jitted_sample = jax.jit(sample_fn)

    def on_eval(state, step: int, workdir: str) -> dict:
        count = min(source.preview_count, len(eval_z))
        samples = jitted_sample(state, jnp.asarray(eval_z[:count]),
                                jnp.asarray(eval_labels[:count]) if num_classes else None)
        source.save_preview(np.asarray(jax.device_get(samples)),
                            os.path.join(workdir, "samples", f"step_{step:07d}.png"))
        return {}

    abstract = jax.eval_shape(init, jax.random.key(0))
    num_params = count_params(abstract.params)
    g_params = count_params(abstract.params["generator"])
    variant = f"{config.loss.name} loss" + (f", PacGAN{m}" if m > 1 else "") + (
        f", {train_cfg.n_critic} critic steps" if train_cfg.n_critic > 1 else "") + (
        f", EMA {train_cfg.ema_decay}" if train_cfg.ema_decay else "") + (
        f", conditional on {num_classes} classes" if num_classes else "")
    return Task(model_fields=MODEL_FIELDS, 
        init=init,
        train_step=functools.partial(train_step, game=game),
        eval_step=eval_step,
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=source.summarize_eval,
        num_params=num_params,
        items_per_step=samples_per_step,
        item_name="samples",
        description=(f"{source.description}; {model_cfg.kind} GAN ({g_params:,} generator and "
                     f"{num_params - g_params:,} discriminator parameters), {variant}; "
                     f"{config.eval.num_samples} evaluation samples"),
        headline_metrics=("d_loss", "g_loss"), eval_metric=source.eval_metric,
        train_batch_axis=1,  # [n_critic, batch_size * pack, ...]
        on_eval=on_eval,
    )
