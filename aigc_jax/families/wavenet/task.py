"""WaveNet on the one training loop: teacher-forced maximum likelihood on random crops.

Loss: mean negative log-likelihood per sample of the crop's samples given the ones before (read
in a window that reaches a receptive field further back, data.history_frames; see data.py)
(categorical over mu-law classes, or the discretised logistic mixture over 16-bit values),
with the switches of model.global_conditioning (speaker) and model.local_conditioning (log-mel
frames: the vocoder). Evaluation: NLL in bits per sample on fixed crops of held-out utterances
(validation split), and at each evaluation a short sample written as WAV into the workdir.
"""
from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.config import ConfigError
from aigc_jax.families.wavenet import data as wave_data
from aigc_jax.families.wavenet import losses
from aigc_jax.families.wavenet.model import WaveNet, dilation_cycle, receptive_field
from aigc_jax.nn.params import count_params
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

OUTPUTS = ("categorical", "logistic_mixture")
MODEL_FIELDS = ("task", "model", "data.sample_rate", "data.hop", "data.n_fft", "data.n_mels", "data.fmin",
                "data.fmax")
FIELD_RULES = {
    "data.path": rules.TEXT, "data.text_path": rules.TEXT, "data.sample_rate": rules.at_least(1000),
    "data.num_train": rules.at_least(1), "data.num_validation": rules.at_least(1), "data.num_test": rules.at_least(1),
    "data.validation_fraction": rules.OPEN_FRACTION, "data.test_fraction": rules.OPEN_FRACTION,
    "data.n_fft": rules.at_least(16), "data.hop": rules.at_least(1), "data.n_mels": rules.at_least(1),
    "data.fmin": rules.Range(low=0), "data.fmax": rules.Range(low=0), "data.crop_frames": rules.at_least(1),
    "data.history_frames": rules.at_least(-1),
    "model.output": rules.Choices(OUTPUTS), "model.mixtures": rules.at_least(1),
    "model.cycles": rules.at_least(1), "model.max_dilation": rules.at_least(1),
    "model.residual": rules.at_least(1), "model.gate": rules.at_least(1), "model.skip": rules.at_least(1),
    "model.head": rules.at_least(1), "model.global_conditioning": rules.FLAG,
    "model.local_conditioning": rules.FLAG, "model.speaker_dim": rules.at_least(1),
    "model.cond_channels": rules.at_least(1), "model.num_speakers": rules.at_least(1),
    "model.mel_shift": rules.Range(), "model.mel_scale": rules.POSITIVE,
    "eval.sample_seconds": rules.Range(low=0),
}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    m, d = config.model, config.data
    if m.max_dilation & (m.max_dilation - 1):
        raise ConfigError(f"model.max_dilation must be a power of two, got {m.max_dilation}")
    if m.local_conditioning and math.prod(m.upsample_strides) != d.hop:
        raise ConfigError(f"model.upsample_strides {tuple(m.upsample_strides)} multiply to "
                          f"{math.prod(m.upsample_strides)}, but data.hop is {d.hop}: they must be equal")
    if d.fmax and d.fmax > d.sample_rate / 2:
        raise ConfigError(f"data.fmax={d.fmax} is above the Nyquist frequency {d.sample_rate / 2:g}")


def build_model(config) -> WaveNet:
    m = config.model
    return WaveNet(dilations=dilation_cycle(m.cycles, m.max_dilation), residual=m.residual, gate=m.gate, skip=m.skip,
                   head=m.head, output=m.output, mixtures=m.mixtures,
                   num_speakers=m.num_speakers if m.global_conditioning else 0, speaker_dim=m.speaker_dim,
                   mel_channels=config.data.n_mels if m.local_conditioning else 0,
                   upsample_strides=tuple(m.upsample_strides), cond_channels=m.cond_channels,
                   # runs saved before these fields existed read raw log-mels
                   mel_shift=m.get("mel_shift", 0.0), mel_scale=m.get("mel_scale", 1.0))


def nll(model: WaveNet, params, batch):
    """Per-sample NLL [B, T] in nats."""
    speaker = batch["speaker"] if model.num_speakers else None
    mel = batch["mel"] if model.mel_channels else None
    out = model.apply({"params": params}, batch["inputs"], speaker, mel)
    if model.output == "categorical":
        return losses.categorical_nll(out, batch["targets"])
    return losses.logistic_mixture_nll(out, batch["targets"])


def counted_mean_nll(model: WaveNet, params, batch):
    """Mean NLL over the samples the batch counts (its crops, not their history)."""
    counted = batch["counted"]
    return jnp.sum(nll(model, params, batch) * counted) / jnp.maximum(jnp.sum(counted), 1.0)


def train_step(state: TrainState, batch, rng, *, model: WaveNet, tx, schedule):
    del rng
    loss, grads = jax.value_and_grad(lambda p: counted_mean_nll(model, p, batch))(state.params)
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": loss, "bits_per_sample": loss / math.log(2.0), "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def eval_step(state: TrainState, batch, *, model: WaveNet):
    per_sample = nll(model, state.params, batch)
    weight = batch["weight"][:, None] * batch["counted"]
    return {"nll": jnp.sum(per_sample * weight), "count": jnp.sum(weight)}


def summarize_eval(sums: dict) -> dict:
    nats = float(sums["nll"]) / max(float(sums["count"]), 1.0)
    return {"loss": nats, "bits_per_sample": nats / math.log(2.0)}


