"""What the chat stages (SFT, reward model, DPO, PPO) share: the data fields and their rules,
the instruction sets, the sequence log-probabilities of responses, and the judged answers that
every stage reports at each evaluation."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from aigc_jax import config_rules as rules
from aigc_jax.config import ConfigError
from aigc_jax.data.tokenizers import save_tokenizer
from aigc_jax.families.chat import answers, instructions as ins, objectives, policy, sampled_pairs
from aigc_jax.train.state import TrainState

DATA_RULES = {
    "data.kinds": rules.TEXT, "data.num_train": rules.at_least(1),
    "data.num_heldout": rules.at_least(1), "data.heldout_fraction": rules.OPEN_FRACTION,
    "data.error_rate": rules.FRACTION, "data.label_noise": rules.FRACTION, "data.system_prob": rules.Range(0, 1),
    "data.multi_turn_prob": rules.Range(0, 1), "eval.answers": rules.at_least(0),
    "eval.max_new_tokens": rules.at_least(1), "data.pairs": rules.Choices(("constructed", "sampled", "mixed")),
    "data.pair_instructions": rules.at_least(1), "data.pair_samples": rules.at_least(2),
    "data.pair_batch": rules.at_least(1), "data.pairing": rules.Choices(sampled_pairs.PAIRINGS),
    "data.pair_temperature": rules.Range(0, low_open=True),
}


def kinds_of(config) -> tuple:
    kinds = tuple(k.strip() for k in config.data.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ins.KINDS]
    if unknown or not kinds:
        raise ConfigError(f"data.kinds={config.data.kinds!r}: unknown kinds {unknown}; expected some of {ins.KINDS}")
    return kinds


def instruction_sets(config) -> tuple:
    """(training instructions, held-out instructions) of the config's kinds and sizes."""
    d = config.data
    kinds = kinds_of(config)
    return (ins.instructions("train", d.num_train, config.seed, kinds, d.heldout_fraction),
            ins.instructions("heldout", d.num_heldout, config.seed, kinds, d.heldout_fraction))


def require(config, field: str, meaning: str) -> str:
    section, name = field.split(".")
    value = config[section][name]
    if not value:
        raise ConfigError(f"{field} is required: {meaning}")
    return value


def load_source(workdir: str, field: str, tasks: tuple) -> policy.ChatModel:
    """The run a stage starts from (or scores with), refused by name when it is the wrong kind."""
    source = policy.load_chat_model(workdir, what=field)
    if source.task not in tasks:
        raise ConfigError(f"{field}={workdir!r} is a {source.task} run; this stage needs one of {', '.join(tasks)}")
    return source


def row_width(tokens: int, context: int) -> int:
    """The width of a stage's token rows: enough for its longest conversation of `tokens` tokens
    (inputs and targets are `width` of its width + 1), rounded up to a multiple of 16, at most the
    context (short rows cost less than context-wide ones; the model takes any length up to it)."""
    if tokens > context + 1:
        raise ConfigError(f"the longest conversation takes about {tokens} tokens, more than the model's context "
                          f"{context} (+1): pretrain the base LM with a longer model.context_length")
    return min(context, -(-(tokens - 1) // 16) * 16)


def keep_policy_files(source: policy.ChatModel, workdir: str) -> None:
    """The stage's workdir keeps the tokenizer and the LM's model section (it loads alone)."""
    if workdir:
        save_tokenizer(source.tokenizer.base, workdir)
        policy.save_model_config(source.model_config, workdir)


def init_from(params, tx, extra=None):
    """init(rng) of a stage whose every parameter comes from other runs (the rng is unused)."""
    def init(rng):
        del rng
        return TrainState.create(jax.tree_util.tree_map(jnp.asarray, params), tx,
                                 extra=jax.tree_util.tree_map(jnp.asarray, extra or {}))
    return init


def logits(model, params, inputs):
    return model.apply({"params": params}, inputs)


def response_log_probs(model, params, batch):
    """Sum of log p(token) over each row's response tokens (batch['mask']): [N]."""
    logp = objectives.token_log_probs(logits(model, params, batch["inputs"]), batch["targets"])
    return jnp.sum(logp * batch["mask"], axis=-1)


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
