"""Issue 17's defects, each reproduced: what a rerun, a torn log line, damaged bytes or a huge value
did to a run's files, and the config values that were accepted and lost the trained model."""
import errno
import json
import math
import os

import pytest

from aigc_jax import families
from aigc_jax.config import ConfigError, apply_overrides, load_saved_config
from aigc_jax.train.metrics import METRICS_FILE, MetricsWriter, read_metrics
from aigc_jax.train.tensorboard import as_float32, encode_scalar_event


def quiet(*_args):
    pass


def test_rerunning_a_finished_run_leaves_its_summary_intact(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(tiny_lm_config, workdir, echo=quiet)
    path = os.path.join(workdir, "summary.json")
    before = open(path).read()
    assert {"final_eval", "best_eval_loss", "initial_eval", "last_train"} <= set(json.loads(before))
    messages = []
    families.train(tiny_lm_config, workdir, echo=messages.append)
    families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["train.num_steps=10"]),
                   workdir, echo=quiet)
    assert any("nothing to do" in m for m in messages)
    assert open(path).read() == before


def test_the_summary_describes_the_whole_run_after_a_resume(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["train.num_steps=10"]),
                   workdir, echo=quiet)
    summary = families.train(tiny_lm_config, workdir, echo=quiet)
    evals = read_metrics(workdir, "eval")
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert summary["initial_eval"]["loss"] == evals[0]["loss"]
    assert summary["best_eval_loss"] == min(r["loss"] for r in evals)
    assert summary["final_eval"]["loss"] == evals[-1]["loss"]


@pytest.mark.parametrize("field, value", [("keep_checkpoints", 0), ("keep_checkpoints", -1), ("eval_every", 0),
                                          ("checkpoint_every", 0), ("log_every", 0), ("num_steps", 0)])
def test_loop_fields_below_one_are_refused_before_anything_is_saved(tiny_lm_config, tmp_path, field, value):
    workdir = tmp_path / "run"
    config = apply_overrides(tiny_lm_config.copy_and_resolve_references(), [f"train.{field}={value}"])
    with pytest.raises(ConfigError, match=rf"config field train\.{field}={value} is not allowed: expected an integer >= 1"):
        families.train(config, str(workdir), echo=quiet)
    assert not (workdir / "config.json").exists() and not (workdir / "checkpoints").exists()


def test_a_torn_last_log_line_is_dropped_on_resume_and_no_record_is_lost(tiny_lm_config, tmp_path):
    workdir = str(tmp_path / "run")
    families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["train.num_steps=10"]),
                   workdir, echo=quiet)
    before = read_metrics(workdir)
    with open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8") as f:
        f.write('{"step": 11, "kind": "tra')  # killed mid-write
    assert read_metrics(workdir) == before  # readers skip it too
    families.train(tiny_lm_config, workdir, echo=quiet)
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        lines = f.read().splitlines()
    records = [json.loads(line) for line in lines]  # every line a whole record
    assert records[:len(before)] == before
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 10, 20]


def test_damaged_bytes_name_the_file(tiny_lm_config, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / METRICS_FILE).write_bytes(b'{"step": 0, "kind": "eval", "loss": 1.0}\n{"step": 1, "k\xc5": 2}\n'
                                         b'{"step": 2, "kind": "eval", "loss": 1.0}\n')
    with pytest.raises(ValueError, match=f"damaged metrics file '{workdir / METRICS_FILE}': not UTF-8"):
        read_metrics(str(workdir))
    with pytest.raises(ValueError, match="damaged metrics file"):
        MetricsWriter(str(workdir), resume_step=2, tensorboard=False)
    (workdir / "config.json").write_bytes(b'{"task": "l\xc5m"}')
    with pytest.raises(ConfigError, match=f"saved config '{workdir / 'config.json'}'"):
        load_saved_config(str(workdir))


def test_values_beyond_float32_are_logged_as_infinity(tmp_path):
    assert as_float32(1e304) == math.inf and as_float32(-1e300) == -math.inf and as_float32(2.5) == 2.5
    encode_scalar_event(3, {"train/perplexity": 1e304}, 0.0)  # used to raise OverflowError
    writer = MetricsWriter(str(tmp_path))
    writer.write(3, "train", {"perplexity": 1e304, "loss": 700.0})
    writer.close()
    assert read_metrics(str(tmp_path))[0]["perplexity"] == 1e304


