"""Prepared token datasets (experiments.prepare_data, --config.data.prepared): lossless shards with
an index, bad inputs named and skipped, a preparation that resumes after a kill, windows that are a
pure function of (seed, step) read only where asked, and training that matches the in-memory path."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aigc_jax import families, parallel
from aigc_jax.config import apply_overrides
from aigc_jax.data import prepare, prepared
from aigc_jax.data.text import DataError
from tests.conftest import REPO

TEXT = "First line of a small corpus, with ünïcödé and emoji 🙂.\n" + "".join(
    f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(400))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    (root / "a.txt").write_text(TEXT, encoding="utf-8")
    (root / "sub").mkdir()
    records = [json.dumps({"text": f"record {i} says hello"}) for i in range(20)]
    (root / "sub" / "b.jsonl").write_text("\n".join(records + ["not json", json.dumps({"title": "no text"})]) + "\n")
    (root / "empty.txt").write_text("")
    (root / "blob.bin").write_bytes(b"\x7fELF\x00\x00\x01" * 100)
    (root / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    return str(root)


def prepare_quietly(inputs, out, **kwargs):
    messages = []
    index = prepare.prepare([inputs], str(out), log=messages.append, workers=1, **kwargs)
    return index, messages


def shard_tokens(out, index, number):
    return np.fromfile(os.path.join(out, index["shards"][number]["file"]), dtype=index["dtype"])


def test_prepare_is_lossless_names_bad_inputs_and_indexes_every_file(inputs, tmp_path):
    index, messages = prepare_quietly(inputs, tmp_path, tokenizer="bpe", vocab_size=300)
    skipped = {os.path.basename(item["path"]): item["reason"] for item in index["skipped"]}
    assert skipped == {"blob.bin": "binary (NUL bytes)", "empty.txt": "empty",
                       "latin1.txt": "not UTF-8 (invalid continuation byte at byte 3)"}
    assert any("skipping" in m and "blob.bin" in m for m in messages)
    assert "3 input file(s) skipped, 2 JSONL record(s) without text skipped" in messages[-1]
    assert index["dtype"] == "<u2" and prepare.token_dtype(70000) == np.dtype("<u4")
    tokenizer = prepared.PreparedDataset(str(tmp_path)).tokenizer
    decoded = tokenizer.decode(np.concatenate([shard_tokens(tmp_path, index, i) for i in range(len(index["shards"]))]))
    records = "".join(f"record {i} says hello\n\n" for i in range(20))
    assert decoded == TEXT + records  # sorted inputs: a.txt, then sub/b.jsonl's texts
    files = {os.path.basename(f["path"]): f for f in index["files"]}
    assert files["a.txt"]["tokens"] == len(tokenizer.encode(TEXT)) and files["b.jsonl"]["skipped_records"] == 2
    assert index["train_tokens"] + index["validation_tokens"] == sum(f["tokens"] for f in index["files"])


def test_a_killed_preparation_keeps_finished_shards_and_redoes_the_rest(inputs, tmp_path):
    whole, kill = tmp_path / "whole", tmp_path / "killed"
    reference, _ = prepare_quietly(inputs, whole, tokenizer="byte", unit_bytes=2048)
    assert len(reference["shards"]) >= 4
    prepare_quietly(inputs, kill, tokenizer="byte", unit_bytes=2048)
    # The states a kill can leave: no index yet, a half-written temporary, a shard without its record
    # (killed between the two), a finished shard changed since (its checksum no longer matches).
    os.remove(kill / prepare.INDEX_FILE)
    binary0, record0 = prepare.shard_paths(str(kill), 0)
    shutil.copy(binary0, binary0 + ".tmp")
    os.remove(prepare.shard_paths(str(kill), 1)[1])
    with open(prepare.shard_paths(str(kill), 2)[0], "r+b") as f:
        f.write(b"zz")
    mtime = os.stat(prepare.shard_paths(str(kill), 3)[0]).st_mtime_ns
    again, messages = prepare_quietly(inputs, kill, tokenizer="byte", unit_bytes=2048)
    assert f"({len(reference['shards']) - 2} kept from an earlier run)" in messages[-1]
    assert os.stat(prepare.shard_paths(str(kill), 3)[0]).st_mtime_ns == mtime  # kept, not rewritten
    assert again["shards"] == reference["shards"] and again["files"] == reference["files"]
    (tmp_path / "inputs_changed").mkdir()
    shutil.copy(os.path.join(inputs, "a.txt"), tmp_path / "inputs_changed" / "a.txt")
    with pytest.raises(DataError, match="holds a preparation of other inputs"):
        prepare.prepare([str(tmp_path / "inputs_changed")], str(kill), tokenizer="byte", unit_bytes=2048,
                        log=lambda m: None)


@pytest.mark.slow
def test_a_preparation_killed_by_sigkill_finishes_on_the_same_command(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "big.txt").write_text(TEXT * 120, encoding="utf-8")  # ~3 MB: three 1 MB units of BPE work
    command = [sys.executable, "-m", "experiments.prepare_data", f"--input={source}", "--tokenizer=bpe",
               "--vocab_size=400", "--unit_mb=1", "--workers=1"]
    child = subprocess.Popen(command + [f"--output={tmp_path / 'out'}"], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    first_record = prepare.shard_paths(str(tmp_path / "out"), 0)[1]
    while not os.path.exists(first_record) and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not os.path.exists(tmp_path / "out" / prepare.INDEX_FILE)
    subprocess.run(command + [f"--output={tmp_path / 'out'}"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(command + [f"--output={tmp_path / 'ref'}", f"--tokenizer_from={tmp_path / 'out'}"], cwd=REPO,
                   check=True, capture_output=True)
    finished = json.load(open(tmp_path / "out" / prepare.INDEX_FILE))
    assert finished["shards"] == json.load(open(tmp_path / "ref" / prepare.INDEX_FILE))["shards"]


@pytest.fixture(scope="module")
def many_shards(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    index, _ = prepare_quietly(inputs, out, tokenizer="byte", unit_bytes=4096, val_fraction=0.2)
    return str(out), index


def test_windows_are_a_pure_function_of_seed_and_step_inside_one_shards_training_part(many_shards):
    out, index = many_shards
    dataset = prepared.PreparedDataset(out)
    starts = prepared.WindowStarts(dataset.segments("train"), 33, "training", out)
    batch = prepared.training_windows(dataset, starts, seed=7, step=3, batch_size=64)
    again = np.asarray(prepared.training_windows(dataset, starts, seed=7, step=3, batch_size=64))
    rows = np.asarray(batch)
    assert rows.shape == (64, 33) and np.array_equal(rows, again)
    assert not np.array_equal(rows, np.asarray(prepared.training_windows(dataset, starts, seed=7, step=4,
                                                                         batch_size=64)))
    for (shard, start), row in zip(batch.places, rows):
        assert 0 <= start <= index["shards"][shard]["train_tokens"] - 33  # never into validation or the next shard
        assert np.array_equal(row, shard_tokens(out, index, shard)[start:start + 33])
    assert len(np.unique(batch.places[:, 0])) > 1  # drawn over several shards


def test_window_rows_read_only_the_rows_asked_for(many_shards, monkeypatch):
    out, _ = many_shards
    dataset = prepared.PreparedDataset(out)
    starts = prepared.WindowStarts(dataset.segments("train"), 17, "training", out)
    lazy = prepared.training_windows(dataset, starts, seed=0, step=0, batch_size=8).reshape(2, 4, 17)
    full = np.asarray(lazy)
    reads = []
    original = dataset.read
    monkeypatch.setattr(dataset, "read", lambda *args: reads.append(args) or original(*args))
    part = lazy[(slice(None), slice(1, 3), slice(None))]  # what a process holding rows 1-2 of each micro-batch asks
    assert np.array_equal(part, full[:, 1:3]) and len(reads) == 4
    stacked = parallel.stack_leaves([lazy, lazy])
    assert stacked.shape == (2, 2, 4, 17) and np.array_equal(stacked[1, 0], full[0])
    mesh = parallel.make_mesh()
    on_device = parallel.put_batch(lazy, parallel.batch_sharding(lazy, mesh, axis=1))
    assert isinstance(on_device, jax.Array) and np.array_equal(np.asarray(on_device), full)


def test_damaged_or_unfinished_datasets_are_errors_naming_the_shard(many_shards, tmp_path):
    out, index = many_shards
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / index["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"shard '{shard}' fails its checksum"):
        prepared.PreparedDataset(str(copy))
    prepared.PreparedDataset(str(copy), verify=False)  # data.verify_shards=False skips the hashing
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(DataError, match="has .* bytes; its index says"):
        prepared.PreparedDataset(str(copy), verify=False)
    os.remove(copy / prepare.INDEX_FILE)
    with pytest.raises(DataError, match="not a finished prepared dataset"):
        prepared.PreparedDataset(str(copy))


def lm_config(base, **overrides):
    return apply_overrides(base.copy_and_resolve_references(), [f"{k}={v}" for k, v in overrides.items()])


def test_training_from_a_prepared_dataset_matches_the_in_memory_path(tiny_lm_config, small_text_file, tmp_path):
    """UTF-8 bytes of one file, split 90/10 both ways: the two paths draw the very same windows."""
    prepare.prepare([small_text_file], str(tmp_path / "data"), tokenizer="byte", val_fraction=0.1,
                    log=lambda m: None, workers=1)
    in_memory = families.train(lm_config(tiny_lm_config, **{"data.tokenizer": "byte"}), str(tmp_path / "a"))
    from_shards = families.train(lm_config(tiny_lm_config, **{"data.tokenizer": "byte", "data.path": "",
                                                              "data.prepared": str(tmp_path / "data")}),
                                 str(tmp_path / "b"))
    assert from_shards["last_train"]["loss"] == in_memory["last_train"]["loss"]
    drop_time = lambda result: {k: v for k, v in result.items() if k != "elapsed_seconds"}  # noqa: E731
    assert drop_time(from_shards["final_eval"]) == drop_time(in_memory["final_eval"])


def test_a_run_with_another_tokenizer_or_too_little_data_is_refused(tiny_lm_config, inputs, many_shards, tmp_path):
    out, _ = many_shards
    with pytest.raises(DataError, match="tokenized with byte .* set --config.data.tokenizer=byte"):
        families.train(lm_config(tiny_lm_config, **{"data.prepared": out}), str(tmp_path / "char"))
    # a workdir whose BPE was learnt elsewhere: same kind and size, other merges, so other token ids
    bpe_data = str(tmp_path / "bpe_data")
    prepare_quietly(inputs, bpe_data, tokenizer="bpe", vocab_size=300)
    bpe = {"data.tokenizer": "bpe", "data.vocab_size": 300}
    families.train(lm_config(tiny_lm_config, **bpe, **{"train.num_steps": 4}), str(tmp_path / "run"))
    with pytest.raises(DataError, match="the run's tokenizer .* differs"):
        families.train(lm_config(tiny_lm_config, **bpe, **{"data.prepared": bpe_data, "train.num_steps": 6}),
                       str(tmp_path / "run"))
    with pytest.raises(DataError, match="the tokenizer of train.init_from=.* differs"):  # fine-tuning from it
        families.train(lm_config(tiny_lm_config, **bpe, **{"data.prepared": bpe_data, "train.init_from":
                                                           str(tmp_path / "run")}), str(tmp_path / "tuned"))
    with pytest.raises(DataError, match="validation split .* has no run of 2049 tokens"):
        families.train(lm_config(tiny_lm_config, **{"data.prepared": out, "data.tokenizer": "byte",
                                                    "model.context_length": 2048}), str(tmp_path / "long"))
