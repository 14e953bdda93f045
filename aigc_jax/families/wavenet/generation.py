"""WaveNet generation: fast (Paine et al. 2016, "Fast Wavenet Generation Algorithm") and naive.

Fast: each layer keeps a queue of its last d inputs (d its dilation) and the input convolution
keeps the previous input; one `lax.scan` step per sample pops x_{t-d} from each queue, runs
`WaveNet.step` (the same layers as the full forward pass, O(layers) work) and pushes x_t.
Naive: each sample reruns the full forward pass over the last receptive-field window,
O(receptive field x layers) work per sample.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from aigc_jax.audio import mulaw
from aigc_jax.families.wavenet import losses
from aigc_jax.families.wavenet.model import WaveNet, receptive_field


def _cond_at(conds, t):
    """Each layer's conditioning at time t: [B, 2 gate] (global: the same at every t) or None."""
    return [None if c is None else (c[:, 0] if c.shape[1] == 1 else c[:, t]) for c in conds]


def silence(model: WaveNet, batch: int):
    """The sample generation starts from: mu-law class of 0.0, or the value 0.0."""
    if model.output == "categorical":
        return jnp.full((batch,), mulaw.MU // 2 + 1, jnp.int32)  # encode(0.0): round(127.5) = 128
    return jnp.zeros((batch,), jnp.float32)


def draw(model: WaveNet, key, out, temperature: float):
    """The next sample from the model's output at one step: a mu-law class or a value."""
    if model.output == "categorical":
        return losses.sample_categorical(key, out, temperature)
    return losses.sample_logistic_mixture(key, out, temperature)


def waveform(model: WaveNet, samples):
    """Generated samples [B, T] -> waveform in [-1, 1]."""
    return mulaw.decode(samples) if model.output == "categorical" else samples


def _scan(model: WaveNet, params, conds, first, num_steps: int, choose):
    """Runs the queues for num_steps samples; choose(t, prediction at t) -> the sample fed at t + 1."""
    batch = first.shape[0]
    queues = tuple(jnp.zeros((batch, d, model.residual)) for d in model.dilations)
    past_input = jnp.zeros((batch, model.residual))

    def body(carry, t):
        sample, past_input, queues = carry
        pasts = [q[:, t % d] for q, d in zip(queues, model.dilations)]
        out, feature, layer_inputs = model.apply({"params": params}, sample, past_input, pasts, _cond_at(conds, t),
                                                 method="step")
        queues = tuple(q.at[:, t % d].set(x) for q, d, x in zip(queues, model.dilations, layer_inputs))
        nxt = choose(t, out)
        return (nxt, feature, queues), (nxt, out)

    _, (samples, outputs) = jax.lax.scan(body, (first, past_input, queues), jnp.arange(num_steps))
    return jnp.swapaxes(samples, 0, 1), jnp.swapaxes(outputs, 0, 1)


def cached_predictions(model: WaveNet, params, inputs, speaker=None, mel=None):
    """Teacher-forced through the queues: the same [B, T, out] as model.apply(params, inputs) (the
    equivalence test of fast generation)."""
    conds = model.apply({"params": params}, speaker, mel, inputs.shape[1], method="conditioning")
    inputs_t = jnp.swapaxes(inputs, 0, 1)
    _, outputs = _scan(model, params, conds, inputs[:, 0], inputs.shape[1],
                       lambda t, out: inputs_t[jnp.minimum(t + 1, inputs.shape[1] - 1)])
    return outputs


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "temperature"))
def generate(model: WaveNet, params, rng, num_samples: int, speaker=None, mel=None, temperature: float = 1.0,
             batch: int = 1):
    """Fast generation of [B, num_samples] waveforms in [-1, 1] (B from speaker / mel, else `batch`)."""
    if speaker is not None:
        batch = speaker.shape[0]
    elif mel is not None:
        batch = mel.shape[0]
    conds = model.apply({"params": params}, speaker, mel, num_samples, method="conditioning")

    samples, _ = _scan(model, params, conds, silence(model, batch), num_samples,
                       lambda t, out: draw(model, jax.random.fold_in(rng, t), out, temperature))
    return waveform(model, samples)


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "temperature"))
def generate_naive(model: WaveNet, params, rng, num_samples: int, speaker=None, temperature: float = 1.0,
                   batch: int = 1):
    """The baseline: each sample reruns the full forward pass over a receptive-field window
    (unconditional or speaker-conditioned). The window fills from the left for the first
    receptive-field samples (the history before the first sample is the zero padding training
    sees at a crop's start, as in fast generation), then slides; so both draw the same samples."""
    if speaker is not None:
        batch = speaker.shape[0]
    field = receptive_field(model.dilations)
    start = silence(model, batch)
    window = jnp.zeros((batch, field), start.dtype).at[:, 0].set(start)

    def body(window, t):
        position = jnp.minimum(t, field - 1)
        out = jax.lax.dynamic_index_in_dim(model.apply({"params": params}, window, speaker), position, axis=1,
                                           keepdims=False)
        nxt = draw(model, jax.random.fold_in(rng, t), out, temperature)
        filling = window.at[:, jnp.minimum(t + 1, field - 1)].set(nxt)
        sliding = jnp.concatenate([window[:, 1:], nxt[:, None]], axis=1)
        return jnp.where(t + 1 < field, filling, sliding), nxt

    _, samples = jax.lax.scan(body, window, jnp.arange(num_samples))
    return waveform(model, jnp.swapaxes(samples, 0, 1))
