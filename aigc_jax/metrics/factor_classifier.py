"""The factor classifier: a small conv net that reads the shapes world's factors
(aigc_jax/data/shapes.py) back off any 32x32 (or S x S) RGB image, and the scores of generated
images built on it.

It is the judge of every image, so it is trained on scenes of the "all" split, which includes
the held-out (shape, colour) pairs: a generator that composes "a green circle" without having
seen one must be recognised as having done so. Models trained on the "train" split never see
those pairs; the classifier does. This is NOT Inception: its Frechet distance is comparable only
with other numbers from the same classifier, settings and shapes world.

images [N, S, S, 3] in [0, 1] -> (outputs, features [N, F]), F = feature_dim (128), the
penultimate layer (Frechet distance, perceptual path length). Heads (logits):
  categorical, softmax:  count (max - min + 1), background (4), and the main object's (the
                          largest, shapes.main_object) shape (4), colour (8), size (3), position
                          (3 x 3 bin of its centre, row-major)
  multi-label, sigmoid:  shape_present (4), colour_present (8), pair_present (32; index
                          shape * 8 + colour)
Loss = sum over categorical heads of the mean cross-entropy + sum over multi-label heads of the
binary cross-entropy summed over labels, averaged over the batch.

Trained once per (world, settings) and cached on disk (~/.cache/aigc_jax/classifiers); the key
hashes the settings, the world, both cache versions and the training images themselves.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.metrics.classifier_score import classifier_sums
from aigc_jax.metrics.frechet import feature_sums, frechet_distance, gaussian_from_sums, gaussian_of
from aigc_jax.nn.conv import Conv

CACHE_VERSION = 1
CATEGORICAL_HEADS = ("count", "background", "shape", "colour", "size", "position")
MULTI_LABEL_HEADS = ("shape_present", "colour_present", "pair_present")
DARK_BACKGROUNDS = ("black", "navy")


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "aigc_jax", "classifiers")


def head_sizes(world: shapes.ShapesWorld) -> dict:
    """Classes (categorical) or labels (multi-label) of each head."""
    return {"count": world.max_objects - world.min_objects + 1, "background": len(shapes.BACKGROUNDS),
            "shape": len(shapes.SHAPES), "colour": len(shapes.COLOURS), "size": len(shapes.SIZES),
            "position": shapes.POSITION_BINS ** 2, "shape_present": len(shapes.SHAPES),
            "colour_present": len(shapes.COLOURS), "pair_present": len(shapes.SHAPES) * len(shapes.COLOURS)}


class FactorNet(nn.Module):
    """images [N, S, S, 3] in [0, 1] -> ({head: logits [N, K]}, features [N, feature_dim]).
    Inputs centred to [-1, 1]; three 3x3 ReLU convolutions (width, 2 width, 4 width channels),
    each followed by 2x2 max pooling: S -> S/8. The map is flattened (where things are) and also
    max- and mean-pooled over positions (whether something is anywhere: presence and count),
    then a dense ReLU feature layer and one linear head per factor. Centring and the pooled
    features each sped up learning shapes (measured with experiments of 400-3,500 steps)."""
    world: shapes.ShapesWorld
    width: int = 32
    feature_dim: int = 128

    @nn.compact
    def __call__(self, images):
        h = images * 2.0 - 1.0
        for channels in (1, 2, 4):
            h = nn.relu(Conv(channels * self.width, (3, 3))(h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        pooled = jnp.concatenate([h.reshape((h.shape[0], -1)), h.max(axis=(1, 2)), h.mean(axis=(1, 2))], axis=-1)
        features = nn.relu(nn.Dense(self.feature_dim)(pooled))
        outputs = {name: nn.Dense(size, name=f"head_{name}")(features)
                   for name, size in head_sizes(self.world).items()}
        return outputs, features


@dataclass(frozen=True)
class FactorSettings:
    width: int = 32
    feature_dim: int = 128
    steps: int = 3500  # about 3.5 minutes on a shared 2-core CPU
    batch_size: int = 32  # small batches learned shapes faster per image seen than 64 or 128
    learning_rate: float = 1e-3  # peak of a linear warmup (5% of steps) then cosine decay to 0
    train_scenes: int = 30000  # "all" split, stream (data_seed): every pair, held-out ones too
    test_scenes: int = 2000  # each of: "all" split stream (data_seed + 1), "heldout" split stream (data_seed)
    seed: int = 0  # initialisation and batch order
    data_seed: int = 0

    def __post_init__(self):
        for name in ("width", "feature_dim", "steps", "batch_size", "train_scenes", "test_scenes"):
            if getattr(self, name) < 1:
                raise DataError(f"FactorSettings.{name} must be positive, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise DataError(f"FactorSettings.learning_rate must be positive, got {self.learning_rate}")

    def model(self, world: shapes.ShapesWorld) -> FactorNet:
        return FactorNet(world, self.width, self.feature_dim)


def factor_loss(outputs: dict, targets: dict) -> tuple:
    """(loss, per-head losses): categorical mean CE + multi-label BCE summed over labels."""
    losses = {}
    for name in CATEGORICAL_HEADS:
        losses[name] = optax.softmax_cross_entropy_with_integer_labels(outputs[name], targets[name]).mean()
    for name in MULTI_LABEL_HEADS:
        losses[name] = optax.sigmoid_binary_cross_entropy(outputs[name], targets[name]).sum(axis=-1).mean()
    return sum(losses.values()), losses


def training_batch(images: np.ndarray, targets: dict, seed: int, step: int, batch_size: int) -> tuple:
    """(images float32 [B, S, S, 3] in [0, 1], targets) drawn uniformly with replacement from
    uint8 images: a pure function of (seed, step)."""
    index = np.random.default_rng([seed, step]).integers(0, len(images), size=batch_size)
    return images[index].astype(np.float32) / 255.0, {name: value[index] for name, value in targets.items()}


def train_factor_classifier(world: shapes.ShapesWorld, settings: FactorSettings, images: np.ndarray,
                            targets: dict, log_every: int = 0) -> tuple:
    """Adam (warmup + cosine schedule) on factor_loss. Returns (params, losses [steps] as numpy)."""
    model = settings.model(world)
    params = model.init(jax.random.key(settings.seed), jnp.zeros((1,) + images.shape[1:]))["params"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate,
                                                  max(1, settings.steps // 20), settings.steps)
    tx = optax.adam(schedule)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            outputs, _ = model.apply({"params": p}, x)
            return factor_loss(outputs, y)[0]
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(settings.steps):
        x, y = training_batch(images, targets, settings.seed, i, settings.batch_size)
        params, opt_state, loss = step(params, opt_state, x, y)
        losses.append(loss)  # fetched after the next step is queued (no host stall)
        if log_every and (i + 1) % log_every == 0:
            print(f"factor classifier step {i + 1}/{settings.steps}: loss {float(loss):.4f}", flush=True)
    return params, np.asarray(jax.device_get(losses), np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model: FactorNet, params, images):
    outputs, features = model.apply({"params": params}, images)
    probs = {name: jax.nn.softmax(outputs[name]) for name in CATEGORICAL_HEADS}
    probs.update({name: jax.nn.sigmoid(outputs[name]) for name in MULTI_LABEL_HEADS})
    return probs, features


def predict(model: FactorNet, params, images: np.ndarray, batch_size: int = 500) -> tuple:
    """({head: probabilities [N, K]} (softmax or sigmoid), features [N, F]) as numpy, in
    fixed-size batches (the last one padded, so one compiled program serves every N).
    images: [N, S, S, 3], float in [0, 1] or uint8."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    expected = (model.world.image_size, model.world.image_size, 3)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise DataError(f"the factor classifier reads images of shape [N, {', '.join(map(str, expected))}], "
                        f"got {images.shape}")
    batch_size = min(batch_size, len(images))
    probs, features = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        p, f = _apply(model, params, jnp.asarray(padded, jnp.float32))
        probs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:len(chunk)], p))
        features.append(np.asarray(f)[:len(chunk)])
    return ({name: np.concatenate([p[name] for p in probs]) for name in probs[0]},
            np.concatenate(features))


