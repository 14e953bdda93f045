"""Differentiable augmentation (aigc_jax/families/gan/diffaugment.py) against its definitions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.gan import diffaugment as da


def test_translation_shifts_each_image_by_a_whole_pixel_offset_within_an_eighth():
    x = jax.random.uniform(jax.random.key(0), (16, 16, 16, 1), minval=0.5, maxval=1.0)  # no zeros of its own
    out = np.asarray(da.translation(jax.random.key(1), x))
    shifts = set()
    for n in range(16):
        # find the offset that maps the input onto the output where the output is covered
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.allclose(out[n], np.asarray(shifted(x[n], dy, dx)))]
        assert len(match) == 1, n
        shifts.add(match[0])
    assert len(shifts) > 3  # drawn per sample


def shifted(image, dy, dx):
    """image moved down by dy and right by dx, zeros where nothing moved in."""
    h, w, _ = image.shape
    out = jnp.zeros_like(image)
    src = image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out.at[max(dy, 0):max(dy, 0) + src.shape[0], max(dx, 0):max(dx, 0) + src.shape[1]].set(src)


def test_cutout_zeroes_one_square_of_half_the_size_per_image():
    x = jnp.ones((8, 16, 16, 3))
    out = np.asarray(da.cutout(jax.random.key(2), x))
    for n in range(8):
        zero_rows, zero_cols = np.nonzero(out[n, :, :, 0] == 0)
        assert len(zero_rows) == 64 and np.all(out[n][out[n, :, :, 0] == 0] == 0)
        assert zero_rows.max() - zero_rows.min() == 7 and zero_cols.max() - zero_cols.min() == 7


def test_augmentation_is_differentiable_and_the_empty_policy_is_the_identity():
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 3))
    policy = da.parse_policy("color, translation,cutout")
    grad = jax.grad(lambda images: jnp.sum(da.augment(jax.random.key(4), images, policy) ** 2))(x)
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).sum() > 0
    np.testing.assert_array_equal(np.asarray(da.augment(jax.random.key(4), x, ())), np.asarray(x))
    with pytest.raises(ValueError, match="unknown augmentation rotate"):
        da.parse_policy("translation,rotate")
