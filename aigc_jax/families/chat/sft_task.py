"""Supervised fine-tuning (task "chat_sft"), InstructGPT's first step: a pretrained LM learns the
conversation format on demonstrations, the loss on the assistant tokens only.

Start: `chat.base`, a base LM run (task lm); its tokenizer gains the four chat tokens and its
embedding their rows (aigc_jax/families/chat/policy.py). The run keeps that tokenizer and the
LM's model section in its workdir, so later stages load it alone.
Data: conversations from the training instructions (aigc_jax/families/chat/conversations.py), a
pure function of (seed, step). Evaluation: NLL per assistant token on held-out conversations,
and greedy answers to held-out instructions scored by the judge (accuracy overall and per kind).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.families.chat import conversations, objectives, stages
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = ("task", "chat.base")
FIELD_RULES = {"chat.base": rules.TEXT, **stages.DATA_RULES}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    stages.kinds_of(config)
    stages.require(config, "chat.base", "the workdir of a pretrained LM run "
                                        "(python -m experiments.train --config=configs/gpt_char.py:chat_base --workdir=...)")


def train_step(state: TrainState, batch, rng, *, model, tx, schedule):
    del rng
    loss, grads = jax.value_and_grad(
        lambda p: objectives.sft_loss(stages.logits(model, p, batch["inputs"]), batch["targets"], batch["mask"])
    )(state.params)
    new_state, norms = apply_update(state, grads, tx)
    return new_state.replace(step=state.step + 1), {"loss": loss, "learning_rate": schedule(state.step), **norms}


def eval_step(state: TrainState, batch, *, model):
    nll = -objectives.token_log_probs(stages.logits(model, state.params, batch["inputs"]), batch["targets"])
    mask = batch["mask"] * batch["weight"][:, None]
    return {"nll": jnp.sum(nll * mask), "tokens": jnp.sum(mask)}


def summarize_eval(sums: dict) -> dict:
    return {"loss": float(sums["nll"]) / max(float(sums["tokens"]), 1.0)}


def build(config, workdir: str) -> Task:
    check_config(config)
    d, t = config.data, config.train
    base = stages.load_source(config.chat.base, "chat.base", ("lm",))
    tokenizer, model = base.tokenizer, base.model
    train_items, heldout = stages.instruction_sets(config)
    width = stages.row_width(conversations.longest_conversation(tokenizer, train_items + heldout, d.multi_turn_prob > 0),
                             model.context_length)
    stages.keep_policy_files(base, workdir)
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)
    start_params = base.params

    init = stages.init_from(start_params, tx)

    def train_batch(step: int) -> dict:
        rng = np.random.default_rng([config.seed, step, 0x5F7])
        picks = rng.integers(len(train_items), size=t.batch_size)
        convs = [conversations.sft_conversation(train_items[i], train_items, rng, error_rate=d.error_rate,
                                                system_prob=d.system_prob, multi_turn_prob=d.multi_turn_prob)
                 for i in picks]
        return conversations.rows(tokenizer, convs, width)

    eval_convs = [conversations.question_turns(item) + [("assistant", item.answer)] for item in heldout]
    eval_set = padded_batches(conversations.rows(tokenizer, eval_convs, width), config.eval.batch_size)
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
        item_name="conversations",
        description=(f"SFT from {config.chat.base} (step {base.step}); {len(train_items)} training and "
                     f"{len(heldout)} held-out instructions ({', '.join(stages.kinds_of(config))}), demonstration error "
                     f"rate {d.error_rate}; rows of {width} tokens"),
        on_eval=stages.answer_eval(model, tokenizer, heldout, config),
    )