def build(config, workdir: str) -> Task:
    check_config(config)
    d, t = config.data, config.train
    model = build_model(config)
    if model.num_speakers and not d.path and model.num_speakers < len(wave_data.speech.SPEAKERS):
        raise ConfigError(f"model.num_speakers={model.num_speakers} is fewer than the corpus's "
                          f"{len(wave_data.speech.SPEAKERS)} speakers")
    frames = d.crop_frames
    field = receptive_field(model.dilations)
    history = wave_data.history_frames(d.history_frames, field, d.hop, len(model.upsample_strides))
    train_set = wave_data.load_split(d, "train", d.num_train, config.seed, history + frames)
    valid_set = wave_data.load_split(d, "validation", d.num_validation, config.seed, history + frames)
    if model.num_speakers and int(train_set.speakers.max()) >= model.num_speakers:
        raise ConfigError(f"the data has speaker id {int(train_set.speakers.max())}, but model.num_speakers is "
                          f"{model.num_speakers}")
    categorical = model.output == "categorical"
    tx, schedule = make_optimizer(config.optimizer, t.num_steps)

    example = wave_data.batch_of(train_set, [(0, 0)], frames, d.hop, categorical, history)  # outside any trace

    def init(rng):
        params = model.init(rng, jnp.asarray(example["inputs"]), jnp.asarray(example["speaker"]),
                            jnp.asarray(example["mel"]))["params"]
        return TrainState.create(params, tx)

    def train_batch(step: int) -> dict:
        picks = wave_data.train_picks(train_set, config.seed, step, t.batch_size, frames)
        return wave_data.batch_of(train_set, picks, frames, d.hop, categorical, history)

    eval_arrays = wave_data.batch_of(valid_set, wave_data.eval_picks(valid_set, frames), frames, d.hop, categorical,
                                     history)
    eval_set = padded_batches(eval_arrays, config.eval.batch_size)

    def on_eval(state, step: int, workdir: str) -> dict:
        seconds = config.eval.sample_seconds
        if not seconds:
            return {}
        from aigc_jax.audio.wav import write_wav
        from aigc_jax.families.wavenet.generation import generate
        count = int(seconds * d.sample_rate)
        speaker = jnp.asarray(valid_set.speakers[:1]) if model.num_speakers else None
        mel = None
        if model.mel_channels:
            mel_frames = -(-count // d.hop)
            source = valid_set.mels[0]
            mel = jnp.asarray(np.pad(source, ((0, max(mel_frames - len(source), 0)), (0, 0)),
                                     constant_values=float(source.min()))[None, :mel_frames])
        wave = generate(model, state.params, jax.random.key(config.seed + step), count, speaker=speaker, mel=mel)
        write_wav(os.path.join(workdir, "samples", f"step_{step:07d}.wav"), np.asarray(wave[0]), d.sample_rate)
        return {}

    abstract = jax.eval_shape(init, jax.random.key(0))
    conditioning = ", ".join(name for name, on in (("speaker", model.num_speakers), ("log-mel", model.mel_channels))
                             if on) or "unconditional"
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params),
        items_per_step=t.batch_size * frames * d.hop,
        item_name="samples",
        description=(f"{train_set.description}; WaveNet, {len(model.dilations)} layers, receptive field "
                     f"{field} samples ({field / d.sample_rate * 1000:.0f} ms), "
                     f"{model.output} output, {conditioning}; crops of {frames * d.hop} samples after "
                     f"{history * d.hop} of history; "
                     f"{len(valid_set.mels)} validation utterances"),
        headline_metrics=("loss", "bits_per_sample"),
        on_eval=on_eval,
    )


def load_trained(workdir: str) -> tuple:
    """(config, model, params, step) of the newest checkpoint of a WaveNet run."""
    from aigc_jax.train.restore import restore_params
    restored = restore_params(workdir, task="wavenet")
    return restored.config, build_model(restored.config), restored.params, restored.step


def utterance_nll_bits(model: WaveNet, params, utterances: wave_data.Utterances, data_config) -> float:
    """Teacher-forced NLL in bits per sample over whole utterances (each from its first sample, the
    history before it silence), conditioned as the model is."""
    categorical = model.output == "categorical"
    # Padded at the end to whole seconds of frames (few compiled shapes; the model is causal, so
    # the padding changes no earlier output) and summed over the real samples only.
    apply = jax.jit(lambda p, batch, n: jnp.sum(jnp.where(jnp.arange(batch["targets"].shape[1]) < n,
                                                          nll(model, p, batch)[0], 0.0)))
    frames_per_second = max(data_config.sample_rate // data_config.hop, 1)
    total, count = 0.0, 0
    for i, mel in enumerate(utterances.mels):
        batch = wave_data.batch_of(utterances, [(i, 0)], len(mel), data_config.hop, categorical)
        real = batch["targets"].shape[1]
        frames = -(-len(mel) // frames_per_second) * frames_per_second
        extra_frames, extra = frames - len(mel), (frames - len(mel)) * data_config.hop
        batch = {"inputs": np.pad(batch["inputs"], ((0, 0), (0, extra))),
                 "targets": np.pad(batch["targets"], ((0, 0), (0, extra))),
                 "mel": np.pad(batch["mel"], ((0, 0), (0, extra_frames), (0, 0))),  # zeros, as SAME padding sees
                 "speaker": batch["speaker"]}
        total += float(apply(params, {k: jnp.asarray(v) for k, v in batch.items()}, real))
        count += real
    return total / count / math.log(2.0)
