"""The 2-D flow's figure: its density as a heat map beside samples and the data."""
from __future__ import annotations

import os

import numpy as np


def density_grid(extent: float, resolution: int) -> tuple[np.ndarray, float]:
    """Cell centres [resolution^2, 2] of a square grid on [-extent, extent]^2, and the cell area."""
    width = 2.0 * extent / resolution
    centres = -extent + width * (np.arange(resolution) + 0.5)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32), width * width


def save_density_figure(density: np.ndarray, samples: np.ndarray, data: np.ndarray, extent: float,
                        path: str, title: str) -> None:
    """A heat map of p(x) [R, R] (rows = y) beside samples of the flow over the data."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    left.imshow(density, origin="lower", extent=(-extent, extent, -extent, extent), cmap="viridis")
    left.set_title(f"p(x), {title}")
    right.scatter(data[:, 0], data[:, 1], s=1, alpha=0.3, color="grey", label="data")
    right.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.5, color="crimson", label="flow samples")
    right.set_xlim(-extent, extent)
    right.set_ylim(-extent, extent)
    right.legend(loc="upper right", markerscale=6, fontsize=8)
    for ax in (left, right):
        ax.set_aspect("equal")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
