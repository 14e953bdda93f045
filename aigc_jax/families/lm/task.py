"""The decoder-only language model as a family on the one training loop.

Batches are token windows [grad_accum_steps, micro_batch, context + 1]; inputs are
window[:, :-1], targets window[:, 1:] (next-token prediction).
"""
from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config as config_lib
from aigc_jax import config_rules as rules
from aigc_jax.data.bpe import BASE_SYMBOLS as BPE_BASE_SYMBOLS
from aigc_jax.nn import losses
from aigc_jax.data import markov
from aigc_jax.data import prepared as prepared_data
from aigc_jax.data import text as text_data
from aigc_jax.data import tokenizers
from aigc_jax.nn.transformer import SHARDING_RULES, TransformerLM, flops_per_token
from aigc_jax.nn.params import count_params
from aigc_jax.train.task import Task
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.eval_batches import padded_batches
from aigc_jax.train.state import TrainState
from aigc_jax.train.update import apply_update

# Resuming a workdir with any of these changed is an error: the saved parameters would not fit.
MODEL_FIELDS = ("task", "model", "data.tokenizer", "data.vocab_size", "data.markov_alphabet")
# Declared ranges and choices (aigc_jax/config_rules.py), checked before anything is built.
FIELD_RULES = {
    "model.num_layers": rules.at_least(1), "model.num_heads": rules.at_least(1),
    "model.num_kv_heads": rules.at_least(0), "model.embed_dim": rules.at_least(1),
    "model.context_length": rules.at_least(1), "model.positions": rules.Choices(("learned", "rope", "none")),
    "model.mlp": rules.Choices(("gelu", "swiglu")), "model.mlp_ratio": rules.POSITIVE,
    "model.norm": rules.Choices(("layernorm", "rmsnorm")), "model.dropout": rules.FRACTION,
    "model.dtype": rules.Choices(("float32", "bfloat16")),
    "model.attention_impl": rules.Choices(("einsum", "xla", "cudnn")),
    "data.tokenizer": rules.Choices(("char", "byte", "bpe")), "data.vocab_size": rules.at_least(0),
    "data.corpus": rules.Choices(("stdlib", "markov") + text_data.CODE_CORPORA),
    "data.val_fraction": rules.Range(low=0, high=1, low_open=True, high_open=True),
    "loss.z_loss": rules.NON_NEGATIVE, "train.grad_accum_steps": rules.at_least(1),
    "train.unroll_micro_batches": rules.FLAG,
    "eval.num_windows": rules.at_least(0), "data.path": rules.TEXT, "data.markov_alphabet": rules.at_least(2),
    "data.markov_order": rules.at_least(1), "data.markov_seed": rules.at_least(0),
    "data.markov_concentration": rules.POSITIVE, "model.parallel_block": rules.FLAG, "model.use_bias": rules.FLAG,
    "model.tie_embeddings": rules.FLAG, "model.remat": rules.FLAG, "model.vocab_multiple": rules.at_least(1),
    "data.prepared": rules.TEXT,
    "data.verify_shards": rules.FLAG, "data.code_train_problems": rules.at_least(1),
}


def run_started(workdir: str) -> bool:
    """Whether a run already started in `workdir` (its config.json exists): this one resumes it."""
    return bool(workdir) and os.path.exists(os.path.join(workdir, config_lib.SAVED_CONFIG_FILE))


def inherited_tokenizers(config, workdir: str) -> dict:
    """{description: tokenizer} of the tokenizers whose token ids this run's parameters already
    mean, the one it must keep first: a resumed run's (in its workdir), a fine-tuning run's
    source's (train.init_from)."""
    init_from = config.train.get("init_from", "")
    found = {}
    for what, directory in (("the run's tokenizer (in its workdir)", workdir if run_started(workdir) else ""),
                            (f"the tokenizer of train.init_from={init_from!r}", init_from)):
        if directory and os.path.exists(os.path.join(directory, tokenizers.TOKENIZER_FILE)):
            found[what] = tokenizers.load_tokenizer(directory)
    return found


def load_tokenizer_and_data(config, workdir: str):
    """The run's tokenizer and its token splits. The tokenizer is reloaded from the workdir when
    resuming a run that started there (its config.json exists); a fine-tuning run
    (train.init_from) starts with its source run's, whose token ids the parameters were trained
    on; otherwise it is built from the data. It is saved only once the data fit it, so a run that
    failed before starting leaves no tokenizer for the next run to pick up."""
    splits = text_data.load_text_splits(config.data)
    inherited = inherited_tokenizers(config, workdir)
    if inherited:
        tokenizer = next(iter(inherited.values()))
    else:
        # BPE learns its merges on the training split alone; a char vocabulary must also hold the
        # validation split's characters (bytes and BPE encode any text).
        kind = config.data.tokenizer
        text = splits.train if kind == "bpe" else splits.train + splits.validation
        tokenizer = tokenizers.build_tokenizer(kind, text, config.data.get("vocab_size", 0))
    train_tokens = tokenizer.encode(splits.train)
    val_tokens = tokenizer.encode(splits.validation)
    context = config.model.context_length
    text_data.check_length(train_tokens, context, "training")
    text_data.check_length(val_tokens, context, "validation")
    if workdir and not run_started(workdir):
        tokenizers.save_tokenizer(tokenizer, workdir)
    return tokenizer, train_tokens, val_tokens, splits.description


