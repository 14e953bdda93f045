"""The reward model (task "chat_rm"), InstructGPT's second step: the SFT transformer with a scalar
head trained on preference pairs by the Bradley-Terry loss -log sigmoid(r(x, y_w) - r(x, y_l)).

Start: `chat.sft` (the transformer's parameters; the head starts at zero). Each step takes
`train.batch_size` judge-ranked pairs (preferences.py: judge-written, or the SFT model's own
samples ranked by the judge, by data.pairs; label noise by data.label_noise).
Logged: loss, pairwise accuracy, the mean margin. Evaluation: the same on fixed held-out pairs
(instructions never trained on): the reward model's pairwise accuracy is the issue's number.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax import config_rules as rules
from aigc_jax.families.chat import objectives, preferences, reward, stages
from aigc_jax.nn.params import count_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = ("task", "chat.sft")
FIELD_RULES = {"chat.sft": rules.TEXT, **stages.DATA_RULES}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    stages.kinds_of(config)
    stages.require(config, "chat.sft", "the workdir of the SFT run (task chat_sft) the reward model starts from")


def pair_losses(model, params, batch):
    r = reward.rewards(model, params, batch["inputs"], batch["mask"])
    n = r.shape[0] // 2
    losses, right = objectives.bradley_terry(r[:n], r[n:])
    return losses, right, r[:n] - r[n:]


def train_step(state: TrainState, batch, rng, *, model, tx, schedule):
    del rng

    def objective(params):
        losses, right, margin = pair_losses(model, params, batch)
        return jnp.mean(losses), (right, margin)

    (loss, (right, margin)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": loss, "pair_accuracy": jnp.mean(right.astype(jnp.float32)), "margin": jnp.mean(margin),
               "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def eval_step(state: TrainState, batch, *, model):
    losses, right, margin = pair_losses(model, state.params, batch)
    weight = batch["pair_weight"]
    return {"loss": jnp.sum(losses * weight), "right": jnp.sum(right * weight), "margin": jnp.sum(margin * weight),
            "pairs": jnp.sum(weight)}


def summarize_eval(sums: dict) -> dict:
    pairs = max(float(sums["pairs"]), 1.0)
    return {"loss": float(sums["loss"]) / pairs, "pair_accuracy": float(sums["right"]) / pairs,
            "margin": float(sums["margin"]) / pairs}


def build(config, workdir: str) -> Task:
    check_config(config)
    t = config.train
    sft = stages.load_source(config.chat.sft, "chat.sft", ("chat_sft",))
    model = sft.model
    train_items, heldout = stages.instruction_sets(config)
    stages.keep_policy_files(sft, workdir)
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)
    start = reward.initial_params(sft.params, sft.model_config.embed_dim)
    init = stages.init_from(start, tx)
    train_batch, eval_set, pairs = preferences.pair_data(config, sft, train_items, heldout, salt=0x7E3)
    abstract = jax.eval_shape(init, jax.random.key(0))
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params),
        items_per_step=t.batch_size,
        item_name="pairs",
        description=f"reward model from {config.chat.sft} (step {sft.step}); {pairs}",
    )
