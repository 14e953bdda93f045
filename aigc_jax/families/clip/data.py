"""Image-caption pairs for the contrastive model (and the captioner), from three sources:

  shapes  (default) the procedural shapes world (aigc_jax/data/shapes.py): training scenes of its
          "train" stream (4 (shape, colour) pairs never appear), each caption drawn afresh per
          step from the four templates, then paraphrased (synonyms, relation wordings;
          aigc_jax/data/captions.py) with probability `data.paraphrase`.
  digits  scikit-learn's 8x8 digits, or MNIST from IDX files by `data.path`/`data.labels_path`,
          captioned by class templates ("a photo of the digit seven", "a handwritten seven", ...).
  pairs   your own: `data.pairs_path`, a TSV (file name <tab> caption) or JSONL ({"image": ...,
          "caption": ...}) file, image paths relative to its folder (PNG/JPEG, resized to
          `data.image_size`); `data.test_fraction` of them held out.

Evaluation sets are fixed (independent of the run's seed): retrieval pairs from the test stream
(seen pairs) and, for the shapes world, from the held-out stream; zero-shot sets per factor
(aigc_jax/families/clip/zero_shot.py). Images are float32 in [-1, 1].
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from aigc_jax import config_rules as rules
from aigc_jax.config import ConfigError
from aigc_jax.data import captions as caption_lib
from aigc_jax.data import images as image_data
from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.families.clip import hard_negatives as hard_negative_lib
from aigc_jax.files import read_json, write_json

SOURCES = ("shapes", "digits", "pairs")
DATA_FIELD_RULES = {  # the data section both image-text tasks share (config_rules)
    "data.dataset": rules.Choices(image_data.DATASETS), "data.path": rules.TEXT, "data.labels_path": rules.TEXT,
    "data.pairs_path": rules.TEXT, "data.channels": rules.Choices((1, 3)), "data.test_fraction": rules.OPEN_FRACTION,
    "data.image_size": rules.at_least(0), "data.num_train": rules.at_least(1), "data.min_objects": rules.at_least(1),
    "data.max_objects": rules.at_least(1), "data.paraphrase": rules.Range(0, 1),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TRAIN_TEMPLATES = ("a photo of the digit {}", "a handwritten {}", "the number {}")
DIGIT_ZERO_SHOT_TEMPLATES = ("a photo of the number {}", "the digit {}")  # word orders never seen in training
EVAL_SEED = 0xC11  # the fixed evaluation captions' draws
_TRAIN_SALT = 0xC1


@dataclass
class PairSet:
    """Fixed image-caption pairs: images [N, H, W, C] in [-1, 1], captions, and what they show."""
    name: str
    images: np.ndarray
    captions: list
    factors: Optional[dict] = None  # shapes world
    labels: Optional[np.ndarray] = None  # digits


@dataclass
class CaptionData:
    source: str
    description: str
    train_images: np.ndarray  # [N, H, W, C] float32 in [-1, 1]
    vocab: caption_lib.CaptionVocab
    retrieval_sets: list  # [PairSet]
    zero_shot_sets: list = field(default_factory=list)  # [PairSet] with factors or labels
    train_factors: Optional[dict] = None
    train_labels: Optional[np.ndarray] = None
    train_captions: Optional[list] = None
    paraphrase: float = 0.0
    heldout_pairs: tuple = ()  # shapes world: (shape, colour) names never in training

    @property
    def image_shape(self) -> tuple:
        return self.train_images.shape[1:]

    def train_texts(self, index: np.ndarray, rng: np.random.Generator) -> list:
        """Captions of training items `index`, drawn with rng (templates and paraphrases)."""
        if self.source == "shapes":
            return [shapes_caption(self.train_factors, int(i), rng, self.paraphrase) for i in index]
        if self.source == "digits":
            return [digit_caption(int(self.train_labels[i]), rng) for i in index]
        return [self.train_captions[int(i)] for i in index]

    def train_batch(self, seed: int, step: int, batch_size: int, length: int, hard_negatives: int = 0) -> dict:
        """A pure function of (seed, step): uniform draws with replacement, captions drawn afresh.
        hard_negatives > 0 (shapes world only) adds "negative_tokens" [batch_size * hard_negatives,
        length]: rows k * batch_size + i hold image i's k-th shape-swapped caption (hard_negatives.py)."""
        rng = np.random.default_rng([seed, step, _TRAIN_SALT])
        index = rng.integers(0, len(self.train_images), size=batch_size)
        if not hard_negatives:
            tokens = self.vocab.encode_batch(self.train_texts(index, rng), length)
            return {"images": self.train_images[index], "tokens": tokens}
        if self.source != "shapes":
            raise DataError(f"hard negatives are shape-swapped shapes-world captions; the {self.source} data has none")
        texts, negatives = [], [[] for _ in range(hard_negatives)]
        for i in index:
            template = int(rng.integers(shapes.NUM_TEMPLATES))
            texts.append(paraphrased(shapes.caption(shapes.scene_of(self.train_factors, int(i)), template), rng,
                                     self.paraphrase))
            swapped = hard_negative_lib.negative_captions(self.train_factors, int(i), template, rng,
                                                          self.heldout_pairs, hard_negatives)
            for k, text in enumerate(swapped):
                negatives[k].append(paraphrased(text, rng, self.paraphrase))
        return {"images": self.train_images[index], "tokens": self.vocab.encode_batch(texts, length),
                "negative_tokens": self.vocab.encode_batch([t for row in negatives for t in row], length)}


