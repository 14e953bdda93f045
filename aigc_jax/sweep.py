"""Hyperparameter sweeps: expand a grid, run every point for every seed, report.

A point is a tuple of (field, value) overrides. Every run lives in
`WORKDIR/<point name>/seed_<k>/`, a normal training workdir, so an interrupted sweep
resumes (finished runs are skipped, a half-finished one resumes from its checkpoint)
and each run can be launched as its own job elsewhere (`run_command`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import shlex
from typing import Callable, Sequence

import numpy as np

from aigc_jax import config as config_lib
from aigc_jax.train.metrics import read_metrics

BASELINE = "baseline"


def parse_sweep(spec: str) -> tuple[str, list[str]]:
    """'model.mlp=gelu,swiglu' -> ('model.mlp', ['gelu', 'swiglu'])."""
    field, sep, values = spec.partition("=")
    choices = [v for v in values.split(",") if v != ""]
    if not sep or not field or not choices:
        raise config_lib.ConfigError(f"--sweep {spec!r} is not of the form field=value1,value2,...")
    return field, choices


def expand_points(base_config, sweeps: Sequence[str], mode: str = "grid") -> list[tuple]:
    """All points of the sweep, validated against the config before anything runs.

    grid: the cross product of every sweep. one_at_a_time: the baseline (the config as
    given) plus each value of each sweep alone, for ablations against one baseline.
    """
    axes = [parse_sweep(s) for s in sweeps]
    for field, values in axes:
        current = config_lib.get_field(base_config, field)  # unknown field: ConfigError naming it
        for value in values:
            config_lib.parse_value(field, value, current)  # wrong type: ConfigError naming it
    if mode == "grid":
        return [tuple(zip([f for f, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    if mode == "one_at_a_time":
        points = [()]
        for field, values in axes:
            default = str(config_lib.get_field(base_config, field))
            points.extend(((field, v),) for v in values if v != default)
        return points
    raise config_lib.ConfigError(f"unknown sweep mode {mode!r}; expected 'grid' or 'one_at_a_time'")


def _safe_value(value: str) -> str:
    """A value as a directory-name part; where characters had to be replaced, a short hash of the
    value is appended, so two values never share a run directory (/d/x/a.txt and /d/x_a.txt)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value)
    if safe != value:
        safe += "-" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return safe


def point_name(point: tuple) -> str:
    if not point:
        return BASELINE
    return ",".join(f"{f}={_safe_value(v)}" for f, v in point)


def run_dir(workdir: str, point: tuple, seed: int) -> str:
    return os.path.join(workdir, point_name(point), f"seed_{seed}")


def point_config(base_config, point: tuple, seed: int):
    config = base_config.copy_and_resolve_references()
    config_lib.apply_overrides(config, [f"{f}={v}" for f, v in point] + [f"seed={seed}"])
    config.lock()
    return config


def check_same_config(directory: str, config) -> None:
    """A run directory that holds a run of another config (the sweep's base overrides changed
    since) is refused, naming the first field that differs, instead of reported as this point."""
    path = os.path.join(directory, config_lib.SAVED_CONFIG_FILE)
    if not os.path.exists(path):
        return
    saved = config_lib.flatten(config_lib.read_saved_config(path))
    current = config_lib.flatten(config_lib.to_dict(config))
    ignored = ("train.progress_bar",)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in ignored and saved.get(k, "<absent>") != current.get(k, "<absent>"))
    if changed:
        field = changed[0]
        raise config_lib.ConfigError(
            f"{directory} holds a run with {field}={saved.get(field, '<absent>')!r}, but this sweep would run "
            f"{field}={current.get(field, '<absent>')!r}" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
            + "; use the same overrides as before or a new --workdir")


