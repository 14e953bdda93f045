import numpy as np
from PIL import Image

from aigc_jax.image_grid import save_image_grid, tile_images


def test_tiles_are_placed_row_major_with_padding():
    images = np.stack([np.full((2, 3, 1), v, np.float32) for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    grid = tile_images(images, columns=2, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
    assert grid[1, 1, 0] == 0.0 and grid[1, 5, 0] == 0.25 and grid[4, 1, 0] == 0.5 and grid[7, 1, 0] == 1.0
    assert grid[7, 5, 0] == 1.0  # the unused sixth cell stays background


def test_png_round_trip(tmp_path):
    images = np.random.default_rng(0).random((4, 5, 5, 1)).astype(np.float32)
    path = save_image_grid(images, str(tmp_path / "g.png"), columns=2, scale=2)
    pixels = np.asarray(Image.open(path), np.float32) / 255.0
    expected = tile_images(images, 2).repeat(2, 0).repeat(2, 1)[..., 0]
    np.testing.assert_allclose(pixels, expected, atol=1 / 255)