def to_model_range(images01: np.ndarray) -> np.ndarray:
    return (images01.astype(np.float32) - 0.5) * 2.0


def paraphrased(text: str, rng: np.random.Generator, probability: float) -> str:
    """text paraphrased with `probability` per word; rng untouched when the probability is 0."""
    return caption_lib.paraphrase(text, rng, probability) if probability > 0 else text


def shapes_caption(factors: dict, n: int, rng: np.random.Generator, paraphrase: float) -> str:
    text = shapes.caption(shapes.scene_of(factors, n), int(rng.integers(shapes.NUM_TEMPLATES)))
    return paraphrased(text, rng, paraphrase)


def digit_caption(label: int, rng: np.random.Generator, templates=DIGIT_TRAIN_TEMPLATES) -> str:
    return templates[int(rng.integers(len(templates)))].format(DIGIT_WORDS[label])


def _shapes_pixels(world, count: int, split: str) -> tuple:
    pixels, factors = shapes.make_dataset(world, image_data.SHAPES_DATA_SEED, count, split)
    return to_model_range(pixels / 255.0), factors


def single_object_world(world: shapes.ShapesWorld) -> shapes.ShapesWorld:
    return shapes.ShapesWorld(image_size=world.image_size, min_objects=1, max_objects=1,
                              heldout_pairs=world.heldout_pairs)


def shapes_vocabulary_texts(world: shapes.ShapesWorld) -> list:
    """Texts whose words make the shapes vocabulary: every template on a sample of scenes of each
    object count, every single-object caption (the zero-shot prompts) and every paraphrase word."""
    from aigc_jax.families.clip import zero_shot
    texts = []
    for count in range(world.min_objects, world.max_objects + 1):
        w = shapes.ShapesWorld(image_size=world.image_size, min_objects=count, max_objects=count,
                               heldout_pairs=world.heldout_pairs)
        factors = shapes.sample_factors(w, EVAL_SEED, range(8), "all")
        texts += [shapes.caption(shapes.scene_of(factors, n), t) for n in range(8) for t in range(shapes.NUM_TEMPLATES)]
    texts += [prompt for prompt, _ in zero_shot.shapes_prompts()]
    texts += zero_shot.count_prompts(world)[0]
    return texts + caption_lib.all_paraphrase_words()


def load_shapes(config) -> CaptionData:
    d, e = config.data, config.eval
    world = image_data.shapes_world(d)
    train, train_factors = _shapes_pixels(world, d.num_train, "train")
    rng = np.random.default_rng(EVAL_SEED)
    retrieval = []
    for split, name in (("test", "seen"), ("heldout", "heldout")):
        images, factors = _shapes_pixels(world, e.retrieval_pairs, split)
        texts = [shapes_caption(factors, n, rng, d.paraphrase) for n in range(e.retrieval_pairs)]
        retrieval.append(PairSet(name, images, texts, factors=factors))
    single = single_object_world(world)
    zero = []
    for split, name in (("test", "seen"), ("heldout", "heldout")):
        images, factors = _shapes_pixels(single, e.zero_shot_images, split)
        zero.append(PairSet(f"single_{name}", images, [], factors=factors))
    zero.append(PairSet("count_seen", retrieval[0].images, [], factors=retrieval[0].factors))
    vocab = caption_lib.CaptionVocab.from_texts(shapes_vocabulary_texts(world))
    description = (f"shapes world {world.image_size}x{world.image_size}, {world.min_objects}-{world.max_objects} "
                   f"objects, {d.num_train} training scenes (held out: "
                   f"{', '.join(f'{c} {s}' for s, c in world.heldout_pairs)}), captions from "
                   f"{shapes.NUM_TEMPLATES} templates, paraphrased with probability {d.paraphrase:g}")
    return CaptionData("shapes", description, train, vocab, retrieval, zero, train_factors=train_factors,
                       paraphrase=d.paraphrase, heldout_pairs=world.heldout_pairs)


