"""Generated seq2seq tasks and the user TSV: correct targets, padding, held-out splits, errors."""
import numpy as np
import pytest

from aigc_jax.config import load_config
from aigc_jax.families.seq2seq import data
from aigc_jax.data.text import DataError
from aigc_jax.data.tokenizers import UnknownCharactersError
from tests.conftest import config_path


def spec_for(variant, *overrides):
    config = load_config(config_path(f"seq2seq.py:{variant}"), list(overrides))
    return data.SyntheticSpec.from_config(config.data)


def decode_batch(vocab, batch):
    sources = [vocab.decode(row) for row in batch["source"]]
    targets = [vocab.decode(row) for row in batch["targets"]]
    return sources, targets


@pytest.mark.parametrize("task", ["reverse", "sort", "add"])
def test_targets_are_right_and_batches_are_padded_and_shifted(task):
    spec = spec_for(task)
    vocab = spec.vocab()
    batch = data.synthetic_batch(spec, vocab, seed=0, split="train", step=3, batch_size=64)
    sources, targets = decode_batch(vocab, batch)
    for source, target in zip(sources, targets):
        if task == "reverse":
            assert target == source[::-1]
        elif task == "sort":
            assert target == "".join(sorted(source))
        else:
            a, b = source.rstrip("=").split("+")
            assert source.endswith("=") and int(target) == int(a) + int(b)
    lengths = np.sum(batch["source"] != data.PAD, axis=1)
    assert len(set(lengths.tolist())) > 1  # variable lengths
    for row, length in zip(batch["source"], lengths):
        assert np.all(row[:length] >= data.NUM_SPECIAL) and np.all(row[length:] == data.PAD)
    # inputs = BOS + target; targets = target + EOS; PAD after.
    np.testing.assert_array_equal(batch["inputs"][:, 0], data.BOS)
    target_lengths = np.argmax(batch["targets"] == data.EOS, axis=1)
    for inp, tgt, n in zip(batch["inputs"], batch["targets"], target_lengths):
        np.testing.assert_array_equal(inp[1:n + 1], tgt[:n])
        assert np.all(tgt[n + 1:] == data.PAD) and np.all(inp[n + 1:] == data.PAD)


def test_batches_are_a_pure_function_of_seed_and_step():
    spec = spec_for("reverse")
    vocab = spec.vocab()
    first = data.synthetic_batch(spec, vocab, 0, "train", 7, 32)
    again = data.synthetic_batch(spec, vocab, 0, "train", 7, 32)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["source"], data.synthetic_batch(spec, vocab, 0, "train", 8, 32)["source"])
    assert not np.array_equal(first["source"], data.synthetic_batch(spec, vocab, 1, "train", 7, 32)["source"])


def test_reversal_test_split_is_never_trained_on():
    spec = spec_for("reverse", "data.heldout_lengths=10,13", "data.test_fraction=0.2")
    vocab = spec.vocab()
    test = data.synthetic_batch(spec, vocab, 0, "test", 0, 500)
    test_sources = set(decode_batch(vocab, test)[0])
    test_lengths = {len(s) for s in test_sources}
    assert test_lengths == set(range(8, 17))  # lengths 8..16, the held-out ones included
    train_sources = set()
    for step in range(40):
        train_sources |= set(decode_batch(vocab, data.synthetic_batch(spec, vocab, 0, "train", step, 128))[0])
    assert not train_sources & test_sources
    train_lengths = {len(s) for s in train_sources}
    assert 10 not in train_lengths and 13 not in train_lengths and {1, 9, 16} <= train_lengths
    # Short sequences are few, so the test bucket covers some of them too: the split is by content.
    short = [s for s in train_sources if len(s) == 1]
    assert 0 < len(short) < 26
    flags = data.unseen_length_flags(spec, test["source"])
    assert np.all(np.isin(np.sum(test["source"] != data.PAD, 1)[flags == 1], (10, 13)))
    assert 0 < flags.mean() < 1