def is_finished(directory: str, num_steps: int) -> bool:
    path = os.path.join(directory, "summary.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return json.load(f).get("final_step") == num_steps


def run_command(config_spec: str, overrides: Sequence[str], point: tuple, seed: int, workdir: str) -> str:
    """The `experiments.train` command that runs one (point, seed) as its own job."""
    args = [f"--config={config_spec}", f"--workdir={run_dir(workdir, point, seed)}"]
    args += [f"--config.{o}" for o in overrides]
    args += [f"--config.{f}={v}" for f, v in point] + [f"--config.seed={seed}"]
    return "python -m experiments.train " + " ".join(shlex.quote(a) for a in args)


def run_sweep(base_config, points: list[tuple], seeds: Sequence[int], workdir: str,
              train_fn: Callable, echo=print) -> None:
    """Runs every unfinished (point, seed), one after another."""
    total = len(points) * len(seeds)
    for i, (point, seed) in enumerate(itertools.product(points, seeds)):
        directory = run_dir(workdir, point, seed)
        config = point_config(base_config, point, seed)
        check_same_config(directory, config)
        if is_finished(directory, config.train.num_steps):
            echo(f"[{i + 1}/{total}] {point_name(point)} seed {seed}: finished, skipped")
            continue
        echo(f"[{i + 1}/{total}] {point_name(point)} seed {seed}")
        train_fn(config, directory)


def collect(points: list[tuple], seeds: Sequence[int], workdir: str) -> list[dict]:
    """Per point: the final value of the family's evaluation metric over the finished seeds
    (each run's summary names it: the LM's validation loss, a 2-D GAN's reverse KL, ...),
    parameters, throughput in the family's items per second, and the metric's curves."""
    rows = []
    for point in points:
        finals, rates, curves, params = [], [], [], None
        metric, item_name = "loss", "tokens"
        for seed in seeds:
            directory = run_dir(workdir, point, seed)
            if not os.path.exists(os.path.join(directory, "summary.json")):
                continue
            with open(os.path.join(directory, "summary.json")) as f:
                summary = json.load(f)
            params = summary["num_params"]
            metric = summary.get("eval_metric", "loss")
            item_name = summary.get("item_name", "tokens")
            evals = [r for r in read_metrics(directory, "eval") if metric in r]
            if evals:
                finals.append(evals[-1][metric])
                curves.append(([r["step"] for r in evals], [r[metric] for r in evals]))
            # Skip the first train record: its interval holds the first steps' warm-up.
            rates.extend(r[f"{item_name}_per_second"] for r in read_metrics(directory, "train")[1:]
                         if f"{item_name}_per_second" in r)
        rows.append({"point": point, "name": point_name(point), "num_params": params, "finals": finals,
                     "metric": metric, "item_name": item_name,
                     "mean": float(np.mean(finals)) if finals else math.nan,
                     "std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
                     "items_per_second": float(np.median(rates)) if rates else math.nan, "curves": curves})
    return rows


def within_noise(row: dict, baseline: dict) -> bool:
    """A difference is within seed noise when |mean difference| < 2 standard errors of it."""
    n, m = len(row["finals"]), len(baseline["finals"])
    if n < 2 or m < 2:
        return True
    standard_error = math.sqrt(row["std"] ** 2 / n + baseline["std"] ** 2 / m)
    return abs(row["mean"] - baseline["mean"]) < 2 * standard_error


def write_report(rows: list[dict], workdir: str, title: str, command: str) -> str:
    fields = sorted({f for row in rows for f, _ in row["point"]})
    baseline = next((r for r in rows if not r["point"]), None)
    metric = rows[0]["metric"] if rows else "loss"
    item_name = rows[0]["item_name"] if rows else "tokens"
    header = fields + ["parameters", f"final validation {metric or 'metric'} (mean ± std)", "seeds",
                       f"{item_name}/s (median)"]
    if baseline:
        header += ["Δ vs baseline", "within seed noise?"]
    lines = [f"# {title}", "", f"Command: `{command}`", "", "| " + " | ".join(header) + " |",
             "|" + " --- |" * len(header)]
    for row in rows:
        values = dict(row["point"])
        cells = [values.get(f, "(baseline)" if not row["point"] else "") for f in fields]
        cells += [f"{row['num_params']:,}" if row["num_params"] else "-",
                  f"{row['mean']:.4f} ± {row['std']:.4f}", str(len(row["finals"])),
                  f"{row['items_per_second']:,.0f}"]
        if baseline:
            if row is baseline:
                cells += ["-", "-"]
            else:
                cells += [f"{row['mean'] - baseline['mean']:+.4f}", "yes" if within_noise(row, baseline) else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Within seed noise: |Δ| < 2 standard errors of the difference of means "
              "(sample standard deviations over seeds).", "", f"![validation {metric}](curves.png)", ""]
    path = os.path.join(workdir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    plot_curves(rows, os.path.join(workdir, "curves.png"))
    return path


def plot_curves(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    palette = plt.get_cmap("tab10").colors
    styles = ("-", "--", ":")  # colours repeat every 10 lines; the line style tells them apart
    for index, row in enumerate(rows):
        if not row["curves"]:
            continue
        length = min(len(steps) for steps, _ in row["curves"])
        steps = row["curves"][0][0][:length]
        mean = np.mean([losses[:length] for _, losses in row["curves"]], axis=0)
        baseline = not row["point"]
        ax.plot(steps[1:], mean[1:], label=row["name"], linewidth=2 if baseline else 1.2,
                color="black" if baseline else palette[(index - 1) % 10],
                linestyle="-" if baseline else styles[((index - 1) // 10) % len(styles)])
    ax.set_xlabel("step")
    metric = rows[0]["metric"] if rows else "loss"
    ax.set_ylabel(f"validation {metric}, mean over seeds")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
