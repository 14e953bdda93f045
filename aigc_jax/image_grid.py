"""Saving a batch of images as one PNG grid (sample grids, reconstructions, interpolations)."""
from __future__ import annotations

import math
import os

import numpy as np


def tile_images(images: np.ndarray, columns: int = 0, padding: int = 1) -> np.ndarray:
    """[N, H, W, C] in [0, 1] -> one [rows*(H+p)+p, columns*(W+p)+p, C] array, row-major order."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim == 3:
        images = images[..., None]
    count, height, width, channels = images.shape
    columns = columns or int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / columns))
    grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                   np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


def save_image_grid(images: np.ndarray, path: str, columns: int = 0, scale: int = 1) -> str:
    """Writes the tiled grid as an 8-bit PNG, each pixel repeated `scale` times per axis."""
    from PIL import Image
    grid = tile_images(images, columns)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    pixels = (grid * 255.0 + 0.5).astype(np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
    return path
