"""Image data sets: scikit-learn's 8x8 digits (embedded default, no download), the procedural
shapes world (aigc_jax/data/shapes.py: RGB scenes with known factors, rendered and cached), and a
user's IDX (MNIST format, optionally gzipped) or NPZ files by path.

Images come back as float32 [N, H, W, 1] in [0, 1] with int32 labels [N] (-1 when the
file has none). Batches are a pure function of (seed, step), as for text.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from aigc_jax.data.text import DataError

DATASETS = ("digits", "shapes")  # config data.dataset: the embedded / generated sets
SHAPES_DATA_SEED = 0  # the shapes world's scenes are a fixed data set, not a function of the run's seed


@dataclass(frozen=True)
class ImageSplits:
    train_images: np.ndarray  # [N, H, W, 1] float32 in [0, 1]
    train_labels: np.ndarray  # [N] int32, -1 where unknown
    test_images: np.ndarray
    test_labels: np.ndarray
    description: str

    @property
    def shape(self) -> tuple:
        return self.train_images.shape[1:]


def split_by_index(images: np.ndarray, labels: np.ndarray, test_fraction: float, description: str) -> ImageSplits:
    """A fixed split: a seeded permutation, the last `test_fraction` for testing."""
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(round(len(images) * (1.0 - test_fraction)))
    train, test = order[:cut], order[cut:]
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{description}: {len(images)} images are too few to split into train and test")
    return ImageSplits(images[train], labels[train], images[test], labels[test],
                       f"{description}: {len(train)} training and {len(test)} test images")


def load_digits(test_fraction: float = 0.2) -> ImageSplits:
    """scikit-learn's 1,797 8x8 handwritten digits (UCI), 17 grey levels scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits
    digits = sklearn_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    return split_by_index(images, digits.target.astype(np.int32), test_fraction, "scikit-learn 8x8 digits")


def _open_maybe_gzip(path: str) -> bytes:
    if not os.path.exists(path):
        raise DataError(f"image file {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"image path {path!r} is a directory; expected an IDX or NPZ file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path!r}: {e}") from None


def read_idx(path: str) -> np.ndarray:
    """An IDX file (LeCun's MNIST format): magic 0x0000 | type 0x08 (uint8) | ndim, then big-endian dims."""
    raw = _open_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path!r} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path!r} is truncated or corrupt: header says {dims} ({expected} bytes), "
                        f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_images(images_path: str, labels_path: Optional[str] = None, test_fraction: float = 0.2) -> ImageSplits:
    images = read_idx(images_path)
    if images.ndim != 3:
        raise DataError(f"{images_path!r} holds an array of shape {images.shape}; expected [N, H, W] images")
    labels = np.full(len(images), -1, np.int32)
    if labels_path:
        labels = read_idx(labels_path).astype(np.int32)
        if labels.shape != (len(images),):
            raise DataError(f"labels {labels_path!r} have shape {labels.shape}, images {images.shape}: "
                            f"expected one label per image")
    return split_by_index((images.astype(np.float32) / 255.0)[..., None], labels, test_fraction, images_path)


def load_npz_images(path: str, test_fraction: float = 0.2) -> ImageSplits:
    """An NPZ with `images` ([N, H, W] or [N, H, W, C], uint8 0..255 or float 0..1) and optional `labels`."""
    if not os.path.exists(path):
        raise DataError(f"image file {path!r} does not exist")
    try:
        with np.load(path) as archive:
            if "images" not in archive:
                raise DataError(f"{path!r} has no 'images' array (found: {', '.join(archive.files)})")
            images = archive["images"]
            labels = archive["labels"].astype(np.int32) if "labels" in archive else np.full(len(images), -1, np.int32)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path!r} as NPZ: {e}") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{path!r}: images have shape {images.shape}; expected [N, H, W] or [N, H, W, C]")
    images = images.astype(np.float32) / (255.0 if images.max() > 1.0 else 1.0)
    return split_by_index(images, labels, test_fraction, path)


def load_image_splits(data_config) -> ImageSplits:
    """From config.data: `path` (IDX or NPZ; `labels_path` for IDX labels), else `dataset`."""
    path = data_config.get("path", "")
    test_fraction = data_config.get("test_fraction", 0.2)
    if path:
        if path.endswith(".npz"):
            return load_npz_images(path, test_fraction)
        return load_idx_images(path, data_config.get("labels_path", "") or None, test_fraction)
    if data_config.dataset == "digits":
        return load_digits(test_fraction)
    if data_config.dataset == "shapes":
        return load_shapes(data_config)
    raise DataError(f"unknown data.dataset {data_config.dataset!r}; expected one of {', '.join(DATASETS)} "
                    f"or set data.path")


def uses_shapes_world(data_config) -> bool:
    return not data_config.get("path", "") and data_config.get("dataset", "") == "shapes"


def shapes_world(data_config):
    """The ShapesWorld of config.data: image_size (0: 32), min_objects, max_objects."""
    from aigc_jax.data.shapes import ShapesWorld
    return ShapesWorld(image_size=data_config.get("image_size", 0) or 32,
                       min_objects=data_config.get("min_objects", 1), max_objects=data_config.get("max_objects", 3))


def load_shapes(data_config) -> ImageSplits:
    """data.num_train scenes of the shapes world's "train" stream (no held-out (shape, colour)
    pair) and data.num_test of its "test" stream, RGB in [0, 1]; labels: the largest object's
    shape (aigc_jax/data/shapes.py SHAPES), for class-conditional models."""
    from aigc_jax.data import shapes
    world = shapes_world(data_config)
    parts = []
    for split, count in (("train", data_config.get("num_train", 20000)), ("test", data_config.get("num_test", 2000))):
        pixels, factors = shapes.make_dataset(world, SHAPES_DATA_SEED, count, split)
        labels = factors["shape"][np.arange(count), shapes.main_object(factors)].astype(np.int32)
        parts.append((pixels.astype(np.float32) / 255.0, labels))
    (train, train_labels), (test, test_labels) = parts
    return ImageSplits(train, train_labels, test, test_labels,
                       f"shapes world ({world.min_objects}-{world.max_objects} objects, held-out pairs "
                       f"{', '.join(f'{c} {s}' for s, c in world.heldout_pairs)}): {len(train)} training and "
                       f"{len(test)} test scenes")


def resize_nearest(images: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of [N, H, W, C] images to [N, size, size, C]."""
    rows = (np.arange(size) * images.shape[1] / size).astype(int)
    cols = (np.arange(size) * images.shape[2] / size).astype(int)
    return images[:, rows][:, :, cols]


def image_batch(images: np.ndarray, labels: np.ndarray, seed: int, step: int, batch_size: int):
    """A batch drawn uniformly with replacement: a pure function of (seed, step)."""
    index = np.random.default_rng([seed, step]).integers(0, len(images), size=batch_size)
    return images[index], labels[index]
