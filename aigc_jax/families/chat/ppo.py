"""One PPO iteration on a batch of rollouts (InstructGPT's RL step, Ouyang et al. 2022 eq. 2),
as one pure, jit-compiled function.

  score      the frozen reward model's r(x, y) of each rollout (or, as a control, the judge's
             score of it: the "gold" reward of Gao et al. 2022);
  KL         per response token, log pi_old - log pi_SFT (the k1 estimator; pi_old = the policy
             that sampled, before this iteration's updates);
  rewards    -beta KL at every response token, plus the score at the last one; beta fixed, or
             (kl_target > 0) adapted after every iteration towards a target KL per response by
             Ziegler et al. 2019's proportional controller, kept in the train state (`adapted_beta`);
  values     a separate value network (initialised from the reward model, as InstructGPT's),
             V_t at the position that emits response token t;
  advantages GAE(gamma, lambda) over the response tokens, whitened over the batch;
  updates    `epochs` passes over the rollouts in `minibatches` shuffled minibatches, each one
             AdamW step on the clipped policy loss + vf_coef x the clipped value loss
             - entropy_coef x the entropy (one lax.scan).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from aigc_jax.families.chat import objectives, reward, stages
from aigc_jax.train.update import apply_update


@dataclasses.dataclass(frozen=True)
class PPOSettings:
    beta: float = 0.05
    epochs: int = 4
    minibatches: int = 2
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 0.95
    judge_reward: bool = False  # score = the rollouts' judge_score instead of the reward model's
    kl_target: float = 0.0  # > 0: adapt beta towards this KL per response (nats); 0: beta fixed
    kl_horizon: float = 256.0  # the controller's horizon in rollouts (Ziegler et al.'s H)


def values_of(model, value_params, inputs):
    """V [N, T]: the value head on the value network's hidden state at every position."""
    hidden = model.apply({"params": value_params["lm"]}, inputs, features=True)
    return hidden @ value_params["head"]["kernel"] + value_params["head"]["bias"]


def whiten(x, mask):
    mean = objectives.masked_mean(x, mask)
    var = objectives.masked_mean((x - mean) ** 2, mask)
    return (x - mean) * jax.lax.rsqrt(var + 1e-8) * mask


def adapted_beta(beta, kl, s: PPOSettings, rollouts: int):
    """Ziegler et al. 2019's adaptive KL coefficient: beta x (1 + e x rollouts / horizon) with the
    proportional error e = clip(KL / target - 1, -0.2, 0.2) of this iteration's mean KL."""
    error = jnp.clip(kl / s.kl_target - 1.0, -0.2, 0.2)
    return beta * (1.0 + error * rollouts / s.kl_horizon)


def rollout_terms(model, params, frozen, batch, s: PPOSettings, beta=None) -> dict:
    """Everything fixed during the iteration: old log-probs, KL, score, values, advantages, returns
    (beta: the KL weight of this iteration; the settings' fixed one if None)."""
    beta = s.beta if beta is None else beta
    inputs, targets, mask = batch["inputs"], batch["targets"], batch["mask"]
    maskf = mask.astype(jnp.float32)
    old_logp = objectives.token_log_probs(stages.logits(model, params["policy"], inputs), targets) * maskf
    ref_logp = objectives.token_log_probs(stages.logits(model, frozen["reference"], inputs), targets) * maskf
    kl = objectives.kl_per_token(old_logp, ref_logp, "k1") * maskf
    score = batch["judge_score"] if s.judge_reward else reward.rewards(model, frozen["reward"], inputs, mask)
    last = jax.nn.one_hot(reward.last_response_position(mask), mask.shape[-1]) * maskf
    token_rewards = -beta * kl + last * score[:, None]
    old_values = values_of(model, params["value"], inputs) * maskf
    advantages, returns = objectives.gae(token_rewards, old_values, maskf, s.gamma, s.lam)
    return {"old_logp": old_logp, "kl": kl, "score": score, "old_values": old_values,
            "advantages": whiten(advantages, maskf), "returns": returns}


def minibatch_loss(params, model, rows, s: PPOSettings):
    mask = rows["mask"].astype(jnp.float32)
    logits = stages.logits(model, params["policy"], rows["inputs"])
    logp = objectives.token_log_probs(logits, rows["targets"]) * mask
    policy_loss, clipped = objectives.ppo_policy_loss(logp, rows["old_logp"], rows["advantages"], mask, s.clip)
    values = values_of(model, params["value"], rows["inputs"])
    value_loss = objectives.ppo_value_loss(values, rows["old_values"], rows["returns"], mask, s.value_clip)
    logq = jax.nn.log_softmax(logits, axis=-1)
    entropy = objectives.masked_mean(-jnp.sum(jnp.exp(logq) * logq, axis=-1), mask)
    total = policy_loss + s.vf_coef * value_loss - s.entropy_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "clip_fraction": clipped}


def iteration(state, batch, rng, frozen, *, model, tx, settings: PPOSettings):
    """(new state, metrics) after one PPO iteration on `batch`'s rollouts."""
    s = settings
    beta = state.extra["kl_beta"] if s.kl_target > 0 else jnp.float32(s.beta)
    fixed = rollout_terms(model, state.params, frozen, batch, s, beta)
    rows = {k: batch[k] for k in ("inputs", "targets", "mask")} | {
        k: fixed[k] for k in ("old_logp", "old_values", "advantages", "returns")}
    n = batch["inputs"].shape[0]
    size = n // s.minibatches
    rng = jax.random.fold_in(rng, state.step)
    orders = jnp.stack([jax.random.permutation(jax.random.fold_in(rng, e), n) for e in range(s.epochs)])
    picks = orders[:, :size * s.minibatches].reshape(s.epochs * s.minibatches, size)

    def update(st, pick):
        mb = jax.tree_util.tree_map(lambda x: x[pick], rows)
        (_, parts), grads = jax.value_and_grad(minibatch_loss, has_aux=True)(st.params, model, mb, s)
        st, norms = apply_update(st, grads, tx)
        return st, parts | norms

    state, parts = jax.lax.scan(update, state, picks)
    maskf = batch["mask"].astype(jnp.float32)
    metrics = {k: jnp.mean(v) for k, v in parts.items()}
    metrics.update(score=jnp.mean(fixed["score"]), kl=jnp.mean(jnp.sum(fixed["kl"], axis=-1)),
                   judge_accuracy=jnp.mean(batch["correct"]), stopped=jnp.mean(batch["stopped"]),
                   response_length=jnp.mean(jnp.sum(maskf, axis=-1)))
    metrics["loss"] = -metrics["score"] + beta * metrics["kl"]  # the KL-penalised objective, negated
    metrics["beta"] = beta
    extra = state.extra
    if s.kl_target > 0:
        extra = {**extra, "kl_beta": adapted_beta(beta, metrics["kl"], s, n)}
    return state.replace(step=state.step + 1, extra=extra), metrics
