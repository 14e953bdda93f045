import os
import subprocess
import sys

import numpy as np
import pytest

from aigc_jax import families, sweep
from aigc_jax.config import ConfigError, apply_overrides, load_config
from aigc_jax.families import train
from tests.conftest import REPO, config_path


def test_grid_and_one_at_a_time_points(tiny_lm_config):
    grid = sweep.expand_points(tiny_lm_config, ["model.mlp=gelu,swiglu", "model.positions=learned,rope,none"])
    assert len(grid) == 6 and (("model.mlp", "swiglu"), ("model.positions", "none")) in grid
    ablation = sweep.expand_points(tiny_lm_config, ["model.mlp=gelu,swiglu", "model.positions=learned,rope"],
                                   mode="one_at_a_time")
    assert ablation == [(), (("model.mlp", "swiglu"),), (("model.positions", "rope"),)]  # defaults not repeated


def test_bad_sweeps_fail_before_any_run(tiny_lm_config):
    with pytest.raises(ConfigError, match="unknown config field 'model.nlayers'"):
        sweep.expand_points(tiny_lm_config, ["model.mlp=gelu,swiglu", "model.nlayers=1,2"])
    with pytest.raises(ConfigError, match="'model.num_layers' expects an integer, got 'deep'"):
        sweep.expand_points(tiny_lm_config, ["model.num_layers=2,deep"])
    with pytest.raises(ConfigError, match="not of the form"):
        sweep.expand_points(tiny_lm_config, ["model.num_layers"])


def test_sweep_runs_reports_and_skips_finished_runs(tiny_lm_config, tmp_path):
    config = apply_overrides(tiny_lm_config, ["train.num_steps=6", "train.eval_every=3", "train.log_every=2"])
    points = sweep.expand_points(config, ["model.mlp=swiglu"], mode="one_at_a_time")
    workdir = str(tmp_path / "sweep")
    quiet = lambda c, d: train(c, d, echo=lambda *_: None)  # noqa: E731
    sweep.run_sweep(config, points, [0, 1], workdir, quiet, echo=lambda *_: None)
    rows = sweep.collect(points, [0, 1], workdir)
    assert [r["name"] for r in rows] == ["baseline", "model.mlp=swiglu"]
    assert all(len(r["finals"]) == 2 and r["num_params"] > 0 for r in rows)
    assert rows[0]["finals"][0] != rows[0]["finals"][1]  # seeds differ
    report = open(sweep.write_report(rows, workdir, "T", "cmd")).read()
    assert "| (baseline) |" in report and "| swiglu |" in report and os.path.exists(os.path.join(workdir, "curves.png"))

    def must_not_run(c, d):
        raise AssertionError(f"finished run {d} was run again")
    sweep.run_sweep(config, points, [0, 1], workdir, must_not_run, echo=lambda *_: None)
    os.remove(os.path.join(sweep.run_dir(workdir, points[1], 1), "summary.json"))  # as if interrupted
    rerun = []
    sweep.run_sweep(config, points, [0, 1], workdir, lambda c, d: rerun.append((d, c.seed, c.model.mlp)) or quiet(c, d),
                    echo=lambda *_: None)
    assert rerun == [(sweep.run_dir(workdir, points[1], 1), 1, "swiglu")]


def test_within_noise_uses_standard_errors():
    base = {"finals": [1.0, 1.1, 0.9], "mean": 1.0, "std": 0.1}
    near = {"finals": [1.05, 1.15, 0.95], "mean": 1.05, "std": 0.1}
    far = {"finals": [1.5, 1.6, 1.4], "mean": 1.5, "std": 0.1}
    assert sweep.within_noise(near, base) and not sweep.within_noise(far, base)


def test_command_line_rejects_a_bad_sweep_before_running(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", f"--config={config_path('gpt_char.py:tiny')}",
         "--sweep=model.mlp=gelu,swiglu", "--sweep=model.positons=rope", f"--workdir={tmp_path / 's'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown config field 'model.positons'")
    assert not (tmp_path / "s").exists()


def test_print_commands_gives_one_train_command_per_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", f"--config={config_path('gpt_char.py:tiny')}",
         "--sweep=model.mlp=gelu,swiglu", "--seeds=2", f"--workdir={tmp_path / 's'}", "--print_commands"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("python -m experiments.train ") for line in lines)
    assert "--config.model.mlp=swiglu" in lines[3] and "--config.seed=1" in lines[3]


@pytest.mark.parametrize("spec, sweep_field, metric", [
    ("gan_2d.py:tiny", "loss.name=nonsaturating,hinge", "reverse_kl"),
    ("vae.py:tiny", "loss.beta=1.0,0.5", "loss"),
])
def test_sweeps_report_any_familys_metric_and_items(spec, sweep_field, metric, tmp_path):
    config = load_config(config_path(spec), ["train.progress_bar=false", "train.num_steps=4", "train.eval_every=2",
                                             "train.checkpoint_every=4", "train.log_every=1"])
    points = sweep.expand_points(config, [sweep_field], mode="one_at_a_time")
    workdir = str(tmp_path / "sweep")
    sweep.run_sweep(config, points, [0], workdir, lambda c, d: train(c, d, echo=lambda *_: None),
                    echo=lambda *_: None)
    rows = sweep.collect(points, [0], workdir)
    item = families.build_task(config, "").item_name
    assert len(rows) == 2 and all(r["metric"] == metric and r["item_name"] == item for r in rows)
    assert all(len(r["finals"]) == 1 and np.isfinite(r["mean"]) and r["items_per_second"] > 0 for r in rows)
    report = open(sweep.write_report(rows, workdir, "T", "cmd")).read()
    assert f"final validation {metric} (mean ± std)" in report and f"{item}/s (median)" in report


def test_values_that_sanitise_alike_get_their_own_runs():
    a = sweep.point_name((("data.path", "/d/x/a.txt"),))
    b = sweep.point_name((("data.path", "/d/x_a.txt"),))
    assert a != b and a.startswith("data.path=_d_x_a.txt-") and b.startswith("data.path=_d_x_a.txt-")
    assert sweep.point_name((("model.mlp", "swiglu"),)) == "model.mlp=swiglu"  # nothing replaced: no hash


def test_a_rerun_with_changed_base_overrides_is_refused_by_field(tiny_lm_config, tmp_path):
    config = apply_overrides(tiny_lm_config, ["train.num_steps=4", "train.eval_every=2", "optimizer.warmup_steps=1"])
    points = sweep.expand_points(config, [])
    workdir = str(tmp_path / "sweep")
    quiet = lambda c, d: train(c, d, echo=lambda *_: None)  # noqa: E731
    sweep.run_sweep(config, points, [0], workdir, quiet, echo=lambda *_: None)
    changed = apply_overrides(config.copy_and_resolve_references(), ["optimizer.learning_rate=0.01"])
    with pytest.raises(ConfigError, match=r"optimizer.learning_rate=0.001.*optimizer.learning_rate=0.01"):
        sweep.run_sweep(changed, points, [0], workdir, quiet, echo=lambda *_: None)
