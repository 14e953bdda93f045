import gzip
import struct

import numpy as np
import pytest

from aigc_jax.data import images
from aigc_jax.data.text import DataError


def write_idx(path, array, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def test_digits_are_embedded_and_split_reproducibly():
    a, b = images.load_digits(), images.load_digits()
    assert a.train_images.shape[1:] == (8, 8, 1) and len(a.train_images) + len(a.test_images) == 1797
    assert 0.0 <= a.train_images.min() and a.train_images.max() == 1.0
    np.testing.assert_array_equal(a.test_labels, b.test_labels)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    pixels = np.random.default_rng(0).integers(0, 256, size=(10, 5, 4))
    write_idx(tmp_path / "x.idx", pixels, compress)
    np.testing.assert_array_equal(images.read_idx(str(tmp_path / "x.idx")), pixels)
    write_idx(tmp_path / "y.idx", np.arange(10))
    splits = images.load_idx_images(str(tmp_path / "x.idx"), str(tmp_path / "y.idx"), test_fraction=0.2)
    assert splits.train_images.shape == (8, 5, 4, 1) and splits.test_images.shape == (2, 5, 4, 1)
    all_pixels = np.concatenate([splits.train_images, splits.test_images])[..., 0] * 255
    all_labels = np.concatenate([splits.train_labels, splits.test_labels])
    np.testing.assert_allclose(all_pixels, pixels[all_labels], atol=1e-4)  # labels follow their images


def test_bad_image_files_are_named(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(DataError, match="bad magic number"):
        images.read_idx(str(tmp_path / "bad.idx"))
    write_idx(tmp_path / "short.idx", np.zeros((10, 4, 4)))
    (tmp_path / "short.idx").write_bytes((tmp_path / "short.idx").read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated or corrupt"):
        images.read_idx(str(tmp_path / "short.idx"))
    with pytest.raises(DataError, match="does not exist"):
        images.read_idx(str(tmp_path / "missing.idx"))
    write_idx(tmp_path / "x.idx", np.zeros((10, 4, 4)))
    write_idx(tmp_path / "y.idx", np.zeros(9))
    with pytest.raises(DataError, match="one label per image"):
        images.load_idx_images(str(tmp_path / "x.idx"), str(tmp_path / "y.idx"))


def test_npz_images(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.full((20, 6, 6), 255, np.uint8), labels=np.arange(20))
    splits = images.load_npz_images(str(tmp_path / "d.npz"))
    assert splits.shape == (6, 6, 1) and splits.train_images.max() == 1.0
    np.savez(tmp_path / "e.npz", pictures=np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match="no 'images' array"):
        images.load_npz_images(str(tmp_path / "e.npz"))


def test_image_batches_are_a_pure_function_of_seed_and_step():
    x = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1)
    y = np.arange(100)
    a = images.image_batch(x, y, 0, 5, 16)
    b = images.image_batch(x, y, 0, 5, 16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[0][:, 0, 0, 0], a[1])


def test_shapes_world_is_an_image_set_labelled_by_its_main_shape(tmp_path, monkeypatch):
    import ml_collections
    from aigc_jax.data import shapes
    monkeypatch.setenv("HOME", str(tmp_path))  # the render cache goes under the temporary home
    config = ml_collections.ConfigDict(dict(dataset="shapes", path="", image_size=16, num_train=24, num_test=8,
                                            min_objects=1, max_objects=2))
    splits = images.load_image_splits(config)
    assert splits.train_images.shape == (24, 16, 16, 3) and splits.test_images.shape == (8, 16, 16, 3)
    assert 0.0 <= splits.train_images.min() and splits.train_images.max() <= 1.0
    world = shapes.ShapesWorld(image_size=16, min_objects=1, max_objects=2)
    _, factors = shapes.make_dataset(world, images.SHAPES_DATA_SEED, 24, "train", progress=False)
    np.testing.assert_array_equal(splits.train_labels, factors["shape"][np.arange(24), shapes.main_object(factors)])
    assert not np.array_equal(splits.train_images[:8], splits.test_images)  # different streams
