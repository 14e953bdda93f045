"""Metrics to disk: JSONL always (one record per line), TensorBoard events beside it."""
from __future__ import annotations

import json
import math
import os

from aigc_jax.train.tensorboard import EventWriter

METRICS_FILE = "metrics.jsonl"


def _plain(value):
    value = float(value) if not isinstance(value, (str, int)) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsWriter:
    """Writes `{"step": s, "kind": "train"|"eval", ...}` records.

    On resume from step s, records after s (written by the interrupted run past its
    last checkpoint) are dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
        self.path = os.path.join(workdir, METRICS_FILE)
        self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        self._events = EventWriter(os.path.join(workdir, "tensorboard")) if tensorboard else None

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            kept = [line for line in f if line.strip() and _step_of(line) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, kind: str, values: dict) -> None:
        record = {"step": int(step), "kind": kind, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._events is not None:
            numeric = {f"{kind}/{k}": v for k, v in values.items()
                       if isinstance(v, (int, float)) and math.isfinite(float(v))}
            self._events.scalars(step, numeric)
            self._events.flush()

    def close(self) -> None:
        self._file.close()
        if self._events is not None:
            self._events.close()


class NullWriter:
    """Stands in for MetricsWriter on the processes that do not write logs."""

    def write(self, step: int, kind: str, values: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return -1  # a torn last line from a killed run: dropped


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]
