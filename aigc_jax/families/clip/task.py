"""The contrastive image-text model (CLIP / SigLIP) as a family on the one training loop.

Train step: a batch of N (image, caption) pairs, both encoders, the N x N similarity matrix and
the loss chosen by `loss.name` (softmax: CLIP's symmetric InfoNCE; sigmoid: SigLIP), one AdamW
update. The logit scale is learned and clamped at 100 (model.py). Data: aigc_jax/families/clip/data.py.

Evaluation, every `train.eval_every` steps:
  eval step   the loss and in-batch pair accuracy on fixed batches of the seen retrieval set;
  on_eval     retrieval recall@1/5 both ways on every retrieval set (seen pairs; the shapes
              world's held-out pairs), zero-shot accuracy per factor (zero_shot.py), the
              temperature; reported beside the loss and written to WORKDIR/metrics.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.config import ConfigError
from aigc_jax.data import captions as caption_lib
from aigc_jax.data import images as image_data
from aigc_jax.data import shapes
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip import zero_shot
from aigc_jax.families.clip import hard_negatives
from aigc_jax.families.clip.losses import LOSSES, contrastive_loss, own_negative_accuracy, pair_accuracy
from aigc_jax.families.clip.model import CLIP, IMAGE_ENCODERS, from_config
from aigc_jax.nn.params import count_params
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = ("task", "model", "loss.name", "data.dataset", "data.path", "data.pairs_path", "data.image_size",
                "data.channels")
FIELD_RULES = {
    **clip_data.DATA_FIELD_RULES,
    "model.image_encoder": rules.Choices(IMAGE_ENCODERS), "model.embed_dim": rules.at_least(1),
    "model.width": rules.at_least(1), "model.vision_depth": rules.at_least(0), "model.text_depth": rules.at_least(0),
    "model.num_heads": rules.at_least(1), "model.patch_size": rules.at_least(1), "model.text_causal": rules.FLAG,
    "model.cnn_convs_per_stage": rules.at_least(1),
    "model.max_text_length": rules.at_least(3), "loss.name": rules.Choices(LOSSES),
    "loss.hard_negatives": rules.Range(0, len(shapes.SHAPES) - 1, integer=True),
    "eval.retrieval_pairs": rules.at_least(2), "eval.zero_shot_images": rules.at_least(1),
}


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    m = config.model
    if m.width % m.num_heads:
        raise ConfigError(f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    widths = tuple(m.cnn_widths)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ConfigError(f"model.cnn_widths={widths!r} must be a non-empty tuple of positive integers")
    if config.data.min_objects > config.data.max_objects:
        raise ConfigError(f"data.min_objects={config.data.min_objects} exceeds data.max_objects="
                         f"{config.data.max_objects}")
    if config.loss.hard_negatives and (not image_data.uses_shapes_world(config.data) or config.data.pairs_path):
        raise ConfigError(f"loss.hard_negatives={config.loss.hard_negatives} needs the shapes world (shape-swapped "
                          f"captions); set it to 0 for digits or your own pairs")
    if config.eval.retrieval_pairs < config.eval.batch_size:
        raise ConfigError(f"eval.retrieval_pairs={config.eval.retrieval_pairs} is fewer than one evaluation batch "
                         f"(eval.batch_size={config.eval.batch_size})")


def forward(params, batch, *, model: CLIP, loss_name: str):
    """The loss on a batch; its "negative_tokens" (hard negatives), when present, are encoded with
    the captions in one pass and join the loss as texts that match no image."""
    tokens = batch["tokens"]
    n = tokens.shape[0]
    if "negative_tokens" in batch:
        tokens = jnp.concatenate([tokens, batch["negative_tokens"]], axis=0)
    image_emb, text_emb, (log_scale, bias) = model.apply({"params": params}, batch["images"], tokens)
    text_emb, negative_emb = text_emb[:n], (text_emb[n:] if "negative_tokens" in batch else None)
    loss, logits = contrastive_loss(loss_name, image_emb, text_emb, log_scale, bias, negative_emb)
    i2t, t2i = pair_accuracy(logits)
    aux = {"i2t_acc": i2t, "t2i_acc": t2i, "temperature": jnp.exp(-log_scale), "bias": bias}
    if negative_emb is not None:
        aux["negative_acc"] = own_negative_accuracy(image_emb, text_emb, negative_emb)
    return loss, aux


def train_step(state: TrainState, batch, rng, *, model: CLIP, tx, schedule, loss_name: str):
    (loss, aux), grads = jax.value_and_grad(forward, has_aux=True)(state.params, batch, model=model,
                                                                   loss_name=loss_name)
    new_state, norms = apply_update(state, grads, tx)
    return new_state.replace(step=state.step + 1), {"loss": loss, **aux, "learning_rate": schedule(state.step),
                                                    **norms}


def eval_step(state: TrainState, batch, *, model: CLIP, loss_name: str):
    """Sums over full batches (every batch has eval.batch_size real pairs: the loss depends on N)."""
    loss, aux = forward(state.params, batch, model=model, loss_name=loss_name)
    return {"loss": loss, "i2t_acc": aux["i2t_acc"], "t2i_acc": aux["t2i_acc"], "batches": jnp.ones(())}


def summarize_eval(sums: dict) -> dict:
    n = max(float(sums["batches"]), 1.0)
    return {k: float(sums[k]) / n for k in ("loss", "i2t_acc", "t2i_acc")}


@dataclass
class Embedder:
    """Jitted unit embeddings of images and captions in batches (host arrays in and out)."""
    model: CLIP
    vocab: caption_lib.CaptionVocab
    length: int
    batch_size: int

    def __post_init__(self):
        self._images = jax.jit(lambda params, x: self.model.apply({"params": params}, x, method="encode_image"))
        self._texts = jax.jit(lambda params, t: self.model.apply({"params": params}, t, method="encode_text"))

    def _batched(self, fn, params, array):
        out = []
        for start in range(0, len(array), self.batch_size):
            chunk = array[start:start + self.batch_size]
            rows = len(chunk)
            if rows < self.batch_size:  # one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - rows, axis=0)])
            out.append(np.asarray(fn(params, jnp.asarray(chunk)))[:rows])
        return np.concatenate(out)

    def images(self, params, images: np.ndarray) -> np.ndarray:
        return self._batched(self._images, params, images)

    def texts(self, params, texts) -> np.ndarray:
        return self._batched(self._texts, params, self.vocab.encode_batch(list(texts), self.length))


def evaluate(params, embedder: Embedder, data: clip_data.CaptionData, config) -> dict:
    """Retrieval recall on each retrieval set and zero-shot accuracy (zero_shot.py)."""
    out = {}
    for pairs in data.retrieval_sets:
        images = embedder.images(params, pairs.images)
        recall = zero_shot.recall_at_k(images, embedder.texts(params, pairs.captions), pairs.captions)
        out.update({f"{pairs.name}_{k}": v for k, v in recall.items()})
        if data.source == "shapes":  # own caption against its shape-swapped twin (hard_negatives.py)
            true, swapped = hard_negatives.swap_pairs(pairs.factors, clip_data.EVAL_SEED, data.heldout_pairs)
            out[f"{pairs.name}_swap_shape"] = hard_negatives.swap_accuracy(
                images, embedder.texts(params, true), embedder.texts(params, swapped))
    embed_texts = functools.partial(embedder.texts, params)
    if data.source == "shapes":
        sets = {s.name: (embedder.images(params, s.images), s.factors) for s in data.zero_shot_sets}
        out.update(zero_shot.shapes_zero_shot(embed_texts, sets, image_data.shapes_world(config.data)))
    elif data.source == "digits":
        for s in data.zero_shot_sets:
            out["zs_digits"] = zero_shot.labels_zero_shot(embed_texts, embedder.images(params, s.images), s.labels,
                                                          clip_data.DIGIT_WORDS, clip_data.DIGIT_ZERO_SHOT_TEMPLATES)
    return out


def build_model(config, data: clip_data.CaptionData) -> CLIP:
    return from_config(config.model, data.image_shape, data.vocab.size, config.loss.name)


def build(config, workdir: str) -> Task:
    check_config(config)
    data = clip_data.load_for_run(config, workdir)
    model = build_model(config, data)
    length = config.model.max_text_length
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    image_shape = data.image_shape

    def init(rng):
        params = model.init(rng, jnp.zeros((1,) + image_shape), jnp.zeros((1, length), jnp.int32))["params"]
        return TrainState.create(params, tx)

    def train_batch(step: int) -> dict:
        return data.train_batch(config.seed, step, config.train.batch_size, length, config.loss.hard_negatives)

    eval_set = clip_data.fixed_batches(data.retrieval_sets[0], data.vocab, length, config.eval.batch_size)
    embedder = Embedder(model, data.vocab, length, config.eval.batch_size)

    def on_eval(state, step: int, workdir: str) -> dict:
        return evaluate(jax.device_get(state.params), embedder, data, config)

    abstract = jax.eval_shape(init, jax.random.key(0))
    m = config.model
    encoder = (f"ViT (patch {m.patch_size}, width {m.width}, depth {m.vision_depth})" if m.image_encoder == "vit"
               else f"CNN (channels {tuple(m.cnn_widths)})")
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule, loss_name=config.loss.name),
        eval_step=functools.partial(eval_step, model=model, loss_name=config.loss.name),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params),
        items_per_step=config.train.batch_size,
        item_name="pairs",
        description=(f"{data.description}; {encoder} image encoder, {m.text_depth}-block "
                     f"{'causal' if m.text_causal else 'bidirectional'} text encoder, embeddings {m.embed_dim}, "
                     f"{config.loss.name} loss; vocabulary {data.vocab.size} words"),
        headline_metrics=("loss", "i2t_acc"),
        on_eval=on_eval,
    )


@dataclass
class TrainedCLIP:
    config: Any
    model: CLIP
    params: Any
    vocab: caption_lib.CaptionVocab
    embedder: Embedder
    step: int
    image_shape: tuple


def load_trained(workdir: str, batch_size: int = 100) -> TrainedCLIP:
    """The newest checkpoint of a CLIP run with its vocabulary, ready to embed images and texts."""
    from aigc_jax.train.restore import restore_params
    restored = restore_params(workdir, task="clip")
    config = restored.config
    vocab = caption_lib.load_vocab(workdir)
    model, image_shape = model_of_run(config, workdir, vocab)
    embedder = Embedder(model, vocab, config.model.max_text_length, batch_size)
    return TrainedCLIP(config, model, restored.params, vocab, embedder, restored.step, image_shape)


def model_of_run(config, workdir: str, vocab=None) -> tuple:
    """(CLIP model, image shape) of a run, from its config and the vocabulary and input shape it
    wrote into its workdir."""
    vocab = vocab or caption_lib.load_vocab(workdir)
    image_shape = clip_data.load_input_shape(workdir)
    return from_config(config.model, image_shape, vocab.size, config.loss.name), image_shape
