"""Reading a trained run back: the one way every family, command and analysis loads parameters.

`restore_params(workdir)` needs no template and no data: the newest checkpoint's arrays are
read by the layout Orbax saved with them, so it serves any family (a model to sample from,
a frozen reference policy or reward model, an image tokenizer, a fine-tuning start). It only
reads: it never moves, creates or deletes anything in the workdir, so it is safe beside a
run that is still training (a checkpoint that vanishes or fails to load is skipped for the
next older one).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from aigc_jax import config as config_lib
from aigc_jax.train import checksums
from aigc_jax.train.checkpoints import CheckpointError, describe_mismatch, quiet_storage_logs, state_layout

CHECKPOINTS_DIR = "checkpoints"


@dataclasses.dataclass
class RestoredRun:
    """What a training run left: its saved config, and the newest checkpoint's parameters, extra
    state (EMA weights, batch statistics, ...) and step."""
    workdir: str
    config: Any
    params: Any
    extra: Any
    step: int


def checkpoint_steps(directory: str) -> list[int]:
    """Steps of the complete checkpoints in `directory` (Orbax renames a finished save to its
    step number; temporary directories are not counted), ascending."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _abstract(metadata_tree):
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device) if hasattr(x, "shape") else x,
        metadata_tree, is_leaf=lambda x: hasattr(x, "shape"))


def restore_params(workdir: str, *, task: Optional[str] = None, expect_params: Any = None) -> RestoredRun:
    """The newest restorable checkpoint of the run in `workdir`.

    task: the family the run must be (an error naming both otherwise).
    expect_params: a pytree of arrays or shapes the parameters must match (an error naming the
        first arrays that differ otherwise).
    Raises ConfigError (no workdir or config, wrong family), FileNotFoundError (no checkpoint)
    or CheckpointError (none of the checkpoints could be read, or they do not fit).
    """
    config = config_lib.load_saved_config(workdir)
    if task is not None and config.get("task") != task:
        raise config_lib.ConfigError(f"workdir {workdir!r} holds a {config.get('task')!r} run, not {task!r}")
    directory = os.path.abspath(os.path.join(workdir, CHECKPOINTS_DIR))
    steps = checkpoint_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory!r}: train this workdir first")
    with quiet_storage_logs():  # Orbax warns that a read-only manager saves nothing: three lines of noise
        manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True),
                                        item_handlers=ocp.StandardCheckpointHandler())
    failures = []
    try:
        for step in reversed(steps):
            damage = checksums.verify(directory, step)
            if damage:
                failures.append(f"{step} ({damage})")
                continue
            try:
                metadata = manager.item_metadata(step)
                tree = getattr(metadata, "tree", metadata)
                state = manager.restore(step, args=ocp.args.StandardRestore(_abstract(tree)))
            except Exception as e:  # a damaged or vanished checkpoint: try the next older one
                failures.append(f"{step} ({type(e).__name__})")
                continue
            params = state["params"]
            if expect_params is not None:
                mismatch = describe_mismatch(state_layout(params), state_layout(expect_params))
                if mismatch:
                    raise CheckpointError(f"the parameters of {directory}/{step} do not fit: {mismatch}")
            return RestoredRun(workdir=workdir, config=config, params=params, extra=state.get("extra", {}),
                               step=int(state["step"]))
    finally:
        manager.close()
    raise CheckpointError(f"no checkpoint in {directory!r} could be read: {', '.join(failures)}")