def markov_data(config, workdir: str):
    """A Markov source's token streams (config.data.corpus == "markov"): fresh stationary training
    windows per step from (seed, step), fixed validation windows; a letters-only char tokenizer."""
    source = markov.source_from_config(config.data)
    tokenizer = tokenizers.CharTokenizer(markov.vocabulary(source.alphabet_size))
    if workdir:
        tokenizers.save_tokenizer(tokenizer, workdir)
    context = config.model.context_length
    windows_at = functools.partial(markov.windows, source, config.seed, "train",
                                   num_windows=config.train.batch_size, length=context + 1)
    eval_windows = markov.windows(source, config.seed, "validation", 0, config.eval.num_windows, context + 1)
    return tokenizer, windows_at, eval_windows, f"{markov.describe(source)}; vocabulary {tokenizer.vocab_size}"


def prepared_windows(config, workdir: str):
    """A prepared token dataset's windows (config.data.prepared): its tokenizer (refused when the
    config's or a resumed run's differs), training windows read on demand per (seed, step), and
    fixed validation windows."""
    dataset = prepared_data.PreparedDataset(config.data.prepared, verify=config.data.get("verify_shards", True))
    prepared_data.check_tokenizer(dataset, config.data.tokenizer, config.data.get("vocab_size", 0),
                                  inherited_tokenizers(config, workdir))
    length = config.model.context_length + 1
    train_starts = prepared_data.WindowStarts(dataset.segments("train"), length, "training", dataset.directory)
    val_starts = prepared_data.WindowStarts(dataset.segments("validation"), length, "validation", dataset.directory)
    if workdir and not run_started(workdir):
        tokenizers.save_tokenizer(dataset.tokenizer, workdir)
    windows_at = functools.partial(prepared_data.training_windows, dataset, train_starts, config.seed,
                                   batch_size=config.train.batch_size)
    eval_windows = prepared_data.evaluation_windows(dataset, val_starts, config.eval.num_windows)
    index = dataset.index
    description = (f"prepared dataset {dataset.directory} ({len(index['shards'])} shards, {len(index['files'])} "
                   f"files); {dataset.tokenizer.kind} tokenizer, vocabulary {dataset.tokenizer.vocab_size}; "
                   f"{index['train_tokens']:,} training and {index['validation_tokens']:,} validation tokens")
    return dataset.tokenizer, windows_at, eval_windows, description


def lm_loss(params, tokens, rng, *, model: TransformerLM, z_loss_coef: float, train: bool):
    """tokens [B, T + 1] -> (objective, (cross-entropy, z-loss)); cross-entropy in nats/token."""
    logits = model.apply({"params": params}, tokens[:, :-1], deterministic=not train,
                         rngs={"dropout": rng} if train else None)
    ce = losses.cross_entropy(logits, tokens[:, 1:])
    z = losses.z_loss(logits) if z_loss_coef else jnp.zeros(())
    return ce + z_loss_coef * z, (ce, z)