def load_digits(config) -> CaptionData:
    d, e = config.data, config.eval
    splits = image_data.load_image_splits(d)
    if (splits.train_labels < 0).any():
        raise DataError("digit captions need class labels: set data.labels_path for an IDX image file")
    train, test = splits.train_images, splits.test_images
    if d.image_size:
        train, test = image_data.resize_nearest(train, d.image_size), image_data.resize_nearest(test, d.image_size)
    count = min(e.retrieval_pairs, len(test))
    rng = np.random.default_rng(EVAL_SEED)
    labels = splits.test_labels[:count]
    test_set = PairSet("seen", to_model_range(test[:count]), [digit_caption(int(y), rng) for y in labels],
                       labels=labels)
    zero = PairSet("digits", to_model_range(test), [], labels=splits.test_labels)
    texts = [t.format(w) for t in DIGIT_TRAIN_TEMPLATES + DIGIT_ZERO_SHOT_TEMPLATES for w in DIGIT_WORDS]
    return CaptionData("digits", f"{splits.description}, class captions", to_model_range(train),
                       caption_lib.CaptionVocab.from_texts(texts), [test_set], [zero],
                       train_labels=splits.train_labels)


def read_pairs_file(path: str) -> list:
    """[(image path, caption)] from a TSV (name<TAB>caption) or JSONL ({"image", "caption"}) file."""
    if not os.path.isfile(path):
        raise DataError(f"image-caption file {path!r} does not exist")
    folder = os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.endswith(".jsonl"):
                try:
                    item = json.loads(line)
                    name, text = item["image"], item["caption"]
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise DataError(f"{path}:{number}: expected a JSON object with 'image' and 'caption' "
                                    f"({error})") from None
            else:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2:
                    raise DataError(f"{path}:{number}: expected 'image<TAB>caption', got {len(parts)} field(s)")
                name, text = parts
            image_path = name if os.path.isabs(name) else os.path.join(folder, name)
            if not os.path.isfile(image_path):
                raise DataError(f"{path}:{number}: image {image_path!r} does not exist")
            pairs.append((image_path, text))
    if len(pairs) < 2:
        raise DataError(f"{path}: {len(pairs)} image-caption pair(s); need at least 2")
    return pairs


def read_image(path: str, size: int, channels: int) -> np.ndarray:
    """An image file as float32 [size, size, channels] in [0, 1]."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
            pixels = np.asarray(image, np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"cannot read image {path!r}: {error}") from None
    return pixels.reshape(size, size, channels)


def load_pairs(config) -> CaptionData:
    d, e = config.data, config.eval
    pairs = read_pairs_file(d.pairs_path)
    size = d.image_size or 32
    images = to_model_range(np.stack([read_image(p, size, d.channels) for p, _ in pairs]))
    texts = [t for _, t in pairs]
    order = np.random.default_rng(0).permutation(len(pairs))
    cut = max(1, int(round(len(pairs) * (1.0 - d.test_fraction))))
    train, test = order[:cut], order[cut:][:e.retrieval_pairs]
    if len(test) == 0:
        raise DataError(f"{d.pairs_path}: no pair left for testing; lower data.test_fraction's rounding or add pairs")
    vocab = caption_lib.CaptionVocab.from_texts(texts)
    return CaptionData("pairs", f"{d.pairs_path}: {len(train)} training and {len(test)} test pairs", images[train],
                       vocab, [PairSet("seen", images[test], [texts[i] for i in test])],
                       train_captions=[texts[i] for i in train])


def check_data_config(config) -> None:
    if config.data.min_objects > config.data.max_objects:
        raise ConfigError(f"data.min_objects={config.data.min_objects} exceeds data.max_objects="
                          f"{config.data.max_objects}")


def load_for_run(config, workdir: str) -> CaptionData:
    """The run's data; its vocabulary and image input shape written into the workdir (if any),
    where readers of the trained run find them."""
    data = load_caption_data(config)
    if workdir:
        caption_lib.save_vocab(data.vocab, workdir)
        save_input_shape(data.image_shape, workdir)
    return data


def fixed_batches(pairs: PairSet, vocab: caption_lib.CaptionVocab, length: int, size: int) -> list:
    """Evaluation batches of `size` pairs, full ones only (the contrastive loss depends on the
    batch: no padding rows); one smaller batch when the set holds fewer than `size`."""
    tokens = vocab.encode_batch(pairs.captions, length)
    full = len(tokens) // size * size
    return ([{"images": pairs.images[i:i + size], "tokens": tokens[i:i + size]} for i in range(0, full, size)]
            or [{"images": pairs.images, "tokens": tokens}])


INPUT_FILE = "image_input.json"


def save_input_shape(shape: tuple, workdir: str) -> None:
    """The model's image input [H, W, C], kept with the run so a reader resizes any image to it."""
    write_json(os.path.join(workdir, INPUT_FILE), {"image_shape": [int(x) for x in shape]})


def load_input_shape(workdir: str) -> tuple:
    path = os.path.join(workdir, INPUT_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {INPUT_FILE} in {workdir!r}: is it the workdir of an image-text run?")
    return read_json(path, "image input file", lambda spec: tuple(int(x) for x in spec["image_shape"]))


def load_caption_data(config) -> CaptionData:
    if config.data.pairs_path:
        return load_pairs(config)
    if config.data.path or config.data.dataset == "digits":
        return load_digits(config)
    if config.data.dataset == "shapes":
        return load_shapes(config)
    raise DataError(f"unknown data.dataset {config.data.dataset!r}; expected shapes or digits, or set data.path / "
                    f"data.pairs_path")
