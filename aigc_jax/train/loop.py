"""The one training loop. Every family plugs in through a `aigc_jax.train.task.Task`; the loop
imports no family (`aigc_jax.families.build_task` makes the Task from a config).

The loop owns: compiling the train and eval steps once, ahead of time on helper threads
(state donated; `train.steps_per_call` optimizer steps per call), host-side batch prefetch,
metrics fetched one call behind (the host never waits on the call it just queued), periodic
evaluation (`eval.at_start`: also at step 0), Orbax checkpoints with resume, a NaN/Inf
guard, JSONL and TensorBoard logs, a progress bar, and the end-of-run summary.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from typing import Optional

import jax
import numpy as np
from tqdm import tqdm

from aigc_jax import config as config_lib
from aigc_jax import config_rules, parallel
from aigc_jax.files import read_json, write_json
from aigc_jax.train import checksums
from aigc_jax.train.checkpoints import Checkpointer
from aigc_jax.train.flops import peak_flops_per_device
from aigc_jax.train.metrics import MetricsWriter, NullWriter, read_metrics
from aigc_jax.train.phases import PhaseClock, process_age_seconds
from aigc_jax.train.placement import place
from aigc_jax.train.prefetch import Prefetcher
from aigc_jax.train.restore import restore_params
from aigc_jax.train.task import Task
from aigc_jax.train.workdir_lock import WorkdirLock

CONFIG_FILE = config_lib.SAVED_CONFIG_FILE
SUMMARY_FILE = "summary.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing was saved after the last finite step."""


