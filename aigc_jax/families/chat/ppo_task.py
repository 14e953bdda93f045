"""RLHF with PPO (task "chat_ppo"), InstructGPT's third step: the policy (from `chat.sft`) samples
answers to training instructions, the frozen reward model (`chat.rm`) scores them, a KL penalty
beta x (log pi - log pi_SFT) per token keeps it near the frozen SFT model, and PPO updates the
policy and a value network (from the reward model) (aigc_jax/families/chat/ppo.py). As a control,
chat.reward="judge" scores the rollouts by the judge itself (Gao et al.'s "gold" reward; no reward
model needed, the value network then starts from the SFT transformer): what PPO reaches when the
reward is right, beside what it reaches against the learned proxy.

Rollouts are made on the host from the current policy at each step (the loop's host_batch, a
pure function of (state, seed, step): resuming is bit-identical); `train.batch_size` rollouts
per step. Logged per step: the reward model's score and the true judge's accuracy of the
rollouts (their divergence is reward over-optimisation, Gao et al. 2022), the KL to SFT per
response, response length, entropy, clip fraction, policy and value losses, and beta
(chat.kl_target > 0 adapts it to hold the KL near a target: ppo.adapted_beta). Evaluation: NLL
of the held-out instructions' correct answers, and greedy held-out answers judged.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.config import ConfigError
from aigc_jax.families.chat import conversations, objectives, ppo, reward, rollouts, stages
from aigc_jax.families.chat.template import render
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task

REWARDS = ("model", "judge")
MODEL_FIELDS = ("task", "chat.sft", "chat.rm", "chat.reward")
FIELD_RULES = {
    "chat.sft": rules.TEXT, "chat.rm": rules.TEXT, "chat.beta": rules.Range(0, low_open=True),
    "chat.ppo_epochs": rules.at_least(1), "chat.minibatches": rules.at_least(1), "chat.clip": rules.POSITIVE,
    "chat.value_clip": rules.POSITIVE, "chat.vf_coef": rules.NON_NEGATIVE, "chat.entropy_coef": rules.NON_NEGATIVE,
    "chat.gamma": rules.Range(0, 1), "chat.lam": rules.Range(0, 1), "chat.max_response": rules.at_least(1),
    "chat.temperature": rules.POSITIVE, "chat.reward": rules.Choices(REWARDS), "chat.kl_target": rules.NON_NEGATIVE,
    "chat.kl_horizon": rules.POSITIVE, **stages.DATA_RULES,
}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    stages.kinds_of(config)
    stages.require(config, "chat.sft", "the workdir of the SFT run (task chat_sft): the start and the KL reference")
    if config.chat.reward == "model":
        stages.require(config, "chat.rm", "the workdir of the reward model run (task chat_rm)")
    if config.train.batch_size % config.chat.minibatches:
        raise ConfigError(f"train.batch_size={config.train.batch_size} is not divisible by "
                          f"chat.minibatches={config.chat.minibatches}")
    if config.train.steps_per_call != 1:
        raise ConfigError("chat_ppo makes its rollouts from the current policy: train.steps_per_call must be 1")


def settings_of(c) -> ppo.PPOSettings:
    return ppo.PPOSettings(beta=c.beta, epochs=c.ppo_epochs, minibatches=c.minibatches, clip=c.clip,
                           value_clip=c.value_clip, vf_coef=c.vf_coef, entropy_coef=c.entropy_coef, gamma=c.gamma,
                           lam=c.lam, judge_reward=c.reward == "judge", kl_target=c.kl_target,
                           kl_horizon=c.kl_horizon)


def eval_step(state: TrainState, batch, frozen, *, model):
    del frozen
    nll = -objectives.token_log_probs(stages.logits(model, state.params["policy"], batch["inputs"]), batch["targets"])
    mask = batch["mask"] * batch["weight"][:, None]
    return {"nll": jnp.sum(nll * mask), "tokens": jnp.sum(mask)}


def summarize_eval(sums: dict) -> dict:
    return {"loss": float(sums["nll"]) / max(float(sums["tokens"]), 1.0)}


def build(config, workdir: str) -> Task:
    check_config(config)
    d, t, c = config.data, config.train, config.chat
    sft = stages.load_source(c.sft, "chat.sft", ("chat_sft",))
    tokenizer, model = sft.tokenizer, sft.model
    if c.rm:
        rm = stages.load_source(c.rm, "chat.rm", ("chat_rm",))
        if rm.tokenizer.vocab_size != sft.tokenizer.vocab_size or rm.model != sft.model:
            raise ConfigError(f"chat.rm={c.rm!r} was not built on the same transformer as chat.sft={c.sft!r}")
        value_start, scored_by = rm.params, f"the reward model {c.rm} (step {rm.step})"
    else:  # the judge's reward: the value network starts from the SFT transformer and a zero head
        value_start = reward.initial_params(sft.params, sft.model_config.embed_dim)
    if c.reward == "judge":
        scored_by = "the judge (the gold reward: a control, not RLHF)"
    train_items, heldout = stages.instruction_sets(config)
    prompt_pad = rollouts.prompt_width(tokenizer, train_items, d.system_prob > 0)
    if prompt_pad + c.max_response > model.context_length:
        raise ConfigError(f"prompts padded to {prompt_pad} tokens plus chat.max_response={c.max_response} exceed the "
                          f"context {model.context_length}")
    width = stages.row_width(prompt_pad + c.max_response, model.context_length)
    stages.keep_policy_files(sft, workdir)
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)
    start = {"policy": sft.params, "value": value_start}
    frozen = {"reference": sft.params} | ({"reward": rm.params} if c.reward == "model" else {})

    init = stages.init_from(start, tx, extra={"kl_beta": np.float32(c.beta)})
    adapted = f" adapted towards {c.kl_target} nats per response" if c.kl_target else ""

    def picks(step: int):
        rng = np.random.default_rng([config.seed, step, 0x990])
        items = [train_items[i] for i in rng.integers(len(train_items), size=t.batch_size)]
        return items, [bool(v) for v in rng.random(t.batch_size) < d.system_prob]

    def train_batch(step: int) -> dict:
        """The step's prompts with an empty answer (<|end|> at once): the rollouts' shapes, which
        the loop compiles from; host_batch makes the real ones."""
        items, system = picks(step)
        prompts = [render(tokenizer, conversations.question_turns(i, s), open_assistant=True).ids
                   for i, s in zip(items, system)]
        batch = rollouts.rollout_rows(tokenizer, prompts, [[tokenizer.end_id]] * len(items), width)
        zeros = np.zeros(len(items), np.float32)
        return batch | {"correct": zeros, "judge_score": zeros, "stopped": np.ones(len(items), np.float32)}

    def host_batch(state, step: int) -> dict:
        items, system = picks(step)
        return rollouts.make_rollouts(model, state.params["policy"], tokenizer, items,
                                      rollouts.rollout_key(config.seed, step), width=width, prompt_pad=prompt_pad,
                                      max_response=c.max_response, temperature=c.temperature, system=system)

    eval_convs = [conversations.question_turns(item) + [("assistant", item.answer)] for item in heldout]
    eval_set = padded_batches(conversations.rows(tokenizer, eval_convs, width), config.eval.batch_size)
    policy_eval = stages.answer_eval(model, tokenizer, heldout, config)
    abstract = jax.eval_shape(init, jax.random.key(0))
    step_fn = functools.partial(ppo.iteration, model=model, tx=tx, settings=settings_of(c))

    def train_step(state, batch, rng, frozen_models):
        state, metrics = step_fn(state, batch, rng, frozen_models)
        return state, metrics | {"learning_rate": schedule(state.step - 1)}

    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=train_step,
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params["policy"]),
        items_per_step=t.batch_size,
        item_name="rollouts",
        description=(f"PPO from {c.sft} (step {sft.step}) against {scored_by}, KL beta {c.beta}{adapted}; "
                     f"{t.batch_size} rollouts per step of up to {c.max_response} tokens, {c.ppo_epochs} "
                     f"epochs x {c.minibatches} minibatches; {len(train_items)} training instructions"),
        headline_metrics=("score", "judge_accuracy", "kl"),
        on_eval=lambda state, step, wd: policy_eval(state.replace(params=state.params["policy"]), step, wd),
        frozen=frozen,
        host_batch=host_batch,
    )