def features(model: FactorNet, params, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Penultimate features [N, F] (numpy), in batches."""
    return predict(model, params, images, batch_size)[1]


def accuracies(probs: dict, targets: dict) -> dict:
    """Per head: categorical argmax accuracy; multi-label `<head>_exact` (every label right at
    p > 0.5) and `<head>_label` (mean over labels); and main_pair (main object's shape and
    colour both right)."""
    out = {}
    for name in CATEGORICAL_HEADS:
        out[name] = float(np.mean(np.argmax(probs[name], axis=-1) == targets[name]))
    for name in MULTI_LABEL_HEADS:
        right = (probs[name] > 0.5) == (targets[name] > 0.5)
        out[f"{name}_exact"] = float(np.mean(np.all(right, axis=-1)))
        out[f"{name}_label"] = float(np.mean(right))
    out["main_pair"] = float(np.mean((np.argmax(probs["shape"], -1) == targets["shape"])
                                     & (np.argmax(probs["colour"], -1) == targets["colour"])))
    return out


def _cache_key(world: shapes.ShapesWorld, settings: FactorSettings, train_images: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}|shapes v{shapes.CACHE_VERSION}|{world}|{settings}".encode())
    digest.update(np.ascontiguousarray(train_images).tobytes())
    return digest.hexdigest()[:24]


def evaluation_sets(world: shapes.ShapesWorld, settings: FactorSettings, data_cache_dir: str = "",
                    progress: bool = True) -> dict:
    """{"test": (images uint8, targets), "heldout": (images uint8, targets)}: settings.test_scenes
    of the "all" stream (data_seed + 1, disjoint from training) and of the "heldout" stream."""
    out = {}
    for name, seed, split in (("test", settings.data_seed + 1, "all"), ("heldout", settings.data_seed, "heldout")):
        if split == "heldout" and not world.heldout_pairs:
            continue
        images, factors = shapes.make_dataset(world, seed, settings.test_scenes, split, data_cache_dir, progress)
        out[name] = (images, shapes.targets(world, factors))
    return out


def load_or_train_factor_classifier(world: shapes.ShapesWorld, settings: FactorSettings = FactorSettings(),
                                    cache_dir: str = "", data_cache_dir: str = "", progress: bool = True) -> tuple:
    """(model, params, accuracies, cache path): loaded from the cache, else trained and saved
    (through a temporary file and a rename). accuracies = {"test": {...}, "heldout": {...}} (see
    `accuracies`; "heldout" absent when the world holds no pair out) plus "train_seconds",
    "first_loss" and "last_loss" (means over the first and last 50 steps), as measured when it
    was trained. Data sets come from shapes.make_dataset (cached in data_cache_dir)."""
    cache_dir = cache_dir or default_cache_dir()
    images, factors = shapes.make_dataset(world, settings.data_seed, settings.train_scenes, "all",
                                          data_cache_dir, progress)
    path = os.path.join(cache_dir, f"factor_classifier_{_cache_key(world, settings, images)}.msgpack")
    model = settings.model(world)
    template = model.init(jax.random.key(0), jnp.zeros((1,) + images.shape[1:]))["params"]
    if os.path.exists(path):
        with open(path, "rb") as f:
            saved = serialization.msgpack_restore(f.read())
        params = serialization.from_state_dict(template, saved["params"])
        return model, params, _plain(saved["accuracies"]), path
    start = time.perf_counter()
    params, losses = train_factor_classifier(world, settings, images, shapes.targets(world, factors),
                                             log_every=500 if progress else 0)
    seconds = time.perf_counter() - start
    window = max(1, min(50, len(losses) // 4))
    result = {name: accuracies(predict(model, params, test_images)[0], test_targets)
              for name, (test_images, test_targets) in evaluation_sets(world, settings, data_cache_dir,
                                                                        progress).items()}
    result.update(train_seconds=seconds, first_loss=float(losses[:window].mean()),
                  last_loss=float(losses[-window:].mean()))
    os.makedirs(cache_dir, exist_ok=True)
    payload = serialization.msgpack_serialize(
        {"params": serialization.to_state_dict(jax.device_get(params)), "accuracies": result})
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)  # atomic: a concurrent reader sees no file or the whole file
    return model, params, result, path


def _plain(tree):
    """msgpack gives numpy scalars back; plain floats read better in reports."""
    if isinstance(tree, dict):
        return {key: _plain(value) for key, value in tree.items()}
    return float(tree)


# ----------------------------------------------------------------------------- scores


def _pair_log_probs(outputs: dict) -> jax.Array:
    """log p(shape, colour) of the main object [N, 32] as the product of the shape and colour
    heads' distributions (index shape * 8 + colour): log p(s) + log p(c)."""
    log_shape = jax.nn.log_softmax(outputs["shape"].astype(jnp.float32), axis=-1)
    log_colour = jax.nn.log_softmax(outputs["colour"].astype(jnp.float32), axis=-1)
    return (log_shape[:, :, None] + log_colour[:, None, :]).reshape(log_shape.shape[0], -1)


class FactorScores:
    """Scores of generated images against real ones with the factor classifier; the same
    methods as aigc_jax/metrics/classifier_score.ClassifierScores, so a family can use either.

      frechet_distance   in the classifier's feature space (aigc_jax/metrics/frechet.py)
      classifier_score   exp(E_x KL(p(y|x) || p(y))) over y = the main object's (shape, colour),
                         32 classes, p(y|x) = p(shape|x) p(colour|x) (the two heads' product);
                         between 1 and 32
      mean_confidence    E_x max_y p(y|x) for that y
      factor_tv_<head>   total variation 1/2 sum_k |p_gen(k) - p_real(k)| between the mean
                         predicted distributions of generated and real images, per categorical head
      factor_match       the mean of factor_tv_<head> over the categorical heads (0 = the same)
      heldout_pair_rate  fraction of images in which the classifier sees a held-out pair
                         (pair_present p > 0.5); real_heldout_pair_rate: the same for the real images
      present_rate_<head> [K] fraction of images with each label present (p > 0.5)
      label_accuracy     (with labels) how often the shape head agrees with the conditioning
                         class, the main object's shape (as aigc_jax/data/images.load_shapes labels)

    `sums` runs inside a jit-compiled evaluation step (the weights are constants); sums add
    across batches; `metrics` finishes them on the host."""

    def __init__(self, model: FactorNet, params, real_images: np.ndarray):
        self.model, self.params = model, params
        probs, real_features = predict(model, params, real_images)
        self.real_mean, self.real_cov = gaussian_of(real_features)
        self.real_marginals = {name: probs[name].mean(axis=0) for name in CATEGORICAL_HEADS}
        self.real_present_rates = {name: (probs[name] > 0.5).mean(axis=0) for name in MULTI_LABEL_HEADS}
        self.heldout = np.asarray(model.world.heldout_pair_indices, np.int32)
        self.real_heldout_pair_rate = (float(np.mean(np.any(probs["pair_present"][:, self.heldout] > 0.5, axis=-1)))
                                       if len(self.heldout) else 0.0)

    def sums(self, images: jax.Array, weight: jax.Array, labels=None) -> dict:
        """images [N, S, S, 3] in [0, 1], weight [N] (0 for padding) -> summable statistics."""
        outputs, feats = self.model.apply({"params": self.params}, images)
        weight = weight.astype(jnp.float32)
        sums = {**feature_sums(feats, weight), **classifier_sums(_pair_log_probs(outputs), weight)}
        for name in CATEGORICAL_HEADS:
            sums[f"prob_sum_{name}"] = jnp.sum(jax.nn.softmax(outputs[name]) * weight[:, None], axis=0)
        for name in MULTI_LABEL_HEADS:
            sums[f"present_sum_{name}"] = jnp.sum((outputs[name] > 0.0) * weight[:, None], axis=0)  # p > 0.5
        if len(self.heldout):
            held = jnp.any(outputs["pair_present"][:, self.heldout] > 0.0, axis=-1)
            sums["heldout_pair_sum"] = jnp.sum(held * weight)
        if labels is not None:
            sums["label_agreement_sum"] = jnp.sum((jnp.argmax(outputs["shape"], axis=-1) == labels) * weight)
        return sums

    def metrics(self, sums: dict) -> dict:
        n = float(sums["count"])
        mean, cov = gaussian_from_sums(sums["feature_sum"], sums["feature_outer"], sums["count"])
        marginal = np.asarray(sums["prob_sum"], np.float64) / n
        marginal_entropy = -float(np.sum(marginal[marginal > 0] * np.log(marginal[marginal > 0])))
        out = {"frechet_distance": frechet_distance(mean, cov, self.real_mean, self.real_cov),
               "classifier_score": math.exp(float(sums["neg_entropy_sum"]) / n + marginal_entropy),
               "mean_confidence": float(sums["confidence_sum"]) / n}
        tvs = []
        for name in CATEGORICAL_HEADS:
            generated = np.asarray(sums[f"prob_sum_{name}"], np.float64) / n
            tv = 0.5 * float(np.abs(generated - self.real_marginals[name]).sum())
            out[f"factor_tv_{name}"] = tv
            tvs.append(tv)
        out["factor_match"] = float(np.mean(tvs))
        for name in MULTI_LABEL_HEADS:  # scalars only (the loop logs them): the rates' distance to the real ones
            rates = np.asarray(sums[f"present_sum_{name}"], np.float64) / n
            out[f"present_tv_{name}"] = float(np.abs(rates - self.real_present_rates[name]).mean())
        if "heldout_pair_sum" in sums:
            out["heldout_pair_rate"] = float(sums["heldout_pair_sum"]) / n
            out["real_heldout_pair_rate"] = self.real_heldout_pair_rate
        if "label_agreement_sum" in sums:
            out["label_accuracy"] = float(sums["label_agreement_sum"]) / n
        return out

    def frechet_distance_of(self, images: np.ndarray) -> float:
        """The distance of a set of real images (e.g. a test split): the floor for its size."""
        mean, cov = gaussian_of(features(self.model, self.params, images))
        return frechet_distance(mean, cov, self.real_mean, self.real_cov)


# ----------------------------------------------------------------------------- binary attributes


def binary_attributes(model: FactorNet, params, images: np.ndarray) -> tuple:
    """({name: bool [N]}, {name: confidence [N]}) for StyleGAN's linear separability (Karras et
    al. 2019, sec. 4.2): each attribute is p > 0.5 for a probability p read off the heads, and
    its confidence max(p, 1 - p) in [0.5, 1]. 19 attributes:
      has_<shape> (4), has_<colour> (8)       the multi-label presence heads
      several_objects                          P(count > 1)
      main_large, main_small                   P(main object's size bin is large / small)
      main_round                               P(main object is a circle)
      main_left_third, main_top_third          P(main object's centre in the left / top third)
      dark_background                          P(background is black or navy)"""
    probs, _ = predict(model, params, images)
    world = model.world
    p = {}
    for k, name in enumerate(shapes.SHAPES):
        p[f"has_{name}"] = probs["shape_present"][:, k]
    for k, name in enumerate(shapes.COLOURS):
        p[f"has_{name}"] = probs["colour_present"][:, k]
    several = np.arange(head_sizes(world)["count"]) + world.min_objects > 1
    p["several_objects"] = probs["count"][:, several].sum(axis=-1)
    p["main_large"] = probs["size"][:, shapes.SIZES.index("large")]
    p["main_small"] = probs["size"][:, shapes.SIZES.index("small")]
    p["main_round"] = probs["shape"][:, shapes.SHAPES.index("circle")]
    grid = probs["position"].reshape(-1, shapes.POSITION_BINS, shapes.POSITION_BINS)  # [N, row, column]
    p["main_left_third"] = grid[:, :, 0].sum(axis=-1)
    p["main_top_third"] = grid[:, 0, :].sum(axis=-1)
    dark = [shapes.BACKGROUNDS.index(name) for name in DARK_BACKGROUNDS]
    p["dark_background"] = probs["background"][:, dark].sum(axis=-1)
    return ({name: value > 0.5 for name, value in p.items()},
            {name: np.maximum(value, 1.0 - value) for name, value in p.items()})
