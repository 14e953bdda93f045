"""The image captioner as a family on the one training loop (task "caption").

Train step: teacher-forced cross-entropy of the caption tokens after BOS (PAD excluded), one
AdamW update. Data: the contrastive family's sources (data.py); on the shapes world the
captions are canonical by default (`data.paraphrase=0`), so every generated caption can be
parsed back to the factors it states.

Evaluation: the eval step sums the negative log-likelihood per token on the seen test pairs;
on_eval writes greedy captions (beam width `eval.beam_width`) of fixed images and scores them
by parsing them back (aigc_jax/data/shapes.py parse_caption):
  {set}_exact     the caption states only facts of the scene (caption_agrees): every object
                  (shape, colour, size), the relation, background and count where stated;
  {set}_parsed    the caption parses at all;
  single_{set}_{factor}  on one-object scenes, the stated shape / colour / size / background /
                  (shape, colour) pair is right ("heldout": the pair was never in a caption);
  clip_score      with `eval.clip_workdir` (a trained contrastive run), the mean cosine between
                  each image and its caption in that model's space, times 100; beside it
                  clip_score_reference, the same for the data's own captions of those images.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aigc_jax import config_rules as rules
from aigc_jax import config as config_lib
from aigc_jax.config import ConfigError
from aigc_jax.data import captions as caption_lib
from aigc_jax.data import shapes
from aigc_jax.families.clip import captioner_decoding
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip.captioner_model import Captioner, from_config
from aigc_jax.families.clip.model import IMAGE_ENCODERS
from aigc_jax.nn.params import count_params
from aigc_jax.train.checkpoints import describe_mismatch, state_layout
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState
from aigc_jax.train.task import Task
from aigc_jax.train.update import apply_update

MODEL_FIELDS = ("task", "model", "data.dataset", "data.path", "data.pairs_path", "data.image_size", "data.channels")
FIELD_RULES = {
    **clip_data.DATA_FIELD_RULES,
    "model.image_encoder": rules.Choices(IMAGE_ENCODERS), "model.width": rules.at_least(1),
    "model.vision_depth": rules.at_least(0), "model.decoder_depth": rules.at_least(1),
    "model.num_heads": rules.at_least(1), "model.patch_size": rules.at_least(1), "model.max_text_length": rules.at_least(3),
    "model.cnn_convs_per_stage": rules.at_least(1),
    "eval.retrieval_pairs": rules.at_least(1), "eval.zero_shot_images": rules.at_least(1),
    "eval.caption_images": rules.at_least(0), "eval.beam_width": rules.at_least(1), "eval.clip_workdir": rules.TEXT,
    "model.vision_from": rules.TEXT, "model.freeze_vision": rules.FLAG, "model.global_image": rules.FLAG,
}
FACTORS = ("shape", "colour", "size", "background", "pair")


def check_config(config) -> None:
    rules.check_family(config, FIELD_RULES)
    m = config.model
    if m.width % m.num_heads:
        raise ConfigError(f"model.width={m.width} is not divisible by model.num_heads={m.num_heads}")
    clip_data.check_data_config(config)


PRETRAINED_ENCODER_TASKS = ("clip", "clip_supervised")


def pretrained_image_encoder(workdir: str, image_shape: tuple, expected) -> dict:
    """The image encoder's parameters of a trained configs/clip.py run, to start the captioner's
    from (`model.vision_from`; ClipCap, Mokady et al. 2021, and BLIP start from a contrastive
    encoder too): a contrastive run, or a `:supervised` one (the same encoder trained on the
    shapes world's labels: the captioner's supervised baseline). `expected`: the captioner's own
    encoder parameters (or their shapes); a run of another task, with another encoder or input
    size is a ConfigError naming what differs."""
    from aigc_jax.train.restore import restore_params
    task = config_lib.load_saved_config(workdir).get("task")
    if task not in PRETRAINED_ENCODER_TASKS:
        raise ConfigError(f"model.vision_from={workdir!r} holds a {task!r} run; the captioner's encoder starts from "
                          f"one of {PRETRAINED_ENCODER_TASKS}")
    restored = restore_params(workdir, task=task)
    theirs = tuple(clip_data.load_input_shape(workdir))
    if theirs != tuple(image_shape):
        raise ConfigError(f"model.vision_from={workdir!r} was trained on {theirs} images, this run has {tuple(image_shape)}")
    vision = restored.params["vision"]
    mismatch = describe_mismatch(state_layout(vision), state_layout(expected))
    if mismatch:
        encoder = restored.config.model
        raise ConfigError(f"model.vision_from={workdir!r} has another image encoder ({encoder.image_encoder}, "
                          f"cnn_widths {tuple(encoder.cnn_widths)}, {encoder.cnn_convs_per_stage} convolutions per "
                          f"stage, width {encoder.width}, depth {encoder.vision_depth}): {mismatch.replace('checkpoint', 'run')}")
    return jax.device_get(vision)


def token_nll(params, batch, *, model: Captioner):
    """(sum of -log p(y_t | y_<t, image) over real target tokens, their count)."""
    tokens = batch["tokens"]
    logits = model.apply({"params": params}, batch["images"], tokens[:, :-1])
    targets = tokens[:, 1:]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    real = (targets != caption_lib.PAD).astype(jnp.float32)
    return jnp.sum(nll * real), jnp.sum(real)


def train_step(state: TrainState, batch, rng, *, model: Captioner, tx, schedule):
    def objective(params):
        total, count = token_nll(params, batch, model=model)
        return total / jnp.maximum(count, 1.0)

    loss, grads = jax.value_and_grad(objective)(state.params)
    new_state, norms = apply_update(state, grads, tx)
    return new_state.replace(step=state.step + 1), {"loss": loss, "learning_rate": schedule(state.step), **norms}


def eval_step(state: TrainState, batch, *, model: Captioner):
    total, count = token_nll(state.params, batch, model=model)
    return {"nll": total, "tokens": count}


def summarize_eval(sums: dict) -> dict:
    loss = float(sums["nll"]) / max(float(sums["tokens"]), 1.0)
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0)))}


def write_captions(model: Captioner, params, vocab, images: np.ndarray, beam_width: int, batch_size: int = 100) -> list:
    """The best beam's caption of each image, as text."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        rows = len(chunk)
        if rows < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - rows, axis=0)])
        tokens, _, _ = captioner_decoding.beam_search(params, jnp.asarray(chunk), model=model, beam_width=beam_width)
        out += [vocab.decode(row) for row in np.asarray(tokens[:rows, 0])]
    return out


