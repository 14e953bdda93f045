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
from aigc_jax.config import ConfigError
from aigc_jax.data.tokenizers import save_tokenizer
from aigc_jax.families.chat import answers, conversations, instructions as ins, objectives, policy
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = ("task", "chat.base")
DATA_RULES = {
    "chat.base": rules.TEXT, "data.kinds": rules.TEXT, "data.num_train": rules.at_least(1),
    "data.num_heldout": rules.at_least(1), "data.heldout_fraction": rules.OPEN_FRACTION,
    "data.error_rate": rules.FRACTION, "data.label_noise": rules.FRACTION, "data.system_prob": rules.Range(0, 1),
    "data.multi_turn_prob": rules.Range(0, 1), "eval.answers": rules.at_least(0),
    "eval.max_new_tokens": rules.at_least(1),
}
FIELD_RULES = dict(DATA_RULES)


def kinds_of(config) -> tuple:
    kinds = tuple(k.strip() for k in config.data.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ins.KINDS]
    if unknown or not kinds:
        raise ConfigError(f"data.kinds={config.data.kinds!r}: unknown kinds {unknown}; expected some of {ins.KINDS}")
    return kinds


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    kinds_of(config)
    if not config.chat.base:
        raise ConfigError("chat.base is required: the workdir of a pretrained LM run "
                          "(python -m experiments.train --config=configs/gpt_char.py:chat_base --workdir=...)")


def instruction_sets(config) -> tuple:
    d = config.data
    kinds = kinds_of(config)
    return (ins.instructions("train", d.num_train, config.seed, kinds, d.heldout_fraction),
            ins.instructions("heldout", d.num_heldout, config.seed, kinds, d.heldout_fraction))


def causal_lm_logits(model, params, inputs):
    return model.apply({"params": params}, inputs)


def train_step(state: TrainState, batch, rng, *, model, tx, schedule):
    del rng
    loss, grads = jax.value_and_grad(
        lambda p: objectives.sft_loss(causal_lm_logits(model, p, batch["inputs"]), batch["targets"], batch["mask"])
    )(state.params)
    new_state, norms = apply_update(state, grads, tx)
    return new_state.replace(step=state.step + 1), {"loss": loss, "learning_rate": schedule(state.step), **norms}


def eval_step(state: TrainState, batch, *, model):
    nll = -objectives.token_log_probs(causal_lm_logits(model, state.params, batch["inputs"]), batch["targets"])
    mask = batch["mask"] * batch["weight"][:, None]
    return {"nll": jnp.sum(nll * mask), "tokens": jnp.sum(mask)}


def summarize_eval(sums: dict) -> dict:
    return {"loss": float(sums["nll"]) / max(float(sums["tokens"]), 1.0)}


def answer_eval(model, tokenizer, heldout, config):
    """on_eval: greedy answers to the first eval.answers held-out instructions, judged."""
    items = heldout[:config.eval.answers]

    def on_eval(state, step: int, workdir: str) -> dict:
        if not items:
            return {}
        texts = [text for text, _ in answers.answer(model, state.params, tokenizer, items,
                                                   max_new_tokens=config.eval.max_new_tokens)]
        return answers.scores(items, texts)
    return on_eval


def build(config, workdir: str) -> Task:
    check_config(config)
    d, t = config.data, config.train
    base = policy.load_chat_model(config.chat.base, what="chat.base")
    if base.task != "lm":
        raise ConfigError(f"chat.base={config.chat.base!r} is a {base.task} run: SFT starts from a base LM (task lm)")
    tokenizer, model = base.tokenizer, base.model
    train_items, heldout = instruction_sets(config)
    width = model.context_length
    needed = conversations.longest_conversation(tokenizer, train_items + heldout, d.multi_turn_prob > 0)
    if needed > width + 1:
        raise ConfigError(f"the longest conversation takes about {needed} tokens, more than the base run's context "
                          f"{width} (+1): pretrain the base with a longer model.context_length")
    if workdir:
        save_tokenizer(tokenizer.base, workdir)
        policy.save_model_config(base.model_config, workdir)
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)
    start_params = base.params

    def init(rng):
        del rng  # every parameter comes from the base run
        return TrainState.create(jax.tree_util.tree_map(jnp.asarray, start_params), tx)

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
                     f"{len(heldout)} held-out instructions ({', '.join(kinds_of(config))}), demonstration error "
                     f"rate {d.error_rate}; context {width}"),
        on_eval=answer_eval(model, tokenizer, heldout, config),
    )
