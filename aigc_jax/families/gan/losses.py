"""The GAN family's losses and penalties.

Inputs are the discriminator's raw outputs (logits / critic values), one per example:
real [B], fake [B]. D(x) = sigmoid(logit) where a probability is meant. Every function
returns the quantity its player MINIMISES. LOSSES pairs them by name (config loss.name).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """The minimax game's discriminator side (Goodfellow et al. 2014), as a loss:
    -E_data[log D(x)] - E_z[log(1 - D(G(z)))] = E[softplus(-real)] + E[softplus(fake)].
    Shared by the saturating and non-saturating variants."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def gan_generator_loss_saturating(fake_logits: jax.Array) -> jax.Array:
    """The original minimax generator objective: minimise E_z[log(1 - D(G(z)))] = -E[softplus(fake)].
    Its gradient vanishes when D confidently rejects the fakes (early training)."""
    return -jnp.mean(jax.nn.softplus(fake_logits))


def gan_generator_loss_nonsaturating(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating generator loss (Goodfellow et al. 2014, sec. 3):
    -E_z[log D(G(z))] = E[softplus(-fake)]."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Hinge generator loss: -E[D(G(z))]."""
    return -jnp.mean(fake_logits)


def wasserstein_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """WGAN critic (Arjovsky et al. 2017): minimise E[f(G(z))] - E[f(x)] (the negated W1 estimate)."""
    return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wasserstein_generator_loss(fake_scores: jax.Array) -> jax.Array:
    """WGAN generator: minimise -E[f(G(z))]."""
    return -jnp.mean(fake_scores)


def least_squares_discriminator_loss(real_outputs: jax.Array, fake_outputs: jax.Array) -> jax.Array:
    """LSGAN (Mao et al. 2017) with targets a=0 (fake), b=1 (real):
    1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]."""
    return 0.5 * jnp.mean(jnp.square(real_outputs - 1.0)) + 0.5 * jnp.mean(jnp.square(fake_outputs))


def least_squares_generator_loss(fake_outputs: jax.Array) -> jax.Array:
    """LSGAN generator with target c=1: 1/2 E[(D(G(z)) - 1)^2]."""
    return 0.5 * jnp.mean(jnp.square(fake_outputs - 1.0))


def _per_example_input_grads(critic_fn, inputs: jax.Array) -> jax.Array:
    """d critic(x)_i / d x_i for each example i; critic_fn maps [B, ...] -> [B] and treats
    examples independently (no batch statistics), so the gradient of the sum is per-example."""
    return jax.grad(lambda x: jnp.sum(critic_fn(x)))(inputs)


def _squared_norms(grads: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)


def gradient_penalty(critic_fn, real: jax.Array, fake: jax.Array, rng: jax.Array,
                     weight: float = 10.0) -> jax.Array:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad_x f(x_hat)||_2 - 1)^2] with
    x_hat = eps * x + (1 - eps) * G(z), eps ~ U[0, 1] per example. real, fake: [B, ...]."""
    eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
    interpolates = eps * real + (1.0 - eps) * fake
    norms = jnp.sqrt(_squared_norms(_per_example_input_grads(critic_fn, interpolates)) + 1e-12)
    return weight * jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(critic_fn, real: jax.Array, gamma: float) -> jax.Array:
    """R1 (Mescheder et al. 2018): gamma / 2 * E_data[||grad_x D(x)||^2], on real data only."""
    return 0.5 * gamma * jnp.mean(_squared_norms(_per_example_input_grads(critic_fn, real)))


# name -> (discriminator loss(real, fake), generator loss(fake))
LOSSES = {
    "minimax": (gan_discriminator_loss, gan_generator_loss_saturating),
    "nonsaturating": (gan_discriminator_loss, gan_generator_loss_nonsaturating),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "wgan_gp": (wasserstein_critic_loss, wasserstein_generator_loss),
    "least_squares": (least_squares_discriminator_loss, least_squares_generator_loss),
}
