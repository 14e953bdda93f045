"""2-D mixtures of Gaussians for measuring mode collapse (no download: generated from a seed).

The exact setups of the two papers whose tables we compare against, read from PacGAN's
released configuration (github.com/fjxmlzn/PacGAN, synthetic_data_experiments/
2DRing_GAN&PacGAN/config.py and 2DGrid_GAN&PacGAN/config.py), which reuses VEEGAN's
(Srivastava et al. 2017) benchmark; VEEGAN's own 2-D ring notebook samples the same ring
(8 modes, radius 1, standard deviation 0.01):

  ring  8 equal-weight Gaussians, means (cos(2 pi k / 8), sin(2 pi k / 8)), k = 0..7
        (radius 1), isotropic standard deviation 0.01 (variance 1e-4).
  grid  25 equal-weight Gaussians, means (-4 + 2i, -4 + 2j), i, j = 0..4 (spacing 2),
        isotropic standard deviation 0.05 (variance 0.0025).

Both papers train on a fixed set of 100,000 samples (PacGAN: num_sample = 100000, batch
100) and evaluate on 2,500 generated samples (VEEGAN sec. 5.1; PacGAN num_log_figure_sample).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from aigc_jax.data.text import DataError

DATASETS = ("ring", "grid")


def ring_means(num_modes: int = 8, radius: float = 1.0) -> np.ndarray:
    """[num_modes, 2]: equally spaced on a circle, the first at angle 0."""
    angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_means(side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """[side * side, 2]: a square grid centred on the origin (side 5, spacing 2: -4, -2, 0, 2, 4)."""
    offsets = (np.arange(side) - (side - 1) / 2.0) * spacing
    return np.array(list(itertools.product(offsets, offsets)), dtype=np.float64)


@dataclass(frozen=True)
class Mixture2D:
    means: np.ndarray  # [K, 2]
    std: float  # isotropic standard deviation of every component
    name: str

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(points [count, 2] float32, component labels [count] int32), equal component weights."""
        labels = rng.integers(0, self.num_modes, size=count)
        points = self.means[labels] + self.std * rng.standard_normal((count, 2))
        return points.astype(np.float32), labels.astype(np.int32)


def make_mixture(data_config) -> Mixture2D:
    """From config.data: dataset (ring | grid), std, ring_radius / ring_modes, grid_side / grid_spacing."""
    name = data_config.dataset
    if data_config.std <= 0:
        raise DataError(f"data.std must be positive, got {data_config.std}")
    if name == "ring":
        if data_config.ring_modes < 1:
            raise DataError(f"data.ring_modes must be at least 1, got {data_config.ring_modes}")
        means = ring_means(data_config.ring_modes, data_config.ring_radius)
    elif name == "grid":
        if data_config.grid_side < 1:
            raise DataError(f"data.grid_side must be at least 1, got {data_config.grid_side}")
        means = grid_means(data_config.grid_side, data_config.grid_spacing)
    else:
        raise DataError(f"unknown 2-D data.dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return Mixture2D(means=means, std=float(data_config.std), name=name)


def training_set(mixture: Mixture2D, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed training sample (the papers' 100,000 points), a pure function of the seed."""
    if count < 1:
        raise DataError(f"data.num_train must be at least 1, got {count}")
    return mixture.sample(np.random.default_rng([seed, 0x2D]), count)
