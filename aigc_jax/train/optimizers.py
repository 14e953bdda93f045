"""Optimizers and learning-rate schedules built from the `optimizer` config section."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from aigc_jax.train.muon import scale_by_muon

OPTIMIZERS = ("adamw", "lion", "adafactor", "muon")


def make_schedule(opt, num_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to learning_rate, then cosine decay to min_learning_rate at
    decay_steps (default: the end of training), or constant."""
    decay_steps = opt.decay_steps or num_steps
    if opt.schedule == "cosine":
        if decay_steps <= opt.warmup_steps:
            raise ValueError(f"optimizer.decay_steps ({decay_steps}) must exceed optimizer.warmup_steps "
                             f"({opt.warmup_steps})")
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=opt.learning_rate, warmup_steps=opt.warmup_steps,
            decay_steps=decay_steps, end_value=opt.min_learning_rate)
    if opt.schedule == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, opt.learning_rate, max(opt.warmup_steps, 1)),
             optax.constant_schedule(opt.learning_rate)], [opt.warmup_steps])
    raise ValueError(f"unknown optimizer.schedule {opt.schedule!r}; expected 'cosine' or 'constant'")


def matrices_only(params):
    """Weight-decay mask: decay weight matrices and embeddings, not biases or norm scales."""
    return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def decoupled_weight_decay(weight_decay: float, schedule: optax.Schedule, mask) -> optax.GradientTransformation:
    """Adds -learning_rate(step) * weight_decay * p to the update of every masked parameter:
    AdamW's decoupled decay (Loshchilov & Hutter 2019), for optimizers that lack it. (optax's
    adafactor adds weight_decay_rate * p after its learning-rate scaling, i.e. a decay of 10%
    per step at 0.1, which drives every weight to 0.)"""
    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        rate = schedule(state.count) * weight_decay
        updates = jax.tree_util.tree_map(lambda u, p, m: u - rate * p if m else u, updates, params, mask(params))
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def is_embedding(path) -> bool:
    return any("embed" in str(getattr(key, "key", key)) for key in path)


def make_muon(opt, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Muon (Jordan et al. 2024; aigc_jax/train/muon.py) on the hidden weight matrices at
    `learning_rate`; AdamW (Nesterov, as optax's muon runs it) at `adam_learning_rate` on
    everything else: biases, norm scales and, unless `muon_embeddings`, the embedding tables
    (Muon is an optimizer for hidden layers; a tied embedding is also the output layer).
    Decoupled weight decay on every matrix, the embeddings included."""
    muon_embeddings = bool(opt.get("muon_embeddings", False))
    if opt.learning_rate <= 0:
        raise ValueError(f"optimizer.learning_rate must be positive for muon, got {opt.learning_rate}")
    adam_lr = float(opt.get("adam_learning_rate", 0.0)) or opt.learning_rate
    adam_schedule = lambda step: schedule(step) * (adam_lr / opt.learning_rate)  # noqa: E731 - same shape

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, p: "muon" if p.ndim == 2 and (muon_embeddings or not is_embedding(path)) else "adam", params)

    muon_part = optax.chain(scale_by_muon(ns_steps=int(opt.get("muon_ns_steps", 5))),
                            optax.add_decayed_weights(opt.weight_decay), optax.scale_by_learning_rate(schedule))
    adam_part = optax.chain(optax.adamw(adam_schedule, b1=opt.beta1, b2=opt.beta2, eps=opt.eps, weight_decay=0.0,
                                        nesterov=True),
                            decoupled_weight_decay(opt.weight_decay, adam_schedule, matrices_only))
    return optax.multi_transform({"muon": muon_part, "adam": adam_part}, labels)


def make_optimizer(opt, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = make_schedule(opt, num_steps)
    if opt.name == "adamw":
        core = optax.adamw(schedule, b1=opt.beta1, b2=opt.beta2, eps=opt.eps,
                           weight_decay=opt.weight_decay, mask=matrices_only)
    elif opt.name == "lion":
        core = optax.lion(schedule, b1=opt.beta1, b2=opt.beta2, weight_decay=opt.weight_decay, mask=matrices_only)
    elif opt.name == "adafactor":
        core = optax.adafactor(schedule)
        if opt.weight_decay:
            core = optax.chain(core, decoupled_weight_decay(opt.weight_decay, schedule, matrices_only))
    elif opt.name == "muon":
        core = make_muon(opt, schedule)
    else:
        raise ValueError(f"unknown optimizer.name {opt.name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if opt.grad_clip > 0:
        core = optax.chain(optax.clip_by_global_norm(opt.grad_clip), core)
    return core, schedule
