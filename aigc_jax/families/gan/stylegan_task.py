"""StyleGAN2 training on the one loop (Karras et al. 2020, sec. 2-3 and appendix B).

One jit-compiled step, in the paper's phase order:
  D main   non-saturating loss softplus(D(G(z))) + softplus(-D(x)) on a real batch and fakes;
  D reg    every `loss.r1_interval` (16) steps: lazy R1, gamma/2 E||grad_x D(x)||^2 on the same
           real batch, times the interval, as its own optimizer update;
  G main   softplus(-D(G(z)));
  G reg    every `loss.pl_interval` (4) steps: lazy path-length regularisation on w,
           pl_weight * interval * E[(||J_w^T y||_2 - a)^2], y ~ N(0, I) / sqrt(H W), with a the
           running mean of the lengths (decay `loss.pl_decay`), on batch / `loss.pl_batch_shrink`;
  EMA      generator weights (half-life `train.ema_kimg` thousand images, capped at
           `train.ema_rampup` times the images seen so far, as the paper's code does for its
           small-data configs) and w_avg (decay `train.w_avg_decay`), the centre the
           truncation trick pulls towards.
Style mixing regularisation (`loss.style_mixing`, 0.9): with that probability a batch's ws take
layers [cutoff, num_ws) from a second latent, cutoff ~ U{1, ..., num_ws - 1} (one per batch).
Lazy regularisation's correction (the paper's appendix B): an optimizer whose player has a lazy
term of interval k uses learning rate lr * k / (k + 1) and betas beta^(k / (k + 1)).
Each switch turns off at 0 (loss.r1_gamma, loss.pl_weight, loss.style_mixing, train.ema_kimg).
`loss.augment` (default "": none) names differentiable augmentations (aigc_jax/families/gan/
diffaugment.py, Zhao et al. 2020: color, translation, cutout) applied to every image D sees, real
or fake, in all three D terms and G's; not part of StyleGAN2, a switch for small data sets.

State: params {"generator": {mapping_net, synthesis_net}, "discriminator"}, opt_state per
player, extra {"ema": generator weights, "w_avg": [w_dim], "pl_mean": scalar, "last_penalties":
the newest R1 penalty, path-length penalty and mean length, reported at every step}.
Data and scores come from the GAN family's ImageSource (shapes world, digits, MNIST, yours).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.data import images as image_data
from aigc_jax.families.gan import diffaugment, losses
from aigc_jax.families.gan.data import ImageSource
from aigc_jax.families.gan.stylegan_model import (ResidualDiscriminator, StyleGenerator, mix_styles, num_ws,
                                                  resolutions, truncate)
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_gradients

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path", "data.image_size", "data.num_train",
                "data.min_objects", "data.max_objects")
FIELD_RULES = {
    "data.dataset": rules.Choices(image_data.DATASETS), "data.path": rules.TEXT, "data.labels_path": rules.TEXT,
    "data.test_fraction": rules.OPEN_FRACTION, "data.image_size": rules.at_least(4),
    "data.num_train": rules.at_least(1), "data.num_test": rules.at_least(1),
    "data.min_objects": rules.at_least(1), "data.max_objects": rules.at_least(1),
    "model.z_dim": rules.at_least(1), "model.w_dim": rules.at_least(1), "model.mapping_layers": rules.at_least(0),
    "model.mapping_lr_mul": rules.POSITIVE, "model.channel_base": rules.at_least(1),
    "model.channel_max": rules.at_least(1), "model.use_noise": rules.FLAG, "model.mbstd_group": rules.at_least(0),
    "loss.r1_gamma": rules.NON_NEGATIVE, "loss.r1_interval": rules.at_least(1),
    "loss.pl_weight": rules.NON_NEGATIVE, "loss.pl_interval": rules.at_least(1), "loss.pl_decay": rules.FRACTION,
    "loss.pl_batch_shrink": rules.at_least(1), "loss.style_mixing": rules.Range(0, 1), "loss.augment": rules.TEXT,
    "train.ema_kimg": rules.NON_NEGATIVE, "train.ema_rampup": rules.NON_NEGATIVE, "train.w_avg_decay": rules.FRACTION,
    "eval.num_samples": rules.at_least(1), "eval.grid_samples": rules.at_least(1),
    "eval.classifier_steps": rules.at_least(0), "eval.classifier_cache": rules.TEXT,
    "eval.factor_classifier_steps": rules.at_least(1), "eval.factor_classifier_scenes": rules.at_least(1),
    "eval.ppl_samples": rules.at_least(0), "eval.ppl_epsilon": rules.POSITIVE,
    "eval.separability_samples": rules.at_least(0),
}


@dataclass(frozen=True)
class StyleGame:
    """Everything static the step needs (hashable, closed over by jit)."""
    generator: StyleGenerator
    discriminator: ResidualDiscriminator
    g_tx: Any
    d_tx: Any
    g_schedule: Any
    d_schedule: Any
    z_dim: int
    num_ws: int
    r1_gamma: float
    r1_interval: int
    pl_weight: float
    pl_interval: int
    pl_decay: float
    pl_batch_shrink: int
    style_mixing: float
    augment: tuple
    batch_size: int
    ema_kimg: float
    ema_rampup: float
    w_avg_decay: float

    def mapping(self, g_params, z):
        """z [N, z_dim] -> w [N, w_dim]."""
        return self.generator.apply({"params": g_params}, z, method="mapping")

    def synthesis(self, g_params, ws, noise_rng):
        """ws [N, num_ws, w_dim] -> images [N, S, S, C]; per-pixel noise drawn from noise_rng."""
        return self.generator.apply({"params": g_params}, ws, method="synthesis", rngs={"noise": noise_rng})

    def mixed_styles(self, g_params, rng, count: int):
        """(ws [count, num_ws, w_dim] with style mixing regularisation, w of the first latent [count, w_dim])."""
        z_rng, z2_rng, mix_rng, cut_rng = jax.random.split(rng, 4)
        w = self.mapping(g_params, jax.random.normal(z_rng, (count, self.z_dim)))
        ws = jnp.repeat(w[:, None], self.num_ws, axis=1)
        if self.style_mixing > 0 and self.num_ws > 1:
            w2 = self.mapping(g_params, jax.random.normal(z2_rng, (count, self.z_dim)))
            cutoff = jax.random.randint(cut_rng, (), 1, self.num_ws)
            cutoff = jnp.where(jax.random.uniform(mix_rng) < self.style_mixing, cutoff, self.num_ws)
            ws = mix_styles(ws, jnp.repeat(w2[:, None], self.num_ws, axis=1), cutoff)
        return ws, w

    def critic(self, d_params, images):
        return self.discriminator.apply({"params": d_params}, images)

    def augmented(self, rng, images):
        """What D sees of `images`: T(images) under the `loss.augment` policy (the images when none)."""
        return diffaugment.augment(rng, images, self.augment)


def r1_objective(d_params, game: StyleGame, real):
    """Lazy R1: gamma / 2 E_x ||grad_x D(x)||^2, times r1_interval (the update happens every interval steps)."""
    penalty = losses.r1_penalty(lambda x: game.critic(d_params, x), real, game.r1_gamma)
    return penalty * game.r1_interval, penalty


def path_length_objective(g_params, game: StyleGame, pl_mean, rng, count: int):
    """Lazy path-length regularisation (StyleGAN2 sec. 3.2): for y ~ N(0, I) / sqrt(H W),
    lengths_n = sqrt(mean over the num_ws layers of ||d (g(w_n) . y) / d w_n||^2) (the Jacobian-vector
    norm of eq. 4), a <- a + pl_decay (mean(lengths) - a), penalty = E[(lengths - a)^2].
    -> (penalty * pl_weight * interval, (new a, penalty, mean length))."""
    style_rng, noise_rng, y_rng = jax.random.split(rng, 3)
    ws, _ = game.mixed_styles(g_params, style_rng, count)

    def projected(ws):
        images = game.synthesis(g_params, ws, noise_rng)
        y = jax.random.normal(y_rng, images.shape) / math.sqrt(images.shape[1] * images.shape[2])
        return jnp.sum(images * y)

    grads = jax.grad(projected)(ws)  # [count, num_ws, w_dim]
    lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1) + 1e-12)
    new_mean = jax.lax.stop_gradient(pl_mean + game.pl_decay * (jnp.mean(lengths) - pl_mean))
    penalty = jnp.mean(jnp.square(lengths - new_mean))
    return penalty * game.pl_weight * game.pl_interval, (new_mean, penalty, jnp.mean(lengths))


def train_step(state: TrainState, batch, rng, *, game: StyleGame):
    step = state.step
    step_rng = jax.random.fold_in(rng, step)
    d_rng, d_noise, g_rng, g_noise, pl_rng = jax.random.split(step_rng, 5)
    # a stream of its own, so runs without augmentation draw what they drew before it existed
    real_aug, fake_aug, r1_aug, g_aug = jax.random.split(jax.random.fold_in(step_rng, 0xA06), 4)
    g_params, d_params = state.params["generator"], state.params["discriminator"]
    real = batch["real"]
    count = real.shape[0]

    # D main: fakes are constants here.
    ws, _ = game.mixed_styles(g_params, d_rng, count)
    fake = jax.lax.stop_gradient(game.synthesis(g_params, ws, d_noise))

    def d_objective(d_params):
        real_logits = game.critic(d_params, game.augmented(real_aug, real))
        fake_logits = game.critic(d_params, game.augmented(fake_aug, fake))
        loss = losses.gan_discriminator_loss(real_logits, fake_logits)
        return loss, {"d_loss": loss, "d_real": jnp.mean(real_logits), "d_fake": jnp.mean(fake_logits)}

    d_grads, metrics = jax.grad(d_objective, has_aux=True)(d_params)
    d_params, d_opt, d_norms = apply_gradients(d_params, state.opt_state["discriminator"], d_grads, game.d_tx,
                                               prefix="d_")
    metrics.update(d_norms)

    # D reg: lazy R1 as its own update.
    def r1_update(carry):
        d_params, d_opt = carry
        # on what D sees: the gradient with respect to the augmented real images (as ADA's code)
        grads, penalty = jax.grad(r1_objective, has_aux=True)(d_params, game, game.augmented(r1_aug, real))
        d_params, d_opt, _ = apply_gradients(d_params, d_opt, grads, game.d_tx)
        return d_params, d_opt, penalty

    last = dict(state.extra["last_penalties"])  # reported every step: the newest value of each lazy term
    if game.r1_gamma > 0:
        d_params, d_opt, last["r1_penalty"] = jax.lax.cond(
            step % game.r1_interval == 0, r1_update, lambda carry: (*carry, last["r1_penalty"]), (d_params, d_opt))

    # G main.
    def g_objective(g_params):
        ws, w = game.mixed_styles(g_params, g_rng, count)
        fake_logits = game.critic(d_params, game.augmented(g_aug, game.synthesis(g_params, ws, g_noise)))
        return losses.gan_generator_loss_nonsaturating(fake_logits), jax.lax.stop_gradient(jnp.mean(w, axis=0))

    (g_loss, w_mean), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_params)
    g_params, g_opt, g_norms = apply_gradients(g_params, state.opt_state["generator"], g_grads, game.g_tx,
                                               prefix="g_")
    metrics.update(g_loss=g_loss, **g_norms)

    # G reg: lazy path-length regularisation as its own update.
    pl_mean = state.extra["pl_mean"]
    if game.pl_weight > 0:
        pl_count = max(count // game.pl_batch_shrink, 1)

        def pl_update(carry):
            g_params, g_opt, pl_mean = carry
            grads, (new_mean, penalty, length) = jax.grad(path_length_objective, has_aux=True)(
                g_params, game, pl_mean, pl_rng, pl_count)
            g_params, g_opt, _ = apply_gradients(g_params, g_opt, grads, game.g_tx)
            return g_params, g_opt, new_mean, penalty, length

        def skip(carry):
            return (*carry, last["pl_penalty"], last["pl_length"])

        g_params, g_opt, pl_mean, last["pl_penalty"], last["pl_length"] = jax.lax.cond(
            step % game.pl_interval == 0, pl_update, skip, (g_params, g_opt, pl_mean))
        metrics["pl_mean"] = pl_mean
    metrics.update(last)

    decay = ema_decay_at(step, game.batch_size, game.ema_kimg, game.ema_rampup)
    ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, state.extra["ema"], g_params)
    w_avg = game.w_avg_decay * state.extra["w_avg"] + (1.0 - game.w_avg_decay) * w_mean
    metrics.update(g_learning_rate=game.g_schedule(step), d_learning_rate=game.d_schedule(step))
    new_state = state.replace(step=step + 1, params={"generator": g_params, "discriminator": d_params},
                              opt_state={"generator": g_opt, "discriminator": d_opt},
                              extra={"ema": ema, "w_avg": w_avg, "pl_mean": pl_mean, "last_penalties": last})
    return new_state, metrics


def generate(state: TrainState, z, noise_rng, *, game: StyleGame, psi: float = 1.0, cutoff=None):
    """Images [N, S, S, C] (data units, about [-1, 1]) from z [N, z_dim] with the EMA generator,
    truncated towards w_avg by psi on layers [0, cutoff)."""
    ws = latents_to_ws(state, z, game=game)
    return game.synthesis(state.extra["ema"], truncate(ws, state.extra["w_avg"], psi, cutoff), noise_rng)


def latents_to_ws(state: TrainState, z, *, game: StyleGame):
    """z [N, z_dim] -> ws [N, num_ws, w_dim] of the EMA generator (no mixing, no truncation)."""
    w = game.mapping(state.extra["ema"], z)
    return jnp.repeat(w[:, None], game.num_ws, axis=1)


def lazy_optimizer(section, interval: int, active: bool):
    """The optimizer section with the lazy-regularisation correction: learning rate * c and
    betas ** c for c = interval / (interval + 1) (StyleGAN2 appendix B), when `active`."""
    section = ml_collections.ConfigDict(section.to_dict())
    if active:
        ratio = interval / (interval + 1.0)
        section.learning_rate *= ratio
        section.min_learning_rate *= ratio
        section.beta1 = section.beta1 ** ratio
        section.beta2 = section.beta2 ** ratio
    return section


def ema_decay_at(step, batch_size: int, ema_kimg: float, rampup: float):
    """The generator EMA's decay at `step` (the images seen before it: step * batch_size): the
    half-life is ema_kimg thousand images, or rampup times the images seen when that is shorter
    (rampup 0: no ramp). Early in training the EMA then follows the generator closely instead of
    averaging in its random initialisation for thousands of images."""
    if ema_kimg <= 0:
        return jnp.zeros((), jnp.float32)
    half_life = jnp.asarray(1000.0 * ema_kimg, jnp.float32)
    if rampup > 0:
        half_life = jnp.minimum(half_life, jnp.asarray(step, jnp.float32) * (batch_size * rampup))
    return jnp.where(half_life > 0, 0.5 ** (batch_size / jnp.maximum(half_life, 1e-8)), 0.0)


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    resolutions(config.data.image_size)  # a power of two
    diffaugment.parse_policy(config.loss.get("augment", ""))
    if config.data.min_objects > config.data.max_objects:
        raise ValueError(f"data.min_objects={config.data.min_objects} exceeds data.max_objects="
                         f"{config.data.max_objects}")
    if config.model.mapping_layers == 0 and config.model.w_dim != config.model.z_dim:
        raise ValueError(f"model.mapping_layers=0 feeds the normalised z to the styles as w, so model.w_dim="
                         f"{config.model.w_dim} must equal model.z_dim={config.model.z_dim}")


def build_game(config, image_shape: tuple) -> StyleGame:
    m, loss, train_cfg = config.model, config.loss, config.train
    size, channels = image_shape[0], image_shape[2]
    generator = StyleGenerator(image_size=size, channels=channels, z_dim=m.z_dim, w_dim=m.w_dim,
                               mapping_layers=m.mapping_layers, mapping_lr_mul=m.mapping_lr_mul,
                               channel_base=m.channel_base, channel_max=m.channel_max, use_noise=m.use_noise)
    discriminator = ResidualDiscriminator(image_size=size, channel_base=m.channel_base, channel_max=m.channel_max,
                                          mbstd_group=m.mbstd_group)
    steps = train_cfg.num_steps
    g_tx, g_schedule = make_optimizer(lazy_optimizer(config.g_optimizer, loss.pl_interval, loss.pl_weight > 0), steps)
    d_tx, d_schedule = make_optimizer(lazy_optimizer(config.d_optimizer, loss.r1_interval, loss.r1_gamma > 0), steps)
    return StyleGame(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx, g_schedule=g_schedule,
                     d_schedule=d_schedule, z_dim=m.z_dim, num_ws=num_ws(size), r1_gamma=loss.r1_gamma,
                     r1_interval=loss.r1_interval, pl_weight=loss.pl_weight, pl_interval=loss.pl_interval,
                     pl_decay=loss.pl_decay, pl_batch_shrink=loss.pl_batch_shrink, style_mixing=loss.style_mixing,
                     augment=diffaugment.parse_policy(loss.get("augment", "")),  # runs saved before it: none
                     batch_size=train_cfg.batch_size, ema_kimg=train_cfg.ema_kimg,
                     ema_rampup=train_cfg.get("ema_rampup", 0.0),  # runs saved before the field had no ramp
                     w_avg_decay=train_cfg.w_avg_decay)


def init_state(game: StyleGame, image_shape: tuple, rng) -> TrainState:
    g_rng, d_rng, noise_rng = jax.random.split(rng, 3)
    g_params = game.generator.init({"params": g_rng, "noise": noise_rng}, jnp.zeros((1, game.z_dim)))["params"]
    batch = max(game.discriminator.mbstd_group, 1)
    d_params = game.discriminator.init(d_rng, jnp.zeros((batch,) + tuple(image_shape)))["params"]
    w_dim = game.generator.w_dim
    penalties = ("r1_penalty",) * (game.r1_gamma > 0) + ("pl_penalty", "pl_length") * (game.pl_weight > 0)
    extra = {"ema": jax.tree_util.tree_map(jnp.array, g_params), "w_avg": jnp.zeros((w_dim,)),
             "pl_mean": jnp.zeros(()), "last_penalties": {name: jnp.zeros(()) for name in penalties}}
    return TrainState.create({"generator": g_params, "discriminator": d_params},
                             {"generator": game.g_tx, "discriminator": game.d_tx}, extra=extra)


def build(config, workdir: str) -> Task:
    check_config(config)
    source = ImageSource(config)
    if config.train.batch_size % max(config.model.mbstd_group, 1):
        raise ValueError(f"train.batch_size={config.train.batch_size} must be divisible by model.mbstd_group="
                         f"{config.model.mbstd_group}")
    game = build_game(config, source.example_shape)
    init = functools.partial(init_state, game, source.example_shape)

    def train_batch(step: int) -> dict:
        real, _ = source.train_batch(config.seed, step, config.train.batch_size)
        return {"real": real}

    eval_z = np.random.default_rng([config.seed, 0xE7A1]).standard_normal(
        (config.eval.num_samples, config.model.z_dim)).astype(np.float32)
    eval_set = padded_batches({"z": eval_z}, config.eval.batch_size, with_index=True)
    noise_key = jax.random.key(config.seed + 0x5EED)
    generate_fn = functools.partial(generate, game=game)

    def eval_step(state, batch):
        noise_rng = jax.random.fold_in(noise_key, batch["index"][0])
        return source.eval_sums(generate_fn(state, batch["z"], noise_rng), batch["weight"], None)

    jitted_generate = jax.jit(generate_fn)

    def on_eval(state, step: int, workdir: str) -> dict:
        from aigc_jax.families.gan import stylegan_metrics
        count = min(source.preview_count, len(eval_z))
        samples = jitted_generate(state, jnp.asarray(eval_z[:count]), noise_key)
        source.save_preview(np.asarray(jax.device_get(samples)), os.path.join(workdir, "samples",
                                                                              f"step_{step:07d}.png"))
        return stylegan_metrics.latent_space_metrics(state, game, source, config)

    abstract = jax.eval_shape(init, jax.random.key(0))
    num_params = count_params(abstract.params)
    g_count = count_params(abstract.params["generator"])
    loss = config.loss
    switches = ", ".join(
        [f"R1 gamma {loss.r1_gamma:g} every {loss.r1_interval}" if loss.r1_gamma else "no R1",
         f"path length {loss.pl_weight:g} every {loss.pl_interval}" if loss.pl_weight else "no path length",
         f"style mixing {loss.style_mixing:g}" if loss.style_mixing else "no style mixing",
         f"DiffAugment {'+'.join(game.augment)}" if game.augment else "no augmentation",
         (f"EMA half-life {game.ema_kimg:g}k images" + (f" (ramp-up {game.ema_rampup:g})" if game.ema_rampup else ""))
         if game.ema_kimg else "no EMA"])
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, game=game),
        eval_step=eval_step,
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=source.summarize_eval,
        num_params=num_params,
        items_per_step=config.train.batch_size,
        item_name="images",
        description=(f"{source.description}; StyleGAN2 ({g_count:,} generator and {num_params - g_count:,} "
                     f"discriminator parameters, {game.num_ws} ws), {switches}; "
                     f"{config.eval.num_samples} evaluation samples"),
        headline_metrics=("d_loss", "g_loss"), eval_metric=source.eval_metric,
        on_eval=on_eval,
    )


@dataclass
class TrainedStyleGAN:
    """A trained run read back: its config, data source (with scorer), game and state."""
    config: Any
    source: ImageSource
    game: StyleGame
    state: TrainState


def load_trained(workdir: str) -> TrainedStyleGAN:
    """The newest checkpoint of a StyleGAN2 run (EMA weights, w_avg), ready to sample and score."""
    from aigc_jax.train.restore import restore_params
    restored = restore_params(workdir, task="stylegan")
    config = restored.config
    source = ImageSource(config)
    game = build_game(config, source.example_shape)
    state = TrainState(step=jnp.asarray(restored.step), params=restored.params, opt_state=None,
                       extra=restored.extra)
    return TrainedStyleGAN(config=config, source=source, game=game, state=state)


def score_samples(trained: TrainedStyleGAN, count: int, psi: float, seed: int, batch_size: int = 250,
                  cutoff=None) -> dict:
    """The source's scores (Frechet distance, classifier score, factor match, ...) of `count` samples
    at truncation psi (on layers below `cutoff`; None: all), plus feature_spread = E||f_i - f_j||^2
    = 2 tr(Cov f), the diversity of the samples in the scorer's feature space."""
    game, source = trained.game, trained.source
    z = np.random.default_rng([seed, 0x7C]).standard_normal((count, game.z_dim)).astype(np.float32)
    batches = padded_batches({"z": z}, batch_size, with_index=True)
    sample = jax.jit(functools.partial(generate, game=game, psi=psi, cutoff=cutoff))
    totals = None
    for batch in batches:
        noise_rng = jax.random.fold_in(jax.random.key(seed), batch["index"][0])
        images = sample(trained.state, jnp.asarray(batch["z"]), noise_rng)
        sums = jax.device_get(source.eval_sums(images, jnp.asarray(batch["weight"]), None))
        totals = sums if totals is None else jax.tree_util.tree_map(lambda a, b: a + b, totals, sums)
    metrics = source.summarize_eval(totals)
    if "feature_sum" in totals:
        from aigc_jax.metrics.frechet import gaussian_from_sums
        _, cov = gaussian_from_sums(totals["feature_sum"], totals["feature_outer"], totals["count"])
        metrics["feature_spread"] = float(2.0 * np.trace(cov))
    return metrics
