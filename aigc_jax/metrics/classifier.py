"""A small image classifier that the project trains itself, for evaluating image GANs.

Its penultimate activations are the feature space of our Frechet distance and its class
probabilities give the classifier-based sample-quality score (aigc_jax/metrics/classifier_score.py).
This is NOT the Inception network: numbers computed with it are comparable only with other
numbers computed with the same classifier on the same data set, never with published FIDs.

Trained once per data set and cached on disk: the cache key hashes the training images,
their labels and every training setting, so a different data set (or setting) trains anew.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from aigc_jax.data.images import image_batch
from aigc_jax.nn.conv import Conv

CACHE_VERSION = 1


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "aigc_jax", "classifiers")


class SmallClassifier(nn.Module):
    """images [N, H, W, C] in [0, 1] -> (logits [N, num_classes], features [N, feature_dim]).
    Three 3x3 convolutions (the last two stride 2), a dense feature layer, a linear head."""
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 64

    @nn.compact
    def __call__(self, x):
        h = nn.relu(Conv(self.width, (3, 3))(x))
        h = nn.relu(Conv(2 * self.width, (3, 3), strides=(2, 2))(h))
        h = nn.relu(Conv(2 * self.width, (3, 3), strides=(2, 2))(h))
        features = nn.relu(nn.Dense(self.feature_dim)(h.reshape((h.shape[0], -1))))
        return nn.Dense(self.num_classes)(features), features


@dataclass(frozen=True)
class ClassifierSettings:
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 64
    steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0

    def model(self) -> SmallClassifier:
        return SmallClassifier(self.num_classes, self.width, self.feature_dim)


def train_classifier(images: np.ndarray, labels: np.ndarray, settings: ClassifierSettings):
    """Adam on cross-entropy over batches drawn with image_batch(seed, step). Returns params."""
    model = settings.model()
    params = model.init(jax.random.key(settings.seed), jnp.zeros((1,) + images.shape[1:]))["params"]
    tx = optax.adam(settings.learning_rate)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits, _ = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for i in range(settings.steps):
        x, y = image_batch(images, labels, settings.seed, i, settings.batch_size)
        params, opt_state = step(params, opt_state, x, y)
    return params


def classify(model: SmallClassifier, params, images: np.ndarray, batch_size: int = 500):
    """(logits [N, K], features [N, F]) as numpy, in fixed-size batches."""
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        out_logits, out_features = apply(params, images[start:start + batch_size])
        logits.append(np.asarray(out_logits))
        features.append(np.asarray(out_features))
    return np.concatenate(logits), np.concatenate(features)


def cache_key(images: np.ndarray, labels: np.ndarray, settings: ClassifierSettings) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}|{images.shape}|{images.dtype}|{settings}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:24]


def load_or_train_classifier(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                             test_labels: np.ndarray, settings: ClassifierSettings, cache_dir: str = ""):
    """(model, params, test accuracy, cache path): loaded from the cache, else trained and saved."""
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, f"classifier_{cache_key(train_images, train_labels, settings)}.msgpack")
    model = settings.model()
    template = model.init(jax.random.key(0), jnp.zeros((1,) + train_images.shape[1:]))["params"]
    if os.path.exists(path):
        with open(path, "rb") as f:
            saved = serialization.msgpack_restore(f.read())
        params = serialization.from_state_dict(template, saved["params"])
        return model, params, float(saved["test_accuracy"]), path
    params = train_classifier(train_images, train_labels, settings)
    logits, _ = classify(model, params, test_images)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == test_labels))
    os.makedirs(cache_dir, exist_ok=True)
    payload = serialization.msgpack_serialize(
        {"params": serialization.to_state_dict(jax.device_get(params)), "test_accuracy": accuracy})
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    return model, params, accuracy, path
