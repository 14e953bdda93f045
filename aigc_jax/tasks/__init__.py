"""The one protocol every model family implements, and the registry of families.

A task module provides `MODEL_FIELDS` (config fields that change the model: resuming a
workdir with any of them changed is an error) and `build(config, workdir) -> Task`.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Iterable, Optional

TASK_MODULES = {
    "lm": "aigc_jax.tasks.lm",
    "seq2seq": "aigc_jax.tasks.seq2seq",
    "gan": "aigc_jax.tasks.gan",
    "vae": "aigc_jax.tasks.vae",
    "flow": "aigc_jax.tasks.flow",
}


@dataclasses.dataclass
class Task:
    """What the training loop needs from a family; every function but on_eval is pure.

    init(rng) -> TrainState
    train_step(state, batch, rng) -> (state, metrics): jit-compiled once by the loop,
        state donated; per-step randomness from fold_in(rng, state.step).
    eval_step(state, batch) -> dict of sums over the batch (summed over batches by the loop).
    train_batch(step) -> batch: a pure function of (config seed, step), so a resumed run
        sees exactly the batches an uninterrupted one would.
    eval_batches() -> the fixed evaluation batches.
    summarize_eval(sums) -> reported evaluation metrics.
    on_eval(state, step, workdir) -> extra metrics (e.g. writes sample images); optional.
    Every train metric must stay finite: the loop stops the run at the first NaN/Inf.
    """
    init: Callable
    train_step: Callable
    eval_step: Callable
    train_batch: Callable[[int], Any]
    eval_batches: Callable[[], Iterable[Any]]
    summarize_eval: Callable[[dict], dict]
    num_params: int
    items_per_step: int  # tokens (LM) or examples per optimizer step, for throughput
    item_name: str = "tokens"
    flops_per_step: float = 0.0  # model FLOPs of one optimizer step; 0 if not known
    description: str = ""
    headline_metrics: tuple = ("loss",)  # train metrics shown on the progress bar
    sharding_rules: tuple = ()  # (param path regex, logical axes); unmatched parameters are replicated
    train_batch_axis: int = 0  # the example axis of train batches, split over data x fsdp
    on_eval: Optional[Callable] = None


def task_module(name: str):
    if name not in TASK_MODULES:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASK_MODULES))}")
    return importlib.import_module(TASK_MODULES[name])


def build_task(config, workdir: str) -> Task:
    return task_module(config.task).build(config, workdir)
