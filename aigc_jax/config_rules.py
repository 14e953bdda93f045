"""Declared ranges and choices of config fields, checked in one pass before anything is built
or written: each bad value is a one-line error naming the field, its value and what is allowed.

A family declares FIELD_RULES {field: rule} in its task module; the shared sections' rules are
here. Fields a config does not have are skipped (a rule may cover several families' configs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from aigc_jax.config import ConfigError, flatten, to_dict


@dataclasses.dataclass(frozen=True)
class Range:
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False
    integer: bool = False

    def problem(self, value: Any) -> Optional[str]:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.integer and not isinstance(value, int)) or not math.isfinite(value):
            return self.describe()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return self.describe()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return self.describe()
        return None

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return f"{kind} {' and '.join(parts)}".strip()


@dataclasses.dataclass(frozen=True)
class Choices:
    options: tuple

    def problem(self, value: Any) -> Optional[str]:
        return None if value in self.options else f"one of {', '.join(map(str, self.options))}"


@dataclasses.dataclass(frozen=True)
class AnyOf:
    """Allowed when any of the rules allows it (e.g. -1 for "infer" or a positive size)."""
    rules: tuple

    def problem(self, value: Any) -> Optional[str]:
        problems = [rule.problem(value) for rule in self.rules]
        return None if None in problems else " or ".join(problems)


@dataclasses.dataclass(frozen=True)
class Text:
    """Free text (a path, flags, an address): any string; its meaning is checked where it is used."""

    def problem(self, value: Any) -> Optional[str]:
        return None if isinstance(value, str) else "a string"


def at_least(low, integer=True) -> Range:
    return Range(low=low, integer=integer)


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
FRACTION = Range(low=0, high=1, high_open=True)  # [0, 1)
OPEN_FRACTION = Range(low=0, high=1, low_open=True, high_open=True)  # (0, 1)
FLAG = Choices((False, True))
TEXT = Text()
MESH_AXIS = AnyOf((Choices((-1,)), at_least(1)))  # -1: the devices left over
OPTIMIZER_RULES = {
    "name": Choices(("adamw", "lion", "adafactor", "muon")),
    # learning_rate 0 is allowed: it freezes a part (e.g. one GAN player in a test); negative is not.
    "learning_rate": NON_NEGATIVE, "min_learning_rate": NON_NEGATIVE, "adam_learning_rate": NON_NEGATIVE,
    "schedule": Choices(("cosine", "constant")), "warmup_steps": at_least(0), "decay_steps": at_least(0),
    "beta1": FRACTION, "beta2": FRACTION, "eps": POSITIVE, "weight_decay": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE, "muon_ns_steps": at_least(1), "muon_embeddings": FLAG,
}
SHARED_RULES = {
    "task": TEXT,  # the registry names the families (families.task_module)
    "seed": at_least(0), "xla_flags": TEXT, "compilation_cache": TEXT,
    "train.progress_bar": FLAG, "train.init_from": TEXT, "eval.at_start": FLAG,
    "mesh.data": MESH_AXIS, "mesh.fsdp": MESH_AXIS, "mesh.tensor": MESH_AXIS, "mesh.cpu_devices": at_least(-1),
    "distributed.coordinator_address": TEXT, "distributed.num_processes": at_least(0),
    "distributed.process_id": at_least(-1), "distributed.auto": FLAG,
    "train.batch_size": at_least(1), "train.steps_per_call": at_least(1), "train.num_steps": at_least(1),
    "train.log_every": at_least(1), "train.eval_every": at_least(1), "train.checkpoint_every": at_least(1),
    "train.keep_checkpoints": at_least(1), "train.peak_flops_per_device": NON_NEGATIVE,
    "train.stop_at_eval_loss": NON_NEGATIVE, "eval.batch_size": at_least(1),
    **{f"{section}.{field}": rule for section in ("optimizer", "g_optimizer", "d_optimizer")
       for field, rule in OPTIMIZER_RULES.items()},
}


def check_family(config, field_rules: dict) -> None:
    """The shared sections' rules and a family's own, in one pass."""
    check(config, {**SHARED_RULES, **field_rules})


def check(config, rules: dict) -> None:
    """Raises ConfigError for the first field (in the rules' order) whose value breaks its rule."""
    values = flatten(to_dict(config))
    for field, rule in rules.items():
        if field in values:
            problem = rule.problem(values[field])
            if problem:
                raise ConfigError(f"config field {field}={values[field]!r} is not allowed: expected {problem}")
