"""Direct preference optimisation (task "chat_dpo"; Rafailov et al. 2023), IPO as a switch.

Start: `chat.sft`, an SFT run; the policy starts from its parameters, and the same parameters,
frozen (a constant of the step, never optimised or checkpointed), are the reference. Each step
takes `train.batch_size` preference pairs of training instructions (preferences.py: judge-written,
or the SFT model's own samples ranked by the judge, by data.pairs; label noise by
data.label_noise) and minimises the DPO loss -log sigmoid(beta h), or IPO's (h - 1/(2 beta))^2,
with h the difference of the chosen and rejected responses' log-ratios policy / reference, plus
chat.chosen_nll times the chosen responses' negative log-likelihood per token (0: pure DPO; > 0:
the NLL term of Pang et al. 2024's iterative reasoning preference optimisation, against DPO
lowering the likelihood of the chosen responses too).
Logged: loss, the implicit rewards beta log(pi / ref) of chosen and rejected responses, their
margin and the fraction of pairs it ranks right. Evaluation: the same on fixed held-out pairs,
and greedy answers to held-out instructions judged.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax import config_rules as rules
from aigc_jax.families.chat import objectives, preferences, stages
from aigc_jax.nn.params import count_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

LOSSES = ("dpo", "ipo")
MODEL_FIELDS = ("task", "chat.sft")
FIELD_RULES = {"chat.sft": rules.TEXT, "chat.loss": rules.Choices(LOSSES), "chat.beta": rules.Range(0, low_open=True),
               "chat.chosen_nll": rules.Range(0),
               **stages.DATA_RULES}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    stages.kinds_of(config)
    stages.require(config, "chat.sft", "the workdir of the SFT run (task chat_sft) DPO starts from")


def pair_terms(model, params, reference, batch, *, loss: str, beta: float):
    """Per-pair losses, implicit rewards (chosen, rejected) and the chosen responses' negative
    log-likelihood per token, for a flat batch [2N] of pairs."""
    policy_logp = stages.response_log_probs(model, params, batch)
    reference_logp = jax.lax.stop_gradient(stages.response_log_probs(model, reference, batch))
    n = policy_logp.shape[0] // 2
    fn = objectives.dpo_loss if loss == "dpo" else objectives.ipo_loss
    losses, rewards = fn(policy_logp[:n], policy_logp[n:], reference_logp[:n], reference_logp[n:], beta)
    chosen_nll = -policy_logp[:n] / jnp.maximum(jnp.sum(batch["mask"][:n], axis=-1), 1)
    return losses, rewards, chosen_nll


def train_step(state: TrainState, batch, rng, reference, *, model, tx, schedule, loss: str, beta: float,
               chosen_nll: float):
    del rng

    def objective(params):
        losses, (chosen, rejected), nll = pair_terms(model, params, reference, batch, loss=loss, beta=beta)
        return jnp.mean(losses) + chosen_nll * jnp.mean(nll), (chosen, rejected, jnp.mean(nll))

    (value, (chosen, rejected, nll)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state, norms = apply_update(state, grads, tx)
    margin = chosen - rejected
    metrics = {"loss": value, "reward_chosen": jnp.mean(chosen), "reward_rejected": jnp.mean(rejected),
               "reward_margin": jnp.mean(margin), "reward_accuracy": jnp.mean((margin > 0).astype(jnp.float32)),
               "chosen_nll": nll, "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def eval_step(state: TrainState, batch, reference, *, model, loss: str, beta: float, chosen_nll: float):
    del chosen_nll
    losses, (chosen, rejected), _ = pair_terms(model, state.params, reference, batch, loss=loss, beta=beta)
    weight = batch["pair_weight"]
    margin = chosen - rejected
    return {"loss": jnp.sum(losses * weight), "margin": jnp.sum(margin * weight),
            "right": jnp.sum((margin > 0) * weight), "pairs": jnp.sum(weight)}


def summarize_eval(sums: dict) -> dict:
    pairs = max(float(sums["pairs"]), 1.0)
    return {"loss": float(sums["loss"]) / pairs, "reward_margin": float(sums["margin"]) / pairs,
            "reward_accuracy": float(sums["right"]) / pairs}


def build(config, workdir: str) -> Task:
    check_config(config)
    t, c = config.train, config.chat
    sft = stages.load_source(c.sft, "chat.sft", ("chat_sft",))
    tokenizer, model = sft.tokenizer, sft.model
    train_items, heldout = stages.instruction_sets(config)
    stages.keep_policy_files(sft, workdir)
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)
    start_params = sft.params
    init = stages.init_from(start_params, tx)
    train_batch, eval_set, pairs = preferences.pair_data(config, sft, train_items, heldout, salt=0xD90)
    abstract = jax.eval_shape(init, jax.random.key(0))
    hyper = dict(loss=c.loss, beta=c.beta, chosen_nll=c.chosen_nll)
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, **hyper),
        eval_step=functools.partial(eval_step, model=model, **hyper),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params),
        items_per_step=t.batch_size,
        item_name="pairs",
        description=f"{c.loss.upper()} (beta {c.beta}) from {c.sft} (step {sft.step}), reference frozen; {pairs}",
        on_eval=stages.answer_eval(model, tokenizer, heldout, config),
        frozen=sft.params,
    )