def train_step(state: TrainState, batch, rng, *, model, tx, schedule, z_loss_coef, unroll: bool = False):
    """One optimizer step over batch [A, b, T + 1], gradients averaged over the A micro-batches.

    The micro-batches run as a loop (`lax.scan`: one micro-batch's activations in memory at a
    time) or, with `unroll`, as A independent parts of the program whose gradients are summed:
    no memory saving, but XLA:CPU, which otherwise runs the step's kernels one at a time, then
    runs the parts' kernels side by side on the cores (`train.unroll_micro_batches`).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(
        functools.partial(lm_loss, model=model, z_loss_coef=z_loss_coef, train=True), has_aux=True)

    def micro_step(carry, inputs):
        grads_sum, ce_sum, z_sum = carry
        index, tokens = inputs
        (_, (ce, z)), grads = grad_fn(state.params, tokens, jax.random.fold_in(step_rng, index))
        grads_sum = jax.tree_util.tree_map(jnp.add, grads_sum, grads)
        return (grads_sum, ce_sum + ce, z_sum + z), None

    num_micro = batch.shape[0]
    if unroll:
        micro_grad = jax.jit(grad_fn)  # traced once, then one call (inlined by XLA) per micro-batch
        parts = [micro_grad(state.params, batch[index], jax.random.fold_in(step_rng, index))
                 for index in range(num_micro)]
        (_, (ce, z)), grads = jax.tree_util.tree_map(lambda *values: functools.reduce(jnp.add, values), *parts)
    else:
        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        (grads, ce, z), _ = jax.lax.scan(micro_step, (zeros, 0.0, 0.0), (jnp.arange(num_micro), batch))
    grads = jax.tree_util.tree_map(lambda g: g / num_micro, grads)
    new_state, norms = apply_update(state, grads, tx)
    metrics = {"loss": ce / num_micro, "z_loss": z / num_micro, "learning_rate": schedule(state.step), **norms}
    return new_state.replace(step=state.step + 1), metrics


def eval_step(state: TrainState, batch, *, model):
    """batch: {'tokens': [N, T + 1], 'weight': [N]} -> summed nats and token count."""
    logits = model.apply({"params": state.params}, batch["tokens"][:, :-1], deterministic=True)
    nats = losses.token_cross_entropy(logits, batch["tokens"][:, 1:])  # [N, T]
    weight = batch["weight"][:, None] * jnp.ones_like(nats)
    return {"nats": jnp.sum(nats * weight), "tokens": jnp.sum(weight)}


def summarize_eval(sums: dict, text_bytes: float = 0.0) -> dict:
    """Loss (nats per token), bits per token, perplexity and, given the UTF-8 bytes of the
    evaluated targets, bits per byte: the measure that compares models across tokenizers."""
    loss = float(sums["nats"]) / max(float(sums["tokens"]), 1.0)
    out = {"loss": loss, "bits_per_token": loss / math.log(2), "perplexity": math.exp(min(loss, 700.0))}
    if text_bytes:
        out["bits_per_byte"] = float(sums["nats"]) / math.log(2) / text_bytes
    return out


def build_model(config, vocab_size: int) -> TransformerLM:
    return TransformerLM.from_config(config.model, vocab_size)


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    model, train_cfg = config.model, config.train
    if config.data.get("tokenizer") == "bpe" and config.data.get("vocab_size", 0) <= BPE_BASE_SYMBOLS:
        raise config_lib.ConfigError(f"config field data.vocab_size={config.data.get('vocab_size', 0)} is too small for "
                                     f"data.tokenizer='bpe': it needs more than {BPE_BASE_SYMBOLS} (one entry per byte)")
    divisions = (("train.batch_size", train_cfg.batch_size, "train.grad_accum_steps", train_cfg.grad_accum_steps),
                 ("model.embed_dim", model.embed_dim, "model.num_heads", model.num_heads),
                 ("model.num_heads", model.num_heads, "model.num_kv_heads", model.num_kv_heads or model.num_heads))
    for name, value, divisor_name, divisor in divisions:
        if value % divisor:
            raise config_lib.ConfigError(f"config field {name}={value} is not divisible by {divisor_name}={divisor}")


def build(config, workdir: str) -> Task:
    check_config(config)
    train_cfg = config.train
    context = config.model.context_length
    if config.data.get("prepared", ""):
        tokenizer, windows_at, eval_windows, description = prepared_windows(config, workdir)
    elif config.data.corpus == "markov" and not config.data.path:
        tokenizer, windows_at, eval_windows, description = markov_data(config, workdir)
    else:
        tokenizer, train_tokens, val_tokens, description = load_tokenizer_and_data(config, workdir)
        windows_at = functools.partial(text_data.training_windows, train_tokens, config.seed,
                                       batch_size=train_cfg.batch_size, context=context)
        eval_windows = text_data.evaluation_windows(val_tokens, config.eval.num_windows, context)
        description = (f"{description}; {tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}; "
                       f"{len(train_tokens):,} training and {len(val_tokens):,} validation tokens")
    model = build_model(config, tokenizer.vocab_size)
    tx, schedule = make_optimizer(config.optimizer, train_cfg.num_steps)

    def init(rng):
        params = model.init(rng, jnp.zeros((1, context), jnp.int32))["params"]
        return TrainState.create(params, tx)

    def train_batch(step: int) -> np.ndarray:
        return windows_at(step=step).reshape(train_cfg.grad_accum_steps, -1, context + 1)

    eval_set = padded_batches({"tokens": eval_windows}, config.eval.batch_size)
    text_bytes = float(tokenizer.token_bytes()[np.asarray(eval_windows)[:, 1:]].sum())  # the targets' text

    abstract = jax.eval_shape(init, jax.random.key(0))
    num_params = count_params(abstract.params)
    tokens_per_step = train_cfg.batch_size * context
    return Task(model_fields=MODEL_FIELDS, 
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, z_loss_coef=config.loss.z_loss,
                                     unroll=bool(train_cfg.get("unroll_micro_batches", False))),  # absent in older runs
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=functools.partial(summarize_eval, text_bytes=text_bytes),
        num_params=num_params,
        items_per_step=tokens_per_step,
        flops_per_step=flops_per_token(model, num_params, context) * tokens_per_step,
        sharding_rules=SHARDING_RULES,
        train_batch_axis=1,  # [grad_accum_steps, micro_batch, context + 1]
        description=f"{description}; {len(eval_windows)} validation windows",
    )