def parse_or_none(text: str):
    try:
        return shapes.parse_caption(text)
    except ValueError:
        return None


def caption_scores(texts: list, factors: dict, name: str) -> dict:
    """{name}_parsed, {name}_exact over scenes; on single-object scenes also per-factor accuracy."""
    parsed = [parse_or_none(t) for t in texts]
    scenes = [shapes.scene_of(factors, n) for n in range(len(texts))]
    out = {f"{name}_parsed": float(np.mean([p is not None for p in parsed])),
           f"{name}_exact": float(np.mean([p is not None and shapes.caption_agrees(p, s)
                                           for p, s in zip(parsed, scenes)]))}
    if name.startswith("single_"):
        hits = {f: [] for f in FACTORS}
        for p, s in zip(parsed, scenes):
            obj = p["objects"][0] if p is not None and len(p["objects"]) == 1 else None
            truth = {"shape": shapes.SHAPES[s["shape"][0]], "colour": shapes.COLOURS[s["colour"][0]],
                     "size": shapes.SIZES[s["size"][0]], "background": shapes.BACKGROUNDS[int(s["background"])]}
            stated = dict(obj or {}, background=p["background"] if p is not None else None)
            for f in ("shape", "colour", "size", "background"):
                hits[f].append(stated.get(f) == truth[f])
            hits["pair"].append(obj is not None and (obj["shape"], obj["colour"]) == (truth["shape"], truth["colour"]))
        out.update({f"{name}_{f}": float(np.mean(v)) for f, v in hits.items()})
    return out


