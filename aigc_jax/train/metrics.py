"""Metrics to disk: JSONL always (one record per line), TensorBoard events beside it."""
from __future__ import annotations

import json
import math
import os

from aigc_jax.files import write_text
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
        self._events = EventWriter(os.path.join(workdir, "tensorboard"), resume_step) if tensorboard else None

    def _truncate_after(self, step: int) -> None:
        """Keeps the records up to `step`; a torn last line (a run killed mid-write) is dropped,
        so the next record starts on a line of its own."""
        if not os.path.exists(self.path):
            return
        lines = _read_lines(self.path)
        if lines and _step_of(lines[-1]) is None:
            lines = lines[:-1]
        kept = []
        for number, line in enumerate(lines, 1):
            record_step = _step_of(line)
            if record_step is None:
                raise ValueError(f"damaged metrics file {self.path!r}: line {number} is not a JSON record")
            if record_step <= step:
                kept.append(line.rstrip("\n") + "\n")
        write_text(self.path, "".join(kept), "the metrics log")

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


def _step_of(line: str):
    """The record's step, or None for a line that is not a whole record."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _read_lines(path: str) -> list[str]:
    """The file's non-empty lines; bytes that are not UTF-8 are an error naming the file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"damaged metrics file {path!r}: not UTF-8 at byte {e.start}") from None
    return [line for line in text.splitlines(keepends=True) if line.strip()]


def read_metrics(workdir: str, kind: str | None = None) -> list[dict]:
    """The run's records (of one kind); a torn last line from a killed run is skipped."""
    path = os.path.join(workdir, METRICS_FILE)
    lines = _read_lines(path)
    if lines and _step_of(lines[-1]) is None:
        lines = lines[:-1]
    try:
        records = [json.loads(line) for line in lines]
    except ValueError as e:
        raise ValueError(f"damaged metrics file {path!r}: {e}") from None
    return [r for r in records if kind is None or r["kind"] == kind]