def test_addition_test_pairs_are_three_digit_and_held_out():
    spec = spec_for("add")
    vocab = spec.vocab()
    test_pairs = {tuple(s.rstrip("=").split("+")) for s in decode_batch(vocab, data.synthetic_batch(
        spec, vocab, 0, "test", 0, 400))[0]}
    assert all(len(a) == 3 and len(b) == 3 for a, b in test_pairs)
    train_pairs = set()
    for step in range(60):
        sources = decode_batch(vocab, data.synthetic_batch(spec, vocab, 0, "train", step, 128))[0]
        train_pairs |= {tuple(s.rstrip("=").split("+")) for s in sources}
    assert not train_pairs & test_pairs
    assert {len(a) for a, _ in train_pairs} == {1, 2, 3}
    counts = np.bincount([len(a) for a, _ in train_pairs], minlength=4)[1:]
    assert counts[0] < counts[1] < counts[2]  # digit counts uniform; 10 one-digit numbers limit distinct pairs
    # 'numbers' draws operands uniformly from 0..999, so nine in ten have three digits.
    spec = spec_for("add", "data.add_sampling=numbers")
    sources = decode_batch(vocab, data.synthetic_batch(spec, vocab, 0, "train", 0, 2000))[0]
    three = np.mean([len(part) == 3 for s in sources for part in s.rstrip("=").split("+")])
    assert three == pytest.approx(0.9, abs=0.02)
    # The bucket is a property of the pair: the hash rule puts every test pair in it.
    a, b = np.array([[int(x), int(y)] for x, y in test_pairs]).T
    assert np.all(data.in_test_bucket(data._pair_hash(a, b), spec.test_fraction))


def test_vocab_round_trip_and_input_errors(tmp_path):
    spec = spec_for("add")
    vocab = spec.vocab()
    data.save_vocab(vocab, str(tmp_path))
    loaded = data.load_vocab(str(tmp_path))
    assert loaded.to_json() == vocab.to_json() and loaded.vocab_size == 3 + 12
    source = data.encode_source(loaded, data.prepare_source("add", "12+345"))
    assert loaded.decode(source[0]) == "12+345="
    with pytest.raises(UnknownCharactersError, match="'x'"):
        data.encode_source(loaded, "12x3")
    with pytest.raises(ValueError, match="at most 8"):
        data.encode_source(loaded, "1234+5678=")
    with pytest.raises(FileNotFoundError, match="no vocabulary"):
        data.load_vocab(str(tmp_path / "missing"))


def test_tsv_pairs_split_and_encode(tmp_path):
    path = tmp_path / "pairs.tsv"
    lines = [f"{w}\t{w.upper()}" for w in ("cat", "dog", "bird", "fish", "owl", "cow", "hen", "yak", "emu", "ant")]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    pairs = data.read_tsv(str(path), 0.2)
    assert pairs.train_sources[:2] == ["cat", "dog"] and pairs.test_sources == ["emu", "ant"]
    vocab = data.tsv_vocab(pairs)
    assert (vocab.max_source_length, vocab.max_target_length) == (4, 4)
    batch = data.tsv_train_batch(pairs, vocab, 0, 5, 16)
    sources, targets = decode_batch(vocab, batch)
    assert all(t == s.upper() and s in pairs.train_sources for s, t in zip(sources, targets))


@pytest.mark.parametrize("content, message", [
    ("a\tb\nno tab here\n", r"pairs.tsv:2: expected source<TAB>target \(one tab\), found 0 tabs"),
    ("a\tb\tc\nd\te\n", r"pairs.tsv:1: .*found 2 tabs"),
    ("a\tb\n\tx\n", r"pairs.tsv:2: empty source"),
    ("a\tb\n", r"holds 1 example"),
])
def test_tsv_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "pairs.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        data.read_tsv(str(path), 0.1)


def test_missing_or_bad_data_settings_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.read_tsv(str(tmp_path / "none.tsv"), 0.1)
    with pytest.raises(DataError, match="needs data.path"):
        data.read_tsv("", 0.1)
    with pytest.raises(DataError, match="unknown data.task 'copy'"):
        spec_for("reverse", "data.task=copy")
    with pytest.raises(DataError, match="heldout_lengths"):
        spec_for("reverse", "data.heldout_lengths=40")
    with pytest.raises(DataError, match="test_digits"):
        spec_for("add", "data.test_digits=4")
