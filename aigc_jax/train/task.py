"""The one protocol every model family implements to run on the one training loop."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Optional


@dataclasses.dataclass
class Task:
    """What the training loop needs from a family; every function but on_eval and host_batch is pure.

    init(rng) -> TrainState
    train_step(state, batch, rng[, frozen]) -> (state, metrics): jit-compiled once by the loop,
        state donated; per-step randomness from fold_in(rng, state.step).
    eval_step(state, batch[, frozen]) -> dict of sums over the batch (summed over batches by the loop).
    train_batch(step) -> batch: a pure function of (config seed, step), so a resumed run
        sees exactly the batches an uninterrupted one would. With host_batch set it still
        gives a batch of the right shapes (the loop compiles from it).
    eval_batches() -> the fixed evaluation batches.
    summarize_eval(sums) -> reported evaluation metrics.
    model_fields: config fields that change the model; resuming a workdir with any of them
        changed is an error that names the field.
    frozen: parameters of frozen models from other runs (a reference policy, a reward model,
        an image tokenizer, a scorer), loaded with `aigc_jax.train.restore.restore_params`. The
        loop places them once, outside the train state (never optimised, never checkpointed),
        and passes them to train_step and eval_step as a last argument.
    host_batch(state, step) -> batch: for batches that depend on the current model (rollouts,
        programs run in a sandbox). Called on the host before each step with the state that
        step starts from, not prefetched; being a function of (state, step) it keeps resume
        bit-identical. Needs train.steps_per_call = 1.
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
    model_fields: tuple = ("task", "model")
    flops_per_step: float = 0.0  # model FLOPs of one optimizer step; 0 if not known
    description: str = ""
    headline_metrics: tuple = ("loss",)  # train metrics shown on the progress bar
    eval_metric: str = "loss"  # the evaluation metric (lower is better) sweeps compare; "" if none
    sharding_rules: tuple = ()  # (param path regex, logical axes); unmatched parameters are replicated
    train_batch_axis: int = 0  # the example axis of train batches, split over data x fsdp
    on_eval: Optional[Callable] = None
    frozen: Any = None
    host_batch: Optional[Callable] = None
