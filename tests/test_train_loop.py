"""The one training loop, end to end on a tiny LM: logs, checkpoints, resume and bad input."""
import glob
import json
import os
import signal
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aigc_jax.config import ConfigError, apply_overrides
from aigc_jax.data.text import DataError
from aigc_jax import families
from aigc_jax.train import loop
from aigc_jax.train.checkpoints import CheckpointError, Checkpointer
from aigc_jax.train.metrics import read_metrics
from aigc_jax.train.tensorboard import masked_crc32c
from tests.conftest import restore_newest, REPO, config_path


def quiet(*_args):
    pass


def read_tensorboard_records(path):
    records = []
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        payload = data[offset + 12:offset + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
        assert length_crc == masked_crc32c(data[offset:offset + 8])
        assert payload_crc == masked_crc32c(payload)
        records.append(payload)
        offset += 16 + length
    return records


def test_run_writes_logs_config_checkpoints_and_learns(tiny_lm_config, tmp_path):
    config = apply_overrides(tiny_lm_config, ["train.num_steps=40", "train.eval_every=20"])
    workdir = str(tmp_path / "run")
    summary = families.train(config, workdir, echo=quiet)
    train_records = read_metrics(workdir, "train")
    eval_records = read_metrics(workdir, "eval")
    assert [r["step"] for r in eval_records] == [0, 20, 40]
    assert eval_records[-1]["loss"] < eval_records[0]["loss"] - 0.2
    assert [r["step"] for r in train_records] == list(range(5, 41, 5))
    for key in ("loss", "learning_rate", "grad_norm", "param_norm", "update_norm", "tokens_seen",
                "tokens_per_second"):
        assert all(np.isfinite(r[key]) for r in train_records), key
    assert train_records[-1]["tokens_seen"] == 40 * 4 * 16
    ev = eval_records[-1]
    assert ev["bits_per_token"] == pytest.approx(ev["loss"] / np.log(2))
    assert ev["perplexity"] == pytest.approx(np.exp(ev["loss"]))
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["num_layers"] == 2
    assert os.path.exists(os.path.join(workdir, "tokenizer.json"))
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [20, 30, 40]
    assert summary["final_step"] == 40 and summary["final_eval"]["loss"] == ev["loss"]
    phases = summary["phase_seconds"]  # disjoint parts of the time since the process started
    assert set(phases) == {"startup", "compile_wait", "steps", "eval", "checkpoint"}
    assert all(v >= 0 for v in phases.values()) and phases["eval"] > 0 and phases["steps"] > 0
    from aigc_jax.train.phases import process_age_seconds
    assert sum(phases.values()) <= process_age_seconds()
    events = glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    assert len(events) == 1
    records = read_tensorboard_records(events[0])
    assert b"brain.Event:2" in records[0]
    assert any(b"train/loss" in r for r in records) and any(b"eval/loss" in r for r in records)


def test_changed_model_field_is_refused_and_nothing_is_lost(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(tiny_lm_config, workdir, echo=quiet)
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    saved_config = open(os.path.join(workdir, "config.json")).read()
    changed = apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["model.num_layers=3"])
    with pytest.raises(ConfigError, match="model.num_layers=2.*model.num_layers=3"):
        families.train(changed, workdir, echo=quiet)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
    assert open(os.path.join(workdir, "config.json")).read() == saved_config


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["train.num_steps=10"]),
               workdir, echo=quiet)
    exploding = apply_overrides(tiny_lm_config.copy_and_resolve_references(),
                                ["optimizer.learning_rate=1e38", "optimizer.min_learning_rate=1e37"])
    with pytest.raises(loop.TrainingDiverged, match=r"\w+ is (nan|inf) at step 1[1-9].*step 10\) is intact"):
        families.train(exploding, workdir, echo=quiet)
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [10]
    state, step = restore_newest(tiny_lm_config, workdir)
    assert step == 10 and all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state.params))


def test_checkpoint_of_a_different_optimizer_is_named_not_discarded(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(tiny_lm_config, workdir, echo=quiet)
    unclipped = apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["optimizer.grad_clip=0.0"])
    with pytest.raises(CheckpointError, match="step 20 .* does not fit this config: .*opt_state"):
        families.train(unclipped, workdir, echo=quiet)
    assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [10, 20]
    assert not os.path.exists(os.path.join(workdir, "corrupt"))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny_lm_config, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    families.train(tiny_lm_config, workdir, echo=quiet)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "20", "**", "d", "*"), recursive=True):
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(b"\x00garbage" * (size // 8 + 1))
    messages = []
    families.train(tiny_lm_config, workdir, echo=messages.append)
    assert "checkpoint at step 20 is corrupt" in capsys.readouterr().out
    assert "resumed from the checkpoint at step 10" in messages
    assert os.path.isdir(os.path.join(workdir, "corrupt", "20"))  # kept for inspection, not deleted
    assert 20 in [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))]