def test_a_second_run_on_a_workdir_is_refused_and_a_dead_holders_lock_is_taken_over(tiny_lm_config, tmp_path):
    import signal
    import subprocess
    import sys
    from aigc_jax.train.workdir_lock import LOCK_FILE, WorkdirLocked
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from aigc_jax.train.workdir_lock import WorkdirLock; "
        f"WorkdirLock({str(workdir)!r}).acquire(); print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLocked, match=rf"in use by another run \(process {holder.pid} on "):
            families.train(tiny_lm_config, str(workdir), echo=quiet)
        assert not (workdir / "config.json").exists() and not (workdir / "tokenizer.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (workdir / LOCK_FILE).exists()  # killed: nobody released it
    families.train(tiny_lm_config, str(workdir), echo=quiet)  # stale: taken over
    assert not (workdir / LOCK_FILE).exists() and (workdir / "summary.json").exists()


def test_when_no_checkpoint_restores_the_run_refuses_to_start_over(tiny_lm_config, tmp_path, capfd):
    import glob
    from aigc_jax.train.checkpoints import CheckpointError
    workdir = str(tmp_path / "run")
    families.train(tiny_lm_config, workdir, echo=quiet)
    for path in glob.glob(os.path.join(workdir, "checkpoints", "*", "**", "_METADATA"), recursive=True):
        with open(path, "r+b") as f:
            f.truncate(10)  # every checkpoint's metadata cut short
    metrics_before = open(os.path.join(workdir, METRICS_FILE)).read()
    checkpoints_before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* could be restored \(step 20: .*step 10: "):
        families.train(tiny_lm_config, workdir, echo=quiet)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == checkpoints_before
    assert not os.path.exists(os.path.join(workdir, "corrupt"))
    assert open(os.path.join(workdir, METRICS_FILE)).read() == metrics_before
    out, err = capfd.readouterr()
    assert len((out + err).splitlines()) < 10  # no pages of storage-layer tracebacks


def test_a_prompt_that_is_not_utf8_and_a_nan_length_penalty_are_named():
    from aigc_jax.data.tokenizers import ByteTokenizer, CharTokenizer, UnknownCharactersError
    from aigc_jax.families.lm.inference import encode_prompt
    undecodable = b"ab\xc5".decode("utf-8", errors="surrogateescape")  # what argv holds for such bytes
    for tokenizer in (CharTokenizer("abc"), ByteTokenizer()):
        with pytest.raises(UnknownCharactersError, match="not valid UTF-8.*U\\+DCC5 at character 2"):
            encode_prompt(tokenizer, undecodable)
    from aigc_jax.families.seq2seq import task as seq2seq_task
    with pytest.raises(ValueError, match="length_penalty must be a finite number.*got nan"):
        seq2seq_task.translate(None, "12+3", beam_width=2, length_penalty=float("nan"))


def test_a_run_that_fails_before_training_leaves_no_tokenizer_for_the_next(tiny_lm_config, small_text_file, tmp_path):
    from aigc_jax.data.text import DataError
    from aigc_jax.data.tokenizers import load_tokenizer
    short = tmp_path / "short.txt"
    short.write_text("0123456789" * 2 + "+-*/()[]{}<>!?", encoding="utf-8")  # shorter than a context window
    workdir = tmp_path / "run"
    with pytest.raises(DataError):
        families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), [f"data.path={short}"]),
                       str(workdir), echo=quiet)
    assert not (workdir / "tokenizer.json").exists() and not (workdir / "config.json").exists()
    families.train(tiny_lm_config, str(workdir), echo=quiet)
    text = open(small_text_file, encoding="utf-8").read()
    assert set(load_tokenizer(str(workdir)).chars) == set(text)


def test_sampling_beside_a_run_reads_the_newest_complete_checkpoint_and_changes_nothing(tiny_lm_config, tmp_path):
    import shutil
    from aigc_jax.families.lm.inference import load_language_model
    workdir = tmp_path / "run"
    families.train(tiny_lm_config, str(workdir), echo=quiet)
    shutil.rmtree(workdir / "checkpoints" / "20" / "default")  # the newest: half gone, as if being replaced
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    lm = load_language_model(str(workdir))
    assert lm.step == 10
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before  # nothing moved or made


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_says_how_to_resume(small_text_file, tmp_path, signal_name):
    import re
    import signal
    import subprocess
    import sys
    import time
    from tests.conftest import REPO, config_path
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "experiments.train", f"--config={config_path('gpt_char.py:tiny')}",
               f"--workdir={workdir}", f"--config.data.path={small_text_file}", "--config.train.progress_bar=false",
               "--config.train.num_steps=100000", "--config.train.log_every=10", "--config.train.eval_every=50000",
               "--config.train.checkpoint_every=50000"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / METRICS_FILE).exists():
        time.sleep(0.05)
    while time.time() < deadline and len(read_metrics(str(workdir), "train")) < 3:
        time.sleep(0.05)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    step = int(re.search(rf"interrupted \({signal_name}\) at step (\d+), saved there; resume with the same command",
                         stderr).group(1))
    assert 0 < step < 100000 and str(step) in os.listdir(workdir / "checkpoints")


