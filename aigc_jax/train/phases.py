"""Where a run's wall time goes, in disjoint phases: start-up (process start to the first step,
less the two below), waiting for the train step's compilation, training steps, evaluation
(every one, the step-0 one and its compilation included), checkpoint writes (the time the loop
is blocked in them) and the end (after the last step to the summary). summary.json keeps them
under `phase_seconds`; experiments/bench_recipe.py sets them side by side with PyTorch's."""
from __future__ import annotations

import collections
import contextlib
import os
import time

_IMPORTED = time.time()


def process_age_seconds() -> float:
    """Seconds since this process started (Linux: /proc); elsewhere since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - started_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time() - _IMPORTED


class PhaseClock:
    """Accumulates wall seconds per phase name: `with clock("eval"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start