def check_resume_config(workdir: str, config, model_fields) -> Optional[dict]:
    """Refuses a workdir whose saved config differs in a field that changes the model."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    saved = config_lib.read_saved_config(path)
    current = config_lib.to_dict(config)
    changed = config_lib.changed_fields(saved, current, model_fields)
    if changed:
        field = changed[0]
        saved_value = config_lib.flatten(saved).get(field, "<absent>")
        current_value = config_lib.flatten(current).get(field, "<absent>")
        more = f" (and {len(changed) - 1} more: {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise config_lib.ConfigError(
            f"workdir {workdir!r} holds a run with {field}={saved_value!r}, but this config has "
            f"{field}={current_value!r}{more}; that changes the model, so it cannot resume. "
            f"Use the saved value or a new --workdir")
    return saved


class _Throughput:
    """Items per second over the steps since the last reading, excluding eval/checkpoint time."""

    def __init__(self):
        self.reset()

    def reset(self):
        self._start, self._steps = time.perf_counter(), 0

    def tick(self, steps: int = 1):
        self._steps += steps

    def read(self) -> tuple[float, float]:
        elapsed = time.perf_counter() - self._start
        return self._steps, elapsed


def run_keys(seed: int):
    """(init_rng, step_rng) of a run with this seed: the keys that initialise its state and drive its
    steps (an analysis that rebuilds a run's initial state asks here, so it gets the run's own)."""
    return jax.random.split(jax.random.key(seed))


def format_eval(result: dict) -> str:
    return ", ".join(f"validation {k} {v:.4f}" for k, v in result.items()
                     if isinstance(v, float) and k != "elapsed_seconds")


def evaluate(eval_step, state, batches, summarize) -> dict:
    sums = None
    for batch in batches:
        out = eval_step(state, batch)
        sums = out if sums is None else jax.tree_util.tree_map(lambda a, b: a + b, sums, out)
    return summarize(jax.device_get(sums))


def train(config, workdir: str, task: Task, *, echo=print) -> dict:
    """Trains `task` (built from `config`) in `workdir`, resuming from its newest good checkpoint.
    Returns the summary. One run per workdir: a second is refused while this one holds its lock."""
    os.makedirs(workdir, exist_ok=True)
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:
        return _train(config, workdir, task, echo)


def _train(config, workdir: str, task: Task, echo) -> dict:
    process_start = time.perf_counter()  # eval records' elapsed_seconds count from here
    check_resume_config(workdir, config, task.model_fields)
    config_rules.check(config, config_rules.SHARED_RULES)  # the loop's own fields among them
    steps_per_call = check_steps_per_call(config.train, task)
    if jax.process_index() == 0:
        write_json(os.path.join(workdir, CONFIG_FILE), config_lib.to_dict(config), indent=2, sort_keys=True)
    train_cfg = config.train
    echo(f"data: {task.description}")
    echo(f"model: {task.num_params:,} parameters")

    mesh = parallel.make_mesh(config.get("mesh"))
    if jax.process_count() > 1 or mesh.size > 1:
        echo(f"mesh: {dict(mesh.shape)} over {mesh.size} devices in {jax.process_count()} process(es)")
    init_rng, step_rng = run_keys(config.seed)
    placement = place(task, mesh, init_rng, steps_per_call)
    compiled = placement.compile_ahead(task, step_rng)  # on helper threads, while we initialise
    state = placement.init(task, init_rng)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=train_cfg.keep_checkpoints)
    restored, restored_step = checkpointer.restore_latest(state)
    if restored is not None:
        state = restored
        echo(f"resumed from the checkpoint at step {restored_step}")
    elif train_cfg.get("init_from", ""):
        state = start_from_run(state, train_cfg.init_from, placement, echo)
    start = int(jax.device_get(state.step))
    num_steps = train_cfg.num_steps
    if start % steps_per_call:
        raise config_lib.ConfigError(f"train.steps_per_call={steps_per_call} does not divide the step {start} this "
                                     f"run resumes from; use a value that divides it")
    writer = MetricsWriter(workdir, resume_step=start) if jax.process_index() == 0 else NullWriter()
    peak = peak_flops_per_device(train_cfg.peak_flops_per_device) * jax.device_count()
    if task.host_batch is not None:  # batches from the current model: made at each step, not ahead
        prefetcher = HostBatches(task, placement)
    else:
        prefetcher = Prefetcher(  # keyed by the first step of each call
            lambda first: placement.call_batch(task, first), stop=num_steps, stride=steps_per_call)
    device_eval_batches = [placement.put_eval(b) for b in task.eval_batches()]
    frozen = placement.frozen_args(placement.put_frozen(task.frozen))  # () without frozen models
    eval_step = lambda st, batch: compiled.eval.result()(st, batch, *frozen)  # noqa: E731 - waits for its compile once
    lead = jax.process_index() == 0
    if not lead:
        echo = lambda *_args: None  # noqa: E731 - one process speaks for the run
    summary = {"num_params": task.num_params, "start_step": start, "item_name": task.item_name,
               "eval_metric": task.eval_metric}
    run_start = time.perf_counter()
    clock = PhaseClock()
    progress = tqdm(total=num_steps, initial=start, disable=not (train_cfg.progress_bar and lead),
                    unit="step", dynamic_ncols=True)
    try:
        if start == 0 and config.get("eval", {}).get("at_start", True):
            with clock("eval"):
                initial = evaluate(eval_step, state, device_eval_batches, task.summarize_eval)
            writer.write(0, "eval", initial)
            echo(f"step 0: {format_eval(initial)}")
            summary["initial_eval"] = initial
        if start >= num_steps:
            echo(f"nothing to do: the workdir is already at step {start} of {num_steps}")
        else:
            with clock("compile_wait"):
                step_fn, summary["compile_seconds"] = compiled.train.result()
            if frozen:
                step_fn = functools.partial(_with_frozen, step_fn, frozen)
            before_steps = dict(clock.seconds)
            to_first_step = process_age_seconds()
            steps_start = time.perf_counter()
            with StopRequest() as stop:
                state, summary["last_train"] = _run_steps(
                    task, config, workdir, state, step_fn, step_rng, start, num_steps, prefetcher, eval_step,
                    device_eval_batches, checkpointer, writer, progress, peak, summary, process_start, stop, clock)
            steps_wall = time.perf_counter() - steps_start
            in_loop = {k: clock.seconds[k] - before_steps.get(k, 0.0) for k in ("eval", "checkpoint")}
    finally:
        progress.close()
        prefetcher.close()
        with clock("checkpoint"):
            checkpointer.close()  # waits for the last save
        writer.close()
    if start < num_steps:  # the final wait for the last save counts as checkpoint time, not steps
        summary["phase_seconds"] = {
            "startup": to_first_step - before_steps.get("eval", 0.0) - before_steps.get("compile_wait", 0.0),
            "compile_wait": before_steps.get("compile_wait", 0.0),
            "steps": steps_wall - in_loop["eval"] - in_loop["checkpoint"],
            "eval": clock.seconds["eval"], "checkpoint": clock.seconds["checkpoint"]}
    summary["wall_seconds"] = time.perf_counter() - run_start
    summary["final_step"] = int(jax.device_get(state.step))
    summary_path = os.path.join(workdir, SUMMARY_FILE)
    if start >= num_steps and os.path.exists(summary_path):
        return read_json(summary_path, "run summary")  # nothing ran: the summary stands
    if lead:
        summary.update(whole_run_evaluations(workdir))
        write_json(summary_path, summary, indent=2, sort_keys=True)
    _echo_summary(summary, task.headline_metrics, echo)
    return summary


def whole_run_evaluations(workdir: str) -> dict:
    """initial_eval, final_eval and best_eval_loss over every evaluation the workdir's run has
    logged, including those before a resume (metrics.jsonl keeps them)."""
    evals = read_metrics(workdir, "eval")
    values = lambda record: {k: v for k, v in record.items() if k not in ("step", "kind")}  # noqa: E731
    out = {}
    if evals:
        out["final_eval"] = values(evals[-1])
        if evals[0]["step"] == 0:
            out["initial_eval"] = values(evals[0])
        losses = [r["loss"] for r in evals if isinstance(r.get("loss"), float)]
        if losses:
            out["best_eval_loss"] = min(losses)
    return out


def _run_steps(task, config, workdir, state, step_fn, step_rng, start, num_steps, prefetcher, eval_step,
               eval_batches, checkpointer, writer, progress, peak, summary, process_start, stop, clock):
    """The step loop. With `train.stop_at_eval_loss` > 0 it ends (after a checkpoint) at the
    first evaluation whose loss is at or below that target, and the summary records when."""
    train_cfg = config.train
    target = float(train_cfg.get("stop_at_eval_loss", 0.0))
    per_call = int(train_cfg.get("steps_per_call", 1))
    meter = _Throughput()
    pending = None  # (first step of the last call, its metrics still on the device)
    last_train = {}
    timing = {"rate": 0.0, "step_seconds": 0.0, "mfu": 0.0}  # of the last interval with steps in it

    def fetch(item):
        """Waits for one call's metrics (one step's, or [K] for K steps per call) and logs them."""
        first, metrics = item
        stacked = {k: np.atleast_1d(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
        for i in range(per_call):
            record({k: float(v[i]) for k, v in stacked.items()}, first + i + 1)

    def record(values, step):
        """One step's metrics; stops on a non-finite loss before anything is saved."""
        nonlocal last_train
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            checkpointer.wait()  # the last save finished and its checksums written
            saved = checkpointer.steps()
            problem = checksums.verify_or_explain(checkpointer.directory, saved[-1]) if saved else None
            if not saved:
                where = "no checkpoint had been saved yet"
            elif problem is None:
                where = f"the last checkpoint (step {saved[-1]}) is intact (checksums verified) in {checkpointer.directory}"
            else:
                where = f"the last checkpoint is step {saved[-1]} in {checkpointer.directory} ({problem})"
            raise TrainingDiverged(f"training diverged: {bad[0]} is {values[bad[0]]} at step {step}; "
                                   f"stopped without saving, {where}")
        if step % train_cfg.log_every == 0 or step == num_steps:
            steps, elapsed = meter.read()
            if steps:  # else no step was dispatched since the last record: its interval's timing stands
                timing["rate"] = steps * task.items_per_step / elapsed if elapsed > 0 else 0.0
                timing["step_seconds"] = elapsed / steps
                timing["mfu"] = task.flops_per_step * steps / max(elapsed, 1e-9) / peak if peak else 0.0
            rate = timing["rate"]
            values.update({f"{task.item_name}_seen": step * task.items_per_step,
                           f"{task.item_name}_per_second": rate, "step_seconds": timing["step_seconds"]})
            if peak and task.flops_per_step:
                values["mfu"] = timing["mfu"]
            writer.write(step, "train", values)
            shown = {k: f"{values[k]:.4f}" for k in task.headline_metrics if k in values}
            progress.set_postfix(**shown, **{f"{task.item_name}/s": f"{rate:,.0f}"})
            meter.reset()
        last_train = values

    for step in range(start, num_steps, per_call):
        batch = prefetcher.get(step, state)
        state, metrics = step_fn(state, batch, step_rng)  # queued; runs while we fetch the last one
        meter.tick(per_call)
        if pending is not None:
            fetch(pending)
        pending = (step, metrics)
        progress.update(per_call)
        done = step + per_call
        eval_due = done % train_cfg.eval_every == 0 or done == num_steps
        save_due = done % train_cfg.checkpoint_every == 0 or done == num_steps
        if eval_due or save_due:
            fetch(pending)
            pending = None
            if eval_due:
                with clock("eval"):
                    result = evaluate(eval_step, state, eval_batches, task.summarize_eval)
                    if task.on_eval is not None:
                        result.update(task.on_eval(state, done, workdir))
                result["elapsed_seconds"] = time.perf_counter() - process_start
                writer.write(done, "eval", result)
                progress.write(f"step {done}: {format_eval(result)}")
            reached = eval_due and target > 0 and result.get("loss", math.inf) <= target
            if save_due or reached:
                with clock("checkpoint"):
                    checkpointer.save(done, state)
            meter.reset()
            if reached:
                summary["target_reached"] = {"eval_loss": result["loss"], "target": target, "step": done,
                                             "elapsed_seconds": result["elapsed_seconds"]}
                progress.write(f"validation loss {result['loss']:.4f} <= {target} at step {done}, "
                               f"{result['elapsed_seconds']:.1f} s after start: stopping")
                break
        if stop.requested and done < num_steps:
            if pending is not None:
                fetch(pending)
            if not save_due:
                checkpointer.save(done, state)
            raise TrainingInterrupted(f"interrupted ({stop.requested}) at step {done}, saved there; resume with "
                                      f"the same command")
    return state, last_train


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived: the run stopped after the step in flight, with a checkpoint."""


class StopRequest:
    """While active, SIGINT (Ctrl-C) and SIGTERM ask the loop to stop after the call in flight
    (a checkpoint is saved there) instead of killing it mid-step; a second signal stops at once."""

    def __init__(self):
        self.requested = ""
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _with_frozen(step_fn, frozen, state, batch, rng):
    return step_fn(state, batch, rng, *frozen)


class HostBatches:
    """Batches that depend on the current model: task.host_batch(state, step), made on the host
    when the step comes (never ahead, since the state it needs is the previous step's result)."""

    def __init__(self, task: Task, placement):
        self._task, self._placement = task, placement

    def get(self, step: int, state):
        return self._placement.put_train(self._task.host_batch(state, step))

    def close(self) -> None:
        pass


def start_from_run(state, init_from: str, placement, echo):
    """A fine-tuning start (`train.init_from`): the parameters of another run's newest
    checkpoint, checked to fit this model, with this run's fresh optimizer state (optax
    initialises every optimizer we build from the parameters' shapes alone) and extra state."""
    source = restore_params(init_from, expect_params=state.params)
    echo(f"initialised the parameters from {init_from} ({source.config.get('task')} run, step {source.step}); "
         f"fresh optimizer")
    return state.replace(params=jax.device_put(source.params, placement.state.params))


def check_steps_per_call(train_cfg, task: Optional[Task] = None) -> int:
    """`train.steps_per_call` K (optimizer steps per compiled call): every step at which the
    loop logs, evaluates, checkpoints or stops must fall at the end of a call; a task whose
    batches come from the current model (host_batch) takes one step per call."""
    per_call = int(train_cfg.get("steps_per_call", 1))
    if per_call < 1:
        raise config_lib.ConfigError(f"train.steps_per_call must be at least 1, got {per_call}")
    if task is not None and task.host_batch is not None and per_call != 1:
        raise config_lib.ConfigError(f"train.steps_per_call={per_call}: this task makes each batch from the "
                                     f"current model (host_batch), so it needs train.steps_per_call=1")
    for field in ("num_steps", "log_every", "eval_every", "checkpoint_every"):
        if train_cfg[field] % per_call:
            raise config_lib.ConfigError(f"train.steps_per_call={per_call} must divide train.{field} "
                                         f"({train_cfg[field]})")
    return per_call


def _echo_summary(summary: dict, headline: tuple, echo) -> None:
    lines = [f"done: step {summary['final_step']} in {summary['wall_seconds']:.1f} s"]
    if "compile_seconds" in summary:
        lines.append(f"compile {summary['compile_seconds']:.1f} s")
    if summary.get("last_train"):
        lines.append(", ".join(f"train {k} {v:.4f}" for k, v in summary["last_train"].items()
                               if k in headline))
    if summary.get("final_eval"):
        lines.append(format_eval(summary["final_eval"]))
    echo("; ".join(lines))
