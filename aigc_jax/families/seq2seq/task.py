"""The encoder-decoder Transformer as a family on the one training loop.

Train batches: {'source' [B, S], 'inputs' [B, T], 'targets' [B, T]} (see
aigc_jax.families.seq2seq.data); the loss is the teacher-forced cross-entropy over target
tokens (EOS included, PAD excluded). Evaluation on the held-out test split reports
  loss            nats per target token
  token_accuracy  argmax of each teacher-forced prediction equals the target token
  exact_match     greedy decoding (inside the jit-compiled eval step) reproduces the
                  whole target, EOS included
and, when whole lengths are held out, exact_match_unseen_lengths over those lengths only.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.nn import losses
from aigc_jax.families.seq2seq import decoding
from aigc_jax.config import ConfigError, load_saved_config
from aigc_jax.families.seq2seq import data as data_lib
from aigc_jax.families.seq2seq.model import Seq2SeqTransformer, flops_per_example
from aigc_jax.nn.params import count_params
from aigc_jax.nn.transformer import SHARDING_RULES as LM_SHARDING_RULES
from aigc_jax.train.task import Task
from aigc_jax.train.restore import restore_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.state import TrainState
from aigc_jax.train.update import apply_update

# Resuming a workdir with any of these changed is an error: the saved parameters would not fit.
MODEL_FIELDS = ("task", "model", "data.task", "data.alphabet", "data.max_length", "data.max_digits")
# Declared ranges and choices (aigc_jax/config_rules.py), checked before anything is built; the
# constraints between data fields (lengths, held-out lengths, digits) are checked with the data.
FIELD_RULES = {
    "data.task": rules.Choices(data_lib.TASKS), "data.path": rules.TEXT, "data.val_fraction": rules.OPEN_FRACTION,
    "data.alphabet": rules.TEXT, "data.min_length": rules.at_least(1), "data.max_length": rules.at_least(1),
    "data.test_min_length": rules.at_least(1), "data.test_max_length": rules.at_least(1),
    "data.heldout_lengths": rules.TEXT, "data.max_digits": rules.Range(low=1, high=9, integer=True),
    "data.test_digits": rules.at_least(1), "data.add_sampling": rules.Choices(("digits", "numbers")),
    "data.test_fraction": rules.OPEN_FRACTION, "eval.num_examples": rules.at_least(1),
    "model.num_encoder_layers": rules.at_least(1), "model.num_decoder_layers": rules.at_least(1),
    "model.num_heads": rules.at_least(1), "model.embed_dim": rules.at_least(1),
    "model.mlp": rules.Choices(("gelu", "swiglu")), "model.mlp_ratio": rules.POSITIVE,
    "model.norm": rules.Choices(("layernorm", "rmsnorm")), "model.use_bias": rules.FLAG,
    "model.positions": rules.Choices(("sinusoidal", "learned")), "model.share_embeddings": rules.FLAG,
    "model.dropout": rules.FRACTION, "model.dtype": rules.Choices(("float32", "bfloat16")),
}

SHARDING_RULES = LM_SHARDING_RULES + (
    (r"(source_embed|target_embed)\.embedding$", ("vocab", "embed")),
    (r"(source_pos|target_pos)$", ("length", "embed")),
)


def build_model(config, vocab: data_lib.Seq2SeqVocab) -> Seq2SeqTransformer:
    return Seq2SeqTransformer.from_config(config.model, vocab.vocab_size, vocab.max_source_length,
                                          vocab.max_target_length + 1)


def init_state(config, model: Seq2SeqTransformer, rng) -> TrainState:
    tx, _ = make_optimizer(config.optimizer, config.train.num_steps)
    source = jnp.zeros((1, model.max_source_length), jnp.int32)
    inputs = jnp.zeros((1, model.max_target_length), jnp.int32)
    return TrainState.create(model.init(rng, source, inputs)["params"], tx)


def seq2seq_loss(params, batch, rng, *, model, train: bool):
    """Mean cross-entropy over non-PAD target tokens -> (loss, (correct tokens, tokens))."""
    logits = model.apply({"params": params}, batch["source"], batch["inputs"], deterministic=not train,
                         rngs={"dropout": rng} if train else None)
    weight = (batch["targets"] != data_lib.PAD).astype(jnp.float32)
    loss = losses.cross_entropy(logits, batch["targets"], weight)
    correct = jnp.sum((jnp.argmax(decoding.next_token_logprobs(logits), -1) == batch["targets"]) * weight)
    return loss, (correct, jnp.sum(weight))


def train_step(state: TrainState, batch, rng, *, model, tx, schedule):
    step_rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(functools.partial(seq2seq_loss, model=model, train=True), has_aux=True)
    (loss, (correct, count)), grads = grad_fn(state.params, batch, step_rng)
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": loss, "token_accuracy": correct / jnp.maximum(count, 1.0),
               "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def eval_step(state: TrainState, batch, *, model):
    """Sums over the batch (rows weighted by batch['weight']); see the module docstring."""
    logits = model.apply({"params": state.params}, batch["source"], batch["inputs"])
    targets = batch["targets"]
    weight = batch["weight"]
    token_weight = (targets != data_lib.PAD) * weight[:, None]
    nats = losses.token_cross_entropy(logits, targets)
    decoded, _ = decoding.greedy_decode(state.params, batch["source"], model=model,
                                        max_length=targets.shape[1])
    exact = jnp.all(decoded == targets, axis=1).astype(jnp.float32)
    return {"nats": jnp.sum(nats * token_weight), "tokens": jnp.sum(token_weight),
            "correct_tokens": jnp.sum((jnp.argmax(decoding.next_token_logprobs(logits), -1) == targets) * token_weight),
            "exact": jnp.sum(exact * weight), "examples": jnp.sum(weight),
            "exact_unseen": jnp.sum(exact * weight * batch["unseen"]), "unseen": jnp.sum(weight * batch["unseen"])}


def summarize_eval(sums: dict) -> dict:
    out = {"loss": float(sums["nats"]) / max(float(sums["tokens"]), 1.0),
           "token_accuracy": float(sums["correct_tokens"]) / max(float(sums["tokens"]), 1.0),
           "exact_match": float(sums["exact"]) / max(float(sums["examples"]), 1.0)}
    if float(sums["unseen"]) > 0:
        out["exact_match_unseen_lengths"] = float(sums["exact_unseen"]) / float(sums["unseen"])
    return out


def load_data(config, workdir: str):
    """(vocabulary, train_batch(step), test examples, unseen-length flags, description)."""
    data, batch_size = config.data, config.train.batch_size
    vocab, spec, pairs = data_lib.vocab_for(data)
    if workdir and os.path.exists(os.path.join(workdir, data_lib.VOCAB_FILE)):
        saved = data_lib.load_vocab(workdir)
        if saved.to_json() != vocab.to_json():
            raise data_lib.DataError(
                f"the data's vocabulary or lengths differ from the run saved in {workdir!r} "
                f"({data_lib.VOCAB_FILE}); use the same data or a new --workdir")
    elif workdir:
        data_lib.save_vocab(vocab, workdir)
    if spec is not None:
        train_batch = functools.partial(data_lib.synthetic_batch, spec, vocab, config.seed, "train",
                                        batch_size=batch_size)
        test = data_lib.synthetic_batch(spec, vocab, config.seed, "test", 0, config.eval.num_examples)
        unseen = data_lib.unseen_length_flags(spec, test["source"])
        description = spec.describe()
    else:
        train_batch = functools.partial(data_lib.tsv_train_batch, pairs, vocab, config.seed, batch_size=batch_size)
        test = data_lib.encode_pairs(vocab, pairs.test_sources, pairs.test_targets)
        unseen = np.zeros(len(pairs.test_sources), np.float32)
        description = (f"{data.path}: {len(pairs.train_sources)} training and {len(pairs.test_sources)} test "
                       f"pairs")
    description += (f"; vocabulary {vocab.vocab_size}, source length {vocab.max_source_length}, "
                    f"target length {vocab.max_target_length}; {len(test['source'])} test examples")
    return vocab, train_batch, test, unseen, description


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    if config.model.embed_dim % config.model.num_heads:
        raise ConfigError(f"config field model.embed_dim={config.model.embed_dim} is not divisible by "
                          f"model.num_heads={config.model.num_heads}")


def build(config, workdir: str) -> Task:
    check_config(config)
    vocab, train_batch, test, unseen, description = load_data(config, workdir)
    model = build_model(config, vocab)
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    batches = padded_batches({**test, "unseen": unseen}, config.eval.batch_size)
    num_params = count_params(jax.eval_shape(functools.partial(init_state, config, model),
                                             jax.random.key(0)).params)
    batch_size = config.train.batch_size
    return Task(model_fields=MODEL_FIELDS, 
        init=functools.partial(init_state, config, model),
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: batches,
        summarize_eval=summarize_eval,
        num_params=num_params,
        items_per_step=batch_size,
        item_name="examples",
        flops_per_step=flops_per_example(model, model.max_source_length, model.max_target_length) * batch_size,
        description=description,
        headline_metrics=("loss", "token_accuracy"),
        sharding_rules=SHARDING_RULES,
    )


# ------------------------------------------------------------------ a trained model, for decoding

@dataclasses.dataclass
class TrainedSeq2Seq:
    config: Any
    vocab: data_lib.Seq2SeqVocab
    model: Seq2SeqTransformer
    params: Any
    step: int


def load_trained(workdir: str) -> TrainedSeq2Seq:
    """The saved config, vocabulary and newest checkpoint of a seq2seq run (no data is read).

    Raises ConfigError (no workdir / config), FileNotFoundError (no vocabulary or
    checkpoint) or CheckpointError (a checkpoint that does not fit the saved config).
    """
    config = load_saved_config(workdir)
    if config.get("task") != "seq2seq":
        raise ConfigError(f"workdir {workdir!r} holds a {config.get('task')!r} run, not a seq2seq model")
    vocab = data_lib.load_vocab(workdir)
    model = build_model(config, vocab)
    shapes = jax.eval_shape(functools.partial(init_state, config, model), jax.random.key(0))
    run = restore_params(workdir, task="seq2seq", expect_params=shapes.params)
    return TrainedSeq2Seq(config=config, vocab=vocab, model=model, params=run.params, step=run.step)


def translate(trained: TrainedSeq2Seq, text: str, *, beam_width: int = 1, length_penalty: float = 0.0,
              num_results: int = 1) -> list:
    """[(output text, score, log-probability)] for one input, best first (greedy when beam_width=1
    and length_penalty=0, else beam search)."""
    if not 1 <= num_results <= beam_width:
        raise ValueError(f"num_results must be in 1..beam_width ({beam_width}), got {num_results}")
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number (0 ranks by log-probability), got {length_penalty}")
    text = data_lib.prepare_source(trained.config.data.task, text)
    source = jnp.asarray(data_lib.encode_source(trained.vocab, text))
    tokens, scores, logps = decoding.beam_search(trained.params, source, model=trained.model, beam_width=beam_width,
                                                 length_penalty_alpha=float(length_penalty))
    tokens, scores, logps = jax.device_get((tokens[0], scores[0], logps[0]))
    return [(trained.vocab.decode(tokens[i]), float(scores[i]), float(logps[i])) for i in range(num_results)]
