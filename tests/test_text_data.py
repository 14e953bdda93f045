import os

import numpy as np
import pytest

from aigc_jax.data import text


def test_training_windows_are_a_pure_function_of_seed_and_step():
    tokens = np.arange(1000, dtype=np.int32)
    a = text.training_windows(tokens, seed=3, step=17, batch_size=8, context=32)
    b = text.training_windows(tokens, seed=3, step=17, batch_size=8, context=32)
    c = text.training_windows(tokens, seed=3, step=18, batch_size=8, context=32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (8, 33)
    np.testing.assert_array_equal(np.diff(a, axis=1), 1)  # contiguous windows
    assert a.max() < 1000


def test_evaluation_windows_cover_the_split_evenly():
    tokens = np.arange(500, dtype=np.int32)
    w = text.evaluation_windows(tokens, num_windows=5, context=99)
    assert w.shape == (5, 100)
    assert w[0, 0] == 0 and w[-1, -1] == 499


def test_zero_windows_means_every_non_overlapping_window():
    tokens = np.arange(200, dtype=np.int32)
    w = text.evaluation_windows(tokens, num_windows=0, context=9)
    assert w.shape == (22, 10)  # starts 0, 9, ..., 189: the last window ends at token 199
    np.testing.assert_array_equal(w[:, 0], np.arange(0, 191, 9))
    np.testing.assert_array_equal(w[1:, 0], w[:-1, -1])  # each window's last target starts the next


def test_text_file_split_is_first_90_last_10(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a" * 90 + "b" * 10)
    splits = text.load_text_file(str(path), 0.1)
    assert splits.train == "a" * 90 and splits.validation == "b" * 10


def test_stdlib_corpus_is_deterministic_and_split_by_file():
    files = text.stdlib_source_files()
    assert files == sorted(files, key=lambda p: p.name) and len(files) > 50
    val = [f.name for f in files if text.is_validation_file(f.name, 0.1)]
    assert 0 < len(val) < len(files) / 4
    splits = text.load_stdlib_corpus(0.1)
    assert "def " in splits.train and "def " in splits.validation
    first_val = next(f for f in files if f.name in val)
    assert first_val.read_text(encoding="utf-8", errors="replace")[:200] in splits.validation


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(text.DataError, match="does not exist"):
        text.load_text_file(str(tmp_path / "missing.txt"))
    with pytest.raises(text.DataError, match="is a directory"):
        text.load_text_file(str(tmp_path))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(text.DataError, match="is empty"):
        text.load_text_file(str(empty))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(text.DataError, match="not UTF-8"):
        text.load_text_file(str(binary))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_path(tmp_path):
    path = tmp_path / "locked.txt"
    path.write_text("abc")
    path.chmod(0)
    with pytest.raises(text.DataError, match="not readable"):
        text.load_text_file(str(path))


def test_corpus_shorter_than_context():
    with pytest.raises(text.DataError, match="fewer than context \\+ 1 = 65"):
        text.check_length(np.zeros(40, np.int32), 64, "validation")