def test_bytes_changed_inside_a_checkpoint_are_found_and_the_previous_one_restored(tiny_lm_config, tmp_path, capsys):
    from aigc_jax.train import checksums
    workdir = tmp_path / "run"
    families.train(tiny_lm_config, str(workdir), echo=quiet)
    checkpoints = str(workdir / "checkpoints")
    assert sorted(os.listdir(workdir / "checksums")) == ["10.sha256", "20.sha256"]
    assert checksums.verify_or_explain(checkpoints, 20) is None and checksums.verify_or_explain(checkpoints, 10) is None
    largest = max((p for p in (workdir / "checkpoints" / "20").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit, in the middle of the largest array file
    largest.write_bytes(bytes(data))
    assert "does not match its checksum" in checksums.verify(checkpoints, 20)
    from aigc_jax.train.restore import restore_params
    assert restore_params(str(workdir)).step == 10  # readers skip it as well
    messages = []
    families.train(apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["train.num_steps=30"]),
                   str(workdir), echo=messages.append)
    assert "resumed from the checkpoint at step 10" in messages
    assert "checkpoint at step 20 is corrupt (CheckpointError:" in capsys.readouterr().out


def test_a_failed_checkpoint_save_ends_the_command_at_once(tmp_path):
    import subprocess
    import sys
    from tests.conftest import REPO
    script = f"""
import jax.numpy as jnp
from experiments import cli
from aigc_jax.train import loop
from tests.test_train_protocol import toy_config, toy_task

def main(_overrides):
    config = toy_config()
    task = toy_task(config)
    init = task.init
    task.init = lambda rng: init(rng).replace(extra={{"empty": jnp.zeros((0,))}})  # Orbax cannot save it
    loop.train(config, {str(tmp_path / 'run')!r}, task, echo=lambda *_: None)

cli.run(main)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: Cannot save arrays with zero size" in result.stderr


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_a_small_file_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    from aigc_jax import files
    path = str(tmp_path / "config.json")
    files.write_json(path, {"kept": True})
    monkeypatch.setattr(files.os, "replace", no_space)
    with pytest.raises(files.DiskFull) as error:
        files.write_json(path, {"kept": False, "text": "x" * 1000})
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"no space left on device for the JSON file {path!r}")
    assert f"it needs about {len(json.dumps({'kept': False, 'text': 'x' * 1000})):,} bytes" in message
    assert os.listdir(tmp_path) == ["config.json"] and json.load(open(path)) == {"kept": True}


def test_writing_into_a_missing_directory_names_it_and_creates_nothing(tmp_path):
    from aigc_jax import files
    path = str(tmp_path / "no_such_run" / "caption_vocab.json")
    with pytest.raises(FileNotFoundError, match=r"cannot write the JSON file .*caption_vocab.json.*its directory "
                                                r".*no_such_run' does not exist"):
        files.write_json(path, {"words": []})
    assert os.listdir(tmp_path) == []


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch):
    import numpy as np
    from aigc_jax.files import DiskFull
    from aigc_jax.train.checkpoints import Checkpointer
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(str(directory))
    state = {"w": np.arange(1000, dtype=np.float32)}
    checkpointer.save(10, state)
    checkpointer.wait()
    manager = checkpointer.manager

    def fail_after_starting(step, args):  # as Orbax does: a partial directory, then the error at the wait
        (directory / f"{step}.orbax-checkpoint-tmp").mkdir()
        monkeypatch.setattr(manager, "wait_until_finished", lambda: (_ for _ in ()).throw(ValueError(
            "RESOURCE_EXHAUSTED: Error writing 'w' in OCDBT database: No space left on device [os_error_code='28']")))

    monkeypatch.setattr(manager, "save", fail_after_starting)
    checkpointer.save(20, {"w": np.zeros(1000, np.float32)})
    with pytest.raises(DiskFull) as error:
        checkpointer.wait()
    message = str(error.value)
    assert "\n" not in message and "the checkpoint of step 20" in message and "4,000 bytes" in message
    assert sorted(os.listdir(directory)) == ["10"]  # no partial directory, the earlier step intact
    checkpointer.close()  # nothing more is waited for or written
    monkeypatch.undo()
    again = Checkpointer(str(directory))
    restored, step = again.restore_latest(state)
    again.close()
    assert step == 10 and np.array_equal(restored["w"], state["w"])


def test_a_full_disk_is_one_line_from_the_command(tmp_path):
    """A real full disk: a 400 KiB tmpfs (needs permission to mount one; skipped otherwise)."""
    import shutil
    import subprocess
    import sys
    from tests.conftest import REPO
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        command = [sys.executable, "-m", "experiments.train", "--config", "configs/markov_lm.py:tiny",
                   "--workdir", str(mount / "run"), "--config.train.progress_bar=false", "--config.model.embed_dim=64"]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.strip().count("\n") == 0, result.stderr[-3000:]
        assert result.stderr.startswith("error: no space left on device for the checkpoint of step")
        leftovers = [p for p in (mount / "run").rglob("*") if "tmp" in p.name]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
