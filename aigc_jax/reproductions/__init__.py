"""Numerical reproductions of the math of generative models (experiments/reproduce_math.py).

One module per item; each has `reproduce(out_dir, ...) -> ItemReport`: it measures, compares
every measurement with its closed form or exact value under a stated tolerance, and saves its
figures (PNG) into out_dir. Pass/fail is computed, never asserted.

  autoregressive     P(x_1..x_n) = prod_t P(x_t | x_<t): exhaustive sum and cached decoding
  markov_entropy     an LM's cross-entropy on a Markov source approaches its entropy rate
  perplexity         perplexity = exp(cross-entropy), bits = nats / ln 2
  attention_scaling  Var(q . k) = d, softmax entropy with and without 1 / sqrt(d)
  gan_game           D*, V(D*, G) = -log 4 + 2 JSD, saturating vs non-saturating gradients
  latent_bounds      ELBO <= IWAE (tightening in K); a flow's density integrates to 1
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

Number = Union[float, int]


@dataclasses.dataclass
class Check:
    """One row of the report: a measured value against its expected value."""
    item: str
    formula: str
    measured: Number
    expected: Union[Number, str]
    tolerance: str
    passed: bool


@dataclasses.dataclass
class ItemReport:
    """An item's checks, its figures (file names inside out_dir) and a markdown note on its setup."""
    number: str
    title: str
    checks: list
    figures: list = dataclasses.field(default_factory=list)
    notes: str = ""
    seconds: Optional[float] = None  # wall time, filled in by the runner

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def close_abs(item: str, formula: str, measured: float, expected: float, tolerance: float,
              tolerance_name: str = "") -> Check:
    """|measured - expected| <= tolerance (shown by name when given, e.g. '3 SE = 0.01')."""
    ok = math.isfinite(measured) and abs(measured - expected) <= tolerance
    shown = f"{tolerance_name} = {tolerance:.2g}" if tolerance_name else f"abs {tolerance:.2g}"
    return Check(item, formula, float(measured), float(expected), shown, bool(ok))


def close_rel(item: str, formula: str, measured: float, expected: float, tolerance: float) -> Check:
    """|measured - expected| <= tolerance * |expected|."""
    ok = math.isfinite(measured) and abs(measured - expected) <= tolerance * abs(expected)
    return Check(item, formula, float(measured), float(expected), f"rel {tolerance:.2g}", bool(ok))


def at_least(item: str, formula: str, measured: float, bound: float, slack: float, slack_name: str) -> Check:
    """measured >= bound - slack (slack: a stated noise allowance)."""
    ok = math.isfinite(measured) and measured >= bound - slack
    return Check(item, formula, float(measured), f">= {bound:.6g}", f"{slack_name} = {slack:.2g}", bool(ok))


def at_most(item: str, formula: str, measured: float, bound: float, slack: float, slack_name: str) -> Check:
    """measured <= bound + slack."""
    ok = math.isfinite(measured) and measured <= bound + slack
    return Check(item, formula, float(measured), f"<= {bound:.6g}", f"{slack_name} = {slack:.2g}", bool(ok))


def training_time(summary: dict) -> str:
    """How long the loop trained, from its summary (a finished run found in the workdir is reused)."""
    if summary.get("start_step", 0) >= summary.get("final_step", 0):
        return "a finished run reused from its workdir"
    return f"{summary['wall_seconds']:.0f} s wall"


def format_value(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.8g}"
    return f"{value:.3e}"
