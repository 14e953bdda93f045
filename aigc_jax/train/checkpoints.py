"""Orbax checkpoints: periodic, atomic, keep the last N, resume from the newest good one.

Orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoints untouched. A checkpoint that fails
to restore is reported, moved aside into `corrupt/` (never deleted), and the next older
one is tried.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from aigc_jax.files import DiskFull, is_disk_full
from aigc_jax.train import checksums

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that is intact but does not fit the state this config builds."""


def _key_name(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def state_layout(tree) -> dict[str, tuple]:
    """{'params.block_0.attn.qkv.kernel': shape, ...}: array names as Orbax stores them."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {".".join(_key_name(k) for k in path): tuple(np.shape(leaf)) for path, leaf in leaves}


def saved_layout(metadata) -> dict[str, tuple]:
    tree = getattr(metadata, "tree", metadata)
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "name"))
    return {leaf.name: tuple(leaf.shape) for leaf in leaves if hasattr(leaf, "name")}


def describe_mismatch(saved: dict, expected: dict) -> str:
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    reshaped = sorted(n for n in set(saved) & set(expected) if saved[n] != expected[n])
    parts = []
    if missing:
        parts.append(f"this config has arrays the checkpoint lacks ({', '.join(missing[:3])})")
    if extra:
        parts.append(f"the checkpoint has arrays this config lacks ({', '.join(extra[:3])})")
    if reshaped:
        n = reshaped[0]
        parts.append(f"{n} is {saved[n]} in the checkpoint but {expected[n]} here")
    return "; ".join(parts)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else ""


@contextlib.contextmanager
def quiet_storage_logs():
    """A damaged checkpoint makes TensorStore and asyncio log hundreds of lines of tracebacks;
    the one warning line of _report_corrupt says what happened."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "orbax", "tensorstore", "jax")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _DropOrbaxErrors(logging.Filter):
    """Orbax logs a failed background save with a traceback from each of its threads (about 300
    lines for a full disk); the same error reaches the main thread at the next wait, where it
    becomes one line (DiskFull, or the CLI's "error: ..."), so the logged copies are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


def _drop_closed_loop_callbacks() -> None:
    """After a failed save, TensorStore's completion callbacks reach Orbax's already-closed event
    loop and each prints an "Event loop is closed" traceback through sys.unraisablehook (dozens,
    at random moments, even after the run has ended). They carry nothing: the failure itself is
    raised in the main thread. Only that one message is dropped; every other one is passed on."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    hook.drops_closed_loop_callbacks = True
    sys.unraisablehook = hook


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self._unsummed: list[int] = []  # saved steps whose checksums are not written yet
        self._saving_bytes = 0  # the bytes of the saves in flight
        self._failed = False  # a save failed: nothing more is written or waited for
        _drop_closed_loop_callbacks()
        self._log_filter = _DropOrbaxErrors()
        logging.getLogger("absl").addFilter(self._log_filter)
        self._open()

    def _open(self) -> None:
        options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_handlers=ocp.StandardCheckpointHandler())

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` as `step` (asynchronously; `wait` blocks until it is on disk).
        The previous save's checksums are written first (it has finished by then)."""
        self._write_checksums()
        self._saving_bytes = sum(int(np.size(leaf)) * np.dtype(leaf.dtype).itemsize
                                 for leaf in jax.tree_util.tree_leaves(state) if hasattr(leaf, "dtype"))
        self._unsummed.append(step)
        with self._save_failures():
            self.manager.save(step, args=ocp.args.StandardSave(state))

    def wait(self) -> None:
        self._write_checksums()

    @contextlib.contextmanager
    def _save_failures(self):
        """A save that fails ends the run's writing here: a full disk is one DiskFull line naming
        the checkpoint's bytes, with the partial directory removed (the earlier checkpoints are
        untouched); any other failure is re-raised as it is."""
        try:
            yield
        except Exception as e:
            self._failed = True
            steps = ", ".join(map(str, self._unsummed))
            self._remove_partial_saves()
            if is_disk_full(e):
                raise DiskFull(f"the checkpoint of step {steps} (its arrays; more with metadata) in", self.directory,
                               self._saving_bytes) from None
            raise

    def _remove_partial_saves(self) -> None:
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if ".orbax-checkpoint-tmp" in name:
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def _write_checksums(self) -> None:
        if self._failed:
            return
        with self._save_failures():
            self.manager.wait_until_finished()
        on_disk = set(self.steps())
        for step in self._unsummed:
            if step in on_disk:
                checksums.write(self.directory, step)
        self._unsummed = []
        checksums.prune(self.directory, on_disk)

    def restore(self, step: int, template: Any) -> Any:
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_latest(self, template: Any) -> tuple[Optional[Any], Optional[int]]:
        """Restores the newest checkpoint that loads; returns (state, step), or (None, None) when
        the directory holds no checkpoint.

        A checkpoint whose arrays do not match the template (a changed model or optimizer) is an
        error that names the arrays. A checkpoint that fails to load is damaged: once an older one
        restores, the damaged newer ones are moved to `<directory>/../corrupt/<step>` with one
        warning line each. When none restores, nothing is moved and the error names them all:
        the run must not silently start over.
        """
        expected = state_layout(template)
        failures = []
        for step in reversed(self.steps()):
            try:
                with quiet_storage_logs():
                    mismatch = describe_mismatch(saved_layout(self.manager.item_metadata(step)), expected)
            except Exception as e:  # unreadable metadata: a damaged checkpoint
                failures.append((step, e))
                continue
            if mismatch:
                raise CheckpointError(
                    f"checkpoint at step {step} in {self.directory} does not fit this config: {mismatch}. "
                    f"A changed model or optimizer setting changes the saved state; resume with the saved "
                    f"config.json or use a new --workdir")
            damage = checksums.verify(self.directory, step)
            if damage:
                failures.append((step, CheckpointError(damage)))
                continue
            try:
                with quiet_storage_logs():
                    state = self.restore(step, template)
            except Exception as e:  # orbax/tensorstore raise many types for damaged files
                failures.append((step, e))
                continue
            for bad_step, error in failures:
                self._report_corrupt(bad_step, error)
            return state, step
        if failures:
            listed = "; ".join(f"step {step}: {type(e).__name__}: {_first_line(e)}" for step, e in failures)
            raise CheckpointError(f"none of the checkpoints in {self.directory} could be restored ({listed}); "
                                  f"nothing was moved or overwritten. Remove or repair them to start over, or "
                                  f"use a new --workdir")
        return None, None

    def _report_corrupt(self, step: int, error: Exception) -> None:
        moved = self._quarantine(step)
        detail = _first_line(error)
        message = (f"checkpoint at step {step} is corrupt ({type(error).__name__}: {detail}); moved it to "
                   f"{moved} and falling back to the previous checkpoint")
        log.warning(message)
        print(f"warning: {message}", flush=True)

    def _quarantine(self, step: int) -> str:
        source = os.path.join(self.directory, str(step))
        target_root = os.path.join(os.path.dirname(self.directory), "corrupt")
        os.makedirs(target_root, exist_ok=True)
        target = os.path.join(target_root, str(step))
        suffix = 0
        while os.path.exists(target):
            suffix += 1
            target = os.path.join(target_root, f"{step}.{suffix}")
        shutil.move(source, target)
        self.manager.close()
        self._open()
        return target

    def close(self) -> None:
        try:
            self._write_checksums()
        finally:
            if not self._failed:
                self.manager.close()
            logging.getLogger("absl").removeFilter(self._log_filter)