def clip_score(clip_run, images: np.ndarray, texts: list) -> float:
    """100 x mean cosine(image, caption) in a trained contrastive model's space. A caption longer
    than that model's text context (a degenerate one that ran to the captioner's length limit) is
    cut to the words that fit."""
    budget = clip_run.embedder.length - 2  # BOS and EOS
    texts = [" ".join(caption_lib.words_of(t)[:budget]) for t in texts]
    image_emb = clip_run.embedder.images(clip_run.params, images)
    text_emb = clip_run.embedder.texts(clip_run.params, texts)
    return float(100.0 * np.mean(np.sum(image_emb * text_emb, axis=1)))


def build(config, workdir: str) -> Task:
    check_config(config)
    data = clip_data.load_for_run(config, workdir)
    model = from_config(config.model, data.vocab.size)
    length = config.model.max_text_length
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    if config.model.freeze_vision:  # no updates and no weight decay for the image encoder (ClipCap's frozen CLIP)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                                   lambda params: {k: "frozen" if k == "vision" else "train" for k in params})
    image_shape = data.image_shape

    def init_params(rng):
        return model.init(rng, jnp.zeros((1,) + image_shape), jnp.zeros((1, length - 1), jnp.int32))["params"]

    pretrained = None
    if config.model.vision_from:
        expected = jax.eval_shape(init_params, jax.random.key(0))["vision"]
        pretrained = pretrained_image_encoder(config.model.vision_from, image_shape, expected)

    def init(rng):
        params = init_params(rng)
        if pretrained is not None:
            params = dict(params, vision=jax.tree_util.tree_map(jnp.asarray, pretrained))
        return TrainState.create(params, tx)

    def train_batch(step: int) -> dict:
        return data.train_batch(config.seed, step, config.train.batch_size, length)

    eval_set = clip_data.fixed_batches(data.retrieval_sets[0], data.vocab, length, config.eval.batch_size)
    count = config.eval.caption_images
    scored = [(s.name, s) for s in data.retrieval_sets] + [(s.name, s) for s in data.zero_shot_sets
                                                           if s.name.startswith("single_")]
    clip_run = None

    def on_eval(state, step: int, workdir: str) -> dict:
        nonlocal clip_run
        if not count:
            return {}
        params = jax.device_get(state.params)
        out = {}
        for name, pairs in scored:
            texts = write_captions(model, params, data.vocab, pairs.images[:count], config.eval.beam_width)
            if pairs.factors is not None:
                out.update(caption_scores(texts, {k: v[:count] for k, v in pairs.factors.items()}, name))
            if config.eval.clip_workdir:
                if clip_run is None:
                    from aigc_jax.families.clip.task import load_trained
                    clip_run = load_trained(config.eval.clip_workdir)
                out[f"{name}_clip_score"] = clip_score(clip_run, pairs.images[:count], texts)
                if pairs.captions:  # the reference: the data's own captions of the same images
                    out[f"{name}_clip_score_reference"] = clip_score(clip_run, pairs.images[:count],
                                                                     pairs.captions[:count])
        return out

    abstract = jax.eval_shape(init, jax.random.key(0))
    m = config.model
    return Task(
        model_fields=MODEL_FIELDS,
        init=init,
        train_step=functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        eval_step=functools.partial(eval_step, model=model),
        train_batch=train_batch,
        eval_batches=lambda: eval_set,
        summarize_eval=summarize_eval,
        num_params=count_params(abstract.params),
        items_per_step=config.train.batch_size,
        item_name="captions",
        description=(f"{data.description}; captioner: {m.image_encoder} image encoder"
                     f"{f' from {m.vision_from}' if m.vision_from else ''}{' (frozen)' if m.freeze_vision else ''}, "
                     f"{m.decoder_depth} decoder "
                     f"blocks of width {m.width}; vocabulary {data.vocab.size} words"),
        on_eval=on_eval,
    )
