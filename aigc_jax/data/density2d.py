"""2-D densities for flows, generated in-process (no download): a pure function of (seed, step).

  moons         two interleaved half circles: the upper one (cos t, sin t) and the lower one
                (1 - cos t, 1/2 - sin t), t ~ U[0, pi], shifted to centre (0, 0), plus
                isotropic Gaussian noise of standard deviation `noise`.
  circles       two concentric circles of radius 1 and 1/2 (equal weight), plus noise.
  spirals       two interleaved arms of radius 2 theta / (3 pi), theta ~ U[pi/2, 3 pi], the
                second the first rotated by pi, plus noise.
  checkerboard  uniform over the dark squares of a 4 x 4 board on [-2, 2]^2 (8 unit squares;
                density exactly 1/8 there and 0 elsewhere); `noise` is not used.

Points are float32 [N, 2]. Training batches are drawn fresh at every step from
rng([seed, step]); the test set is a fixed sample from rng([seed, TEST_SALT, 1]).
"""
from __future__ import annotations

import numpy as np

from aigc_jax.data.text import DataError

TEST_SALT = 0x7E57


def moons(rng: np.random.Generator, count: int, noise: float) -> np.ndarray:
    """Two interleaved half circles of radius 1, centred on the origin; [count, 2]."""
    t = rng.uniform(0.0, np.pi, size=count)
    lower = rng.integers(0, 2, size=count).astype(bool)
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t)) - 0.5
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t)) - 0.25
    return np.stack([x, y], axis=1) + noise * rng.standard_normal((count, 2))


def circles(rng: np.random.Generator, count: int, noise: float) -> np.ndarray:
    """Concentric circles of radius 1 and 1/2, equally likely; [count, 2]."""
    angle = rng.uniform(0.0, 2.0 * np.pi, size=count)
    radius = np.where(rng.integers(0, 2, size=count) == 1, 1.0, 0.5)
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + noise * rng.standard_normal((count, 2))


def spirals(rng: np.random.Generator, count: int, noise: float) -> np.ndarray:
    """Two spiral arms: angle theta ~ U[pi/2, 3 pi], radius theta / (3 pi) * 2 (so at most 2);
    the second arm is the first rotated by pi; [count, 2]."""
    theta = rng.uniform(0.5 * np.pi, 3.0 * np.pi, size=count)
    radius = theta / (3.0 * np.pi) * 2.0
    sign = np.where(rng.integers(0, 2, size=count) == 1, 1.0, -1.0)
    points = sign[:, None] * radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return points + noise * rng.standard_normal((count, 2))


def checkerboard(rng: np.random.Generator, count: int, noise: float = 0.0) -> np.ndarray:
    """Uniform on the 8 dark unit squares (column + row even) of a 4 x 4 board on [-2, 2]^2."""
    del noise
    column = rng.integers(0, 4, size=count)
    row = 2 * rng.integers(0, 2, size=count) + (column % 2)  # row + column is even
    offsets = rng.uniform(0.0, 1.0, size=(count, 2))
    return np.stack([column, row], axis=1) - 2.0 + offsets


DENSITIES = {"moons": moons, "circles": circles, "spirals": spirals, "checkerboard": checkerboard}
DATASETS = tuple(DENSITIES)


def check_dataset(name: str, noise: float) -> None:
    if name not in DENSITIES:
        raise DataError(f"unknown 2-D data.dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if noise < 0:
        raise DataError(f"data.noise must be non-negative, got {noise}")


def sample(name: str, seed_sequence, count: int, noise: float) -> np.ndarray:
    """[count, 2] float32 points of density `name` from rng(seed_sequence)."""
    check_dataset(name, noise)
    if count < 1:
        raise DataError(f"a 2-D sample needs at least 1 point, got {count}")
    return DENSITIES[name](np.random.default_rng(seed_sequence), count, noise).astype(np.float32)


def train_batch(name: str, seed: int, step: int, count: int, noise: float) -> np.ndarray:
    """A fresh training batch [count, 2]: a pure function of (seed, step)."""
    return sample(name, [seed, step], count, noise)


def test_set(name: str, seed: int, count: int, noise: float) -> np.ndarray:
    """The fixed test sample [count, 2]; never equal to a training batch (its own seed salt)."""
    return sample(name, [seed, TEST_SALT, 1], count, noise)
