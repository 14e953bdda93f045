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
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

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
def _quiet_storage_logs():
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


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self._unsummed: list[int] = []  # saved steps whose checksums are not written yet
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
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self._unsummed.append(step)

    def wait(self) -> None:
        self._write_checksums()

    def _write_checksums(self) -> None:
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
                with _quiet_storage_logs():
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
                with _quiet_storage_logs():
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
        self._write_checksums()
        self.manager.close()
