"""Reproduces the math numerically: every item measured against its closed form or exact value.

  python -m experiments.reproduce_math --out=runs/math
  python -m experiments.reproduce_math --out=runs/math --items=1,4,5     # a subset

Prints a table (item, formula, measured, expected, tolerance, pass/fail) and writes
OUT/report.md with its figures (OUT/*.png). The language models of items 2 and 3 train on the
one loop in OUT/runs/ (a finished run there is reused). Exits with status 1 if any check fails.
Items: see aigc_jax/reproductions/__init__.py.
"""
from __future__ import annotations

import os
import platform
import sys
import time

from absl import flags

from aigc_jax.config import load_config
from aigc_jax.reproductions import ItemReport, format_value
from experiments import cli

ITEMS = ("1", "2", "3", "4", "5", "6")
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

flags.DEFINE_string("out", None, "Directory for report.md, its figures and the training runs.")
flags.DEFINE_list("items", list(ITEMS), "Items to run (1-6); 3 needs 2's trained model and trains it if needed.")


def markov_configs():
    """The full-context and short-context LM configs of item 2 (configs/markov_lm.py)."""
    quiet = ["train.progress_bar=false"]
    return load_config(config_path("markov_lm.py"), quiet), load_config(config_path("markov_lm.py:short"), quiet)


def latent_configs(num_steps: int = 1500):
    """Item 6's VAE (configs/vae.py) and 2-D flow (configs/realnvp.py:moons), shortened to num_steps."""
    short = ["train.progress_bar=false", f"train.num_steps={num_steps}", f"train.eval_every={num_steps}",
             f"train.checkpoint_every={num_steps}"]
    return load_config(config_path("vae.py"), short), load_config(config_path("realnvp.py:moons"), short)


def config_path(name: str) -> str:
    return os.path.join(CONFIGS, name)


def run_items(out_dir: str, items=ITEMS, *, echo=print) -> list[ItemReport]:
    """Runs the chosen items in order and returns their reports (figures saved in out_dir; training
    runs in out_dir/runs)."""
    from aigc_jax.reproductions import attention_scaling, autoregressive, gan_game, markov_entropy, perplexity
    unknown = [i for i in items if i not in ITEMS]
    if unknown:
        raise ValueError(f"unknown item(s) {', '.join(unknown)}; expected some of {', '.join(ITEMS)}")
    os.makedirs(out_dir, exist_ok=True)
    reports, markov_run = [], None
    for item in ITEMS:
        if item not in items:
            continue
        start = time.perf_counter()
        echo(f"item {item}: running ...")
        if item == "2" or (item == "3" and markov_run is None):  # item 3 reads item 2's trained model
            full, short = markov_configs()
            report, markov_run = markov_entropy.reproduce(out_dir, full, short, os.path.join(out_dir, "runs", "markov"),
                                                          echo=lambda message: echo(f"  {message}"))
        if item == "1":
            report = autoregressive.reproduce(out_dir)
        elif item == "3":
            report = perplexity.reproduce(out_dir, markov_run)
        elif item == "4":
            report = attention_scaling.reproduce(out_dir)
        elif item == "5":
            report = gan_game.reproduce(out_dir)
        elif item == "6":
            from aigc_jax.reproductions import latent_bounds
            vae_config, flow_config = latent_configs()
            report = latent_bounds.reproduce(out_dir, vae_config, flow_config, os.path.join(out_dir, "runs"),
                                             echo=lambda message: echo(f"  {message}"))
        report.seconds = time.perf_counter() - start
        echo(f"item {item}: {sum(c.passed for c in report.checks)} of {len(report.checks)} checks pass "
             f"({report.seconds:.0f} s)")
        reports.append(report)
    return reports


def table_rows(reports: list[ItemReport]) -> list[tuple]:
    return [(c.item, c.formula, format_value(c.measured), format_value(c.expected), c.tolerance,
             "pass" if c.passed else "FAIL") for r in reports for c in r.checks]


def format_table(reports: list[ItemReport]) -> str:
    header = ("item", "formula", "measured", "expected", "tolerance", "result")
    rows = [header] + table_rows(reports)
    widths = [min(max(len(r[i]) for r in rows), 90) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def markdown_table(reports: list[ItemReport]) -> str:
    lines = ["| item | formula | measured | expected | tolerance | result |", "| --- | --- | --- | --- | --- | --- |"]
    for row in table_rows(reports):
        cells = [cell.replace("|", "\\|") for cell in row]
        cells[-1] = "pass" if row[-1] == "pass" else "**FAIL**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: str, reports: list[ItemReport], command: str, seconds: float) -> str:
    import jax
    passed = sum(c.passed for r in reports for c in r.checks)
    total = sum(len(r.checks) for r in reports)
    lines = [
        "# The math, reproduced numerically", "",
        f"Command: `{command}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"jax {jax.__version__} on {jax.default_backend()}; total wall time {seconds:.0f} s.", "",
        f"**{passed} of {total} checks pass.**", "",
        markdown_table(reports), "",
    ]
    for report in reports:
        seconds_note = f" ({report.seconds:.0f} s)" if report.seconds is not None else ""
        lines += [f"## {report.number}. {report.title}{seconds_note}", "", report.notes, ""]
        lines += [f"![{name}]({name})" for name in report.figures]
        lines += ["", markdown_table([report]), ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def main(overrides):
    if overrides:
        raise cli.ConfigError("reproduce_math takes no --config.* overrides")
    if not flags.FLAGS.out:
        raise cli.ConfigError("--out is required, e.g. --out=runs/math")
    start = time.perf_counter()
    reports = run_items(flags.FLAGS.out, [i.strip() for i in flags.FLAGS.items])
    seconds = time.perf_counter() - start
    command = "python -m experiments.reproduce_math " + " ".join(sys.argv[1:])
    path = write_report(flags.FLAGS.out, reports, command, seconds)
    print(format_table(reports))
    failed = [c for r in reports for c in r.checks if not c.passed]
    print(f"{sum(len(r.checks) for r in reports) - len(failed)} of {sum(len(r.checks) for r in reports)} checks "
          f"pass; report: {path} ({seconds:.0f} s)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