def test_bad_data_fails_before_anything_is_written(tiny_lm_config, tmp_path):
    cases = {
        "missing": (str(tmp_path / "nope.txt"), "does not exist"),
        "empty": ("", "is empty"),
        "short": ("abc\n" * 20, "fewer than context"),
    }
    for name, (content, message) in cases.items():
        if name == "missing":
            path = content
        else:
            path = str(tmp_path / f"{name}.txt")
            open(path, "w").write(content)
        config = apply_overrides(tiny_lm_config.copy_and_resolve_references(), [f"data.path={path}"])
        workdir = tmp_path / f"run_{name}"
        with pytest.raises(DataError, match=message):
            families.train(config, str(workdir), echo=quiet)
        assert not (workdir / "checkpoints").exists()


def test_sigkill_then_resume_is_bit_identical(small_text_file, tmp_path):
    """A run killed with SIGKILL mid-training and resumed ends with the same parameters."""
    overrides = [f"--config.data.path={small_text_file}", "--config.train.progress_bar=false",
                 "--config.train.num_steps=400", "--config.train.checkpoint_every=50",
                 "--config.train.eval_every=200", "--config.train.log_every=50"]
    command = [sys.executable, "-m", "experiments.train", f"--config={config_path('gpt_char.py:tiny')}"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(command + [f"--workdir={killed}"] + overrides, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        steps = [s for s in os.listdir(killed / "checkpoints")] if (killed / "checkpoints").exists() else []
        if any(s.isdigit() and int(s) >= 100 for s in steps):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps = sorted(int(s) for s in os.listdir(killed / "checkpoints") if s.isdigit())
    assert steps and steps[-1] < 400, f"the run was not killed mid-training: {steps}"
    subprocess.run(command + [f"--workdir={killed}"] + overrides, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    straight = tmp_path / "straight"
    subprocess.run(command + [f"--workdir={straight}"] + overrides, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from aigc_jax.config import load_config
    config = load_config(config_path("gpt_char.py:tiny"), [o[len("--config."):] for o in overrides])
    a, step_a = restore_newest(config, str(killed))
    b, step_b = restore_newest(config, str(straight))
    assert step_a == step_b == 400
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_stop_at_eval_loss_ends_at_the_first_evaluation_that_reaches_it(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    reference = families.train(apply_overrides(tiny_lm_config, ["train.num_steps=30"]), str(tmp_path / "ref"), echo=quiet)
    losses = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "ref"), "eval")}
    target = (losses[10] + losses[20]) / 2  # reached at step 20, not at 10
    assert losses[20] < target < losses[10]
    config = apply_overrides(tiny_lm_config, ["train.num_steps=30", f"train.stop_at_eval_loss={target}",
                                              "eval.at_start=False"])  # as the speedrun: no step-0 evaluation
    summary = families.train(config, workdir, echo=quiet)
    evals = read_metrics(workdir, "eval")
    assert [r["step"] for r in evals] == [10, 20] and summary["final_step"] == 20
    assert "initial_eval" not in summary and 0 in [r["step"] for r in read_metrics(str(tmp_path / "ref"), "eval")]
    reached = summary["target_reached"]
    assert reached["step"] == 20 and reached["eval_loss"] == evals[-1]["loss"] <= target
    assert 0 < evals[0]["elapsed_seconds"] < reached["elapsed_seconds"] == evals[-1]["elapsed_seconds"]
    assert 20 in Checkpointer(os.path.join(workdir, "checkpoints")).steps()


def test_several_steps_per_compiled_call_train_the_same_steps(tiny_lm_config, tmp_path):
    one = families.train(tiny_lm_config, str(tmp_path / "one"), echo=quiet)
    five = families.train(apply_overrides(tiny_lm_config, ["train.steps_per_call=5"]), str(tmp_path / "five"), echo=quiet)
    a, b = read_metrics(str(tmp_path / "one"), "train"), read_metrics(str(tmp_path / "five"), "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [5, 10, 15, 20]
    for ra, rb in zip(a, b):  # the same steps, only compiled inside a lax.scan
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5) and rb["tokens_seen"] == ra["tokens_seen"]
    assert five["final_eval"]["loss"] == pytest.approx(one["final_eval"]["loss"], abs=1e-5)
    with pytest.raises(ConfigError, match="steps_per_call=3 must divide train.num_steps"):
        families.train(apply_overrides(tiny_lm_config, ["train.steps_per_call=3"]), str(tmp_path / "bad"), echo=quiet)


def test_a_resumed_run_tells_tensorboard_to_drop_the_steps_logged_past_its_checkpoint(tmp_path):
    from aigc_jax.train.tensorboard import EventWriter
    fresh, resumed = EventWriter(str(tmp_path / "a")), EventWriter(str(tmp_path / "b"), resume_step=20)
    fresh.close(), resumed.close()
    assert len(read_tensorboard_records(fresh.path)) == 1  # the version event only
    start = read_tensorboard_records(resumed.path)[1]
    # Event{step=2: 21, session_log=6: SessionLog{status=1: START=1}}
    assert start[9:11] == bytes([2 << 3, 21]) and start[11:] == bytes([6 << 3 | 2, 2, 1 << 3, 1])
