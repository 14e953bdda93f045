"""The losses of ChatGPT-style tuning, as pure functions of log-probabilities and values.

  sft_loss         mean NLL over the assistant tokens only (the template's loss mask)
  bradley_terry    reward model: -log sigmoid(r(x, y_w) - r(x, y_l)) (InstructGPT eq. 1)
  dpo_loss         -log sigmoid(beta [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])
                   (Rafailov et al. 2023, eq. 7); ipo_loss: (h - 1 / (2 beta))^2 on the same
                   log-ratio difference h (Azar et al. 2023)
  kl_per_token     estimators of KL(pi || ref) per sampled token from log pi - log ref
                   (k1 = the log ratio, unbiased; k3 = (r - 1) - log r with r = ref / pi, unbiased
                   and never negative; Schulman 2020)
  gae              generalised advantage estimation (Schulman et al. 2016) over masked tokens
  ppo_policy_loss  the clipped surrogate (Schulman et al. 2017, eq. 7)
  ppo_value_loss   the clipped value loss of PPO's reference implementations

Sequence log-probabilities are sums of per-token log-probabilities over the response tokens.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def token_log_probs(logits, targets):
    """logits [..., T, V], targets [..., T] -> log p(target) [..., T]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def masked_mean(x, mask):
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sft_loss(logits, targets, loss_mask):
    """Mean NLL in nats over the tokens where loss_mask is True."""
    return masked_mean(-token_log_probs(logits, targets), loss_mask)


def bradley_terry(reward_chosen, reward_rejected):
    """Per-pair loss -log sigmoid(r_w - r_l), and whether the pair is ranked right."""
    margin = reward_chosen - reward_rejected
    return -jax.nn.log_sigmoid(margin), margin > 0


def _log_ratio_difference(policy_chosen, policy_rejected, reference_chosen, reference_rejected):
    return (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
    """Per-pair DPO loss from sequence log-probabilities; also the implicit rewards
    beta (log pi - log ref) of the chosen and rejected responses."""
    h = _log_ratio_difference(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    rewards = beta * (policy_chosen - reference_chosen), beta * (policy_rejected - reference_rejected)
    return -jax.nn.log_sigmoid(beta * h), rewards


def ipo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
    """Per-pair IPO loss (h - 1 / (2 beta))^2 (beta is IPO's tau); also the implicit rewards."""
    h = _log_ratio_difference(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    rewards = beta * (policy_chosen - reference_chosen), beta * (policy_rejected - reference_rejected)
    return (h - 1.0 / (2.0 * beta)) ** 2, rewards


def kl_per_token(policy_logp, reference_logp, estimator: str = "k1"):
    """Per-token estimate of KL(pi || ref) at tokens sampled from pi."""
    log_ratio = policy_logp - reference_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return jnp.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; expected 'k1' or 'k3'")


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """rewards, values, mask [B, T] (mask: the response tokens; slots outside it get zero and pass
    nothing back) -> (advantages, returns) [B, T].
    delta_t = r_t + gamma V_{t+1} - V_t (V after the last response token = 0);
    A_t = delta_t + gamma lam A_{t+1}; returns = A + V."""
    mask = mask.astype(rewards.dtype)
    next_values = jnp.concatenate([values[:, 1:] * mask[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    deltas = (rewards + gamma * next_values - values) * mask

    def back(carry, x):
        delta, m = x
        advantage = delta + gamma * lam * carry
        return advantage * m, advantage * m

    _, advantages = jax.lax.scan(back, jnp.zeros_like(rewards[:, 0]), (deltas.T, mask.T), reverse=True)
    advantages = advantages.T
    return advantages, (advantages + values) * mask


def ppo_policy_loss(new_logp, old_logp, advantages, mask, clip: float = 0.2):
    """Mean over masked tokens of -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A); also the
    fraction of tokens where the clip was active."""
    ratio = jnp.exp(new_logp - old_logp)
    unclipped, clipped = ratio * advantages, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = masked_mean(-jnp.minimum(unclipped, clipped), mask)
    return loss, masked_mean((clipped < unclipped).astype(jnp.float32), mask)


def ppo_value_loss(new_values, old_values, returns, mask, clip: float = 0.2):
    """Mean over masked tokens of 0.5 max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2)."""
    clipped = old_values + jnp.clip(new_values - old_values, -clip, clip)
    return 0.5 * masked_mean(jnp.maximum((new_values - returns) ** 2, (clipped - returns) ** 2), mask)
