"""Where a task's state and batches live on the device mesh, and its steps compiled for it.

The loop and the multi-device tests both go through `place`, so what the tests check is
what training runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from aigc_jax import parallel


@dataclasses.dataclass
class Placement:
    mesh: Mesh
    state: Any  # shardings of the TrainState
    train_batch: Any  # shardings of one train batch
    eval_batch: Any  # shardings of one evaluation batch (None without evaluation)
    replicated: Any
    train_batch_axis: int
    steps_per_call: int = 1

    def stack_train_batches(self, batches: list):
        """K consecutive host batches -> one batch with a leading [K] axis (K > 1 only)."""
        if self.steps_per_call == 1:
            return batches[0]
        return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *batches)

    def init(self, task, rng):
        return jax.jit(task.init, out_shardings=self.state)(rng)

    def jit_train_step(self, task):
        """train_step(state, batch, rng) with the state donated and every sharding explicit.
        With steps_per_call K > 1 one call runs K optimizer steps (a lax.scan over a batch
        stacked [K, ...]) and returns each step's metrics stacked [K]."""
        step = task.train_step
        if self.steps_per_call > 1:
            def step(state, batches, rng):
                return jax.lax.scan(lambda s, batch: task.train_step(s, batch, rng), state, batches)
        return jax.jit(step, donate_argnums=(0,),
                       in_shardings=(self.state, self.train_batch, self.replicated),
                       out_shardings=(self.state, self.replicated))

    def jit_eval_step(self, task):
        return jax.jit(task.eval_step, in_shardings=(self.state, self.eval_batch), out_shardings=self.replicated)

    def put_train(self, batch):
        return parallel.put_batch(batch, self.train_batch)

    def put_eval(self, batch):
        return parallel.put_batch(batch, self.eval_batch)


def place(task, mesh: Mesh, rng, steps_per_call: int = 1) -> Placement:
    """Shardings for `task` on `mesh`; a batch that does not divide over the data axes is an
    error naming the numbers, raised before anything compiles."""
    state = parallel.state_sharding(jax.eval_shape(task.init, rng), mesh, task.sharding_rules)
    first = task.train_batch(0)
    parallel.check_batch(first, mesh, task.train_batch_axis, "the train batch (train.batch_size / grad_accum_steps)")
    batch_axis = task.train_batch_axis
    if steps_per_call > 1:  # calls take [K, ...] stacks of batches
        first = jax.tree_util.tree_map(lambda leaf: np.stack([leaf] * steps_per_call), first)
        batch_axis += 1
    eval_batches = task.eval_batches()
    eval_sharding = None
    if eval_batches:
        parallel.check_batch(eval_batches[0], mesh, 0, "the evaluation batch (eval.batch_size)")
        eval_sharding = parallel.batch_sharding(eval_batches[0], mesh, 0)
    return Placement(mesh=mesh, state=state, train_batch=parallel.batch_sharding(first, mesh, batch_axis),
                     eval_batch=eval_sharding, replicated=parallel.replicated(mesh),
                     train_batch_axis=batch_axis, steps_per_call=steps_per_call)
