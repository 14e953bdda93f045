"""Where a task's state and batches live on the device mesh, and its steps compiled for it.

The loop and the multi-device tests both go through `place`, so what the tests check is
what training runs.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Optional

import jax
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
    abstract_state: Any = None  # shapes, dtypes and shardings of the TrainState
    abstract_train_batch: Any = None  # ... of one call's train batch
    abstract_eval_batch: Any = None  # ... of one evaluation batch (None without evaluation)
    frozen: Any = None  # shardings of the task's frozen models (None without them)
    abstract_frozen: Any = None

    def frozen_args(self, frozen) -> tuple:
        """The extra trailing argument of the steps: (frozen,) for a task with frozen models."""
        return () if self.frozen is None else (frozen,)

    def stack_train_batches(self, batches: list):
        """K consecutive host batches -> one batch with a leading [K] axis (K > 1 only)."""
        if self.steps_per_call == 1:
            return batches[0]
        return jax.tree_util.tree_map(lambda *leaves: parallel.stack_leaves(leaves), *batches)

    def call_batch(self, task, first: int):
        """The device batch of the call whose first optimizer step is `first`: the task's batches
        for its K steps, stacked [K, ...] when K > 1, placed with the train-batch shardings."""
        batches = [task.train_batch(first + i) for i in range(self.steps_per_call)]
        return self.put_train(self.stack_train_batches(batches))

    def init(self, task, rng):
        return jax.jit(task.init, out_shardings=self.state)(rng)

    def jit_train_step(self, task):
        """train_step(state, batch, rng[, frozen]) with the state donated and every sharding
        explicit. With steps_per_call K > 1 one call runs K optimizer steps (a lax.scan over a
        batch stacked [K, ...]) and returns each step's metrics stacked [K]."""
        step = task.train_step
        if self.steps_per_call > 1:
            def step(state, batches, rng, *frozen):
                return jax.lax.scan(lambda s, batch: task.train_step(s, batch, rng, *frozen), state, batches)
        return jax.jit(step, donate_argnums=(0,),
                       in_shardings=(self.state, self.train_batch, self.replicated) + self.frozen_args(self.frozen),
                       out_shardings=(self.state, self.replicated))

    def jit_eval_step(self, task):
        return jax.jit(task.eval_step, in_shardings=(self.state, self.eval_batch) + self.frozen_args(self.frozen),
                       out_shardings=self.replicated)

    def put_frozen(self, frozen):
        """The frozen models' parameters placed once on the mesh (None without them)."""
        return None if self.frozen is None else jax.device_put(frozen, self.frozen)

    def compile_ahead(self, task, step_rng) -> "AheadOfTime":
        """Starts compiling the train and eval steps from the shapes alone, on helper threads, so
        that compilation overlaps initialisation, restoring a checkpoint and each other."""
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="compile")

        def compile_train():
            start = time.perf_counter()
            lowered = self.jit_train_step(task).lower(self.abstract_state, self.abstract_train_batch, step_rng,
                                                      *self.frozen_args(self.abstract_frozen))
            compiled = lowered.compile()
            return compiled, time.perf_counter() - start

        train = pool.submit(compile_train)
        evaluation = None
        if self.abstract_eval_batch is not None:
            evaluation = pool.submit(lambda: self.jit_eval_step(task).lower(
                self.abstract_state, self.abstract_eval_batch, *self.frozen_args(self.abstract_frozen)).compile())
        pool.shutdown(wait=False)  # the threads end with their compiles
        return AheadOfTime(train, evaluation)

    def put_train(self, batch):
        return parallel.put_batch(batch, self.train_batch)

    def put_eval(self, batch):
        return parallel.put_batch(batch, self.eval_batch)


@dataclasses.dataclass
class AheadOfTime:
    """Futures of the compiled steps: train -> (executable, compile seconds); eval -> executable."""
    train: concurrent.futures.Future
    eval: Optional[concurrent.futures.Future]


def abstract(tree, shardings):
    """Arrays (or shapes) -> ShapeDtypeStructs carrying the given shardings, for ahead-of-time lowering."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def place(task, mesh: Mesh, rng, steps_per_call: int = 1) -> Placement:
    """Shardings for `task` on `mesh`; a batch that does not divide over the data axes is an
    error naming the numbers, raised before anything compiles."""
    state_shapes = jax.eval_shape(task.init, rng)
    state = parallel.state_sharding(state_shapes, mesh, task.sharding_rules)
    first = task.train_batch(0)
    parallel.check_batch(first, mesh, task.train_batch_axis, "the train batch (train.batch_size / grad_accum_steps)")
    batch_axis = task.train_batch_axis
    if steps_per_call > 1:  # calls take [K, ...] stacks of batches
        first = jax.tree_util.tree_map(lambda leaf: parallel.stack_leaves([leaf] * steps_per_call), first)
        batch_axis += 1
    eval_batches = task.eval_batches()
    eval_sharding = abstract_eval = None
    if eval_batches:
        parallel.check_batch(eval_batches[0], mesh, 0, "the evaluation batch (eval.batch_size)")
        eval_sharding = parallel.batch_sharding(eval_batches[0], mesh, 0)
        abstract_eval = abstract(eval_batches[0], eval_sharding)
    train_sharding = parallel.batch_sharding(first, mesh, batch_axis)
    frozen = abstract_frozen = None
    if task.frozen is not None:  # sharded by the task's rules, like its own parameters
        frozen = jax.tree_util.tree_map(lambda spec: jax.sharding.NamedSharding(mesh, spec),
                                        parallel.param_specs(task.frozen, mesh, task.sharding_rules),
                                        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
        abstract_frozen = abstract(task.frozen, frozen)
    return Placement(frozen=frozen, abstract_frozen=abstract_frozen, mesh=mesh, state=state, train_batch=train_sharding,
                     eval_batch=eval_sharding, replicated=parallel.replicated(mesh),
                     train_batch_axis=batch_axis, steps_per_call=steps_per_call,
                     abstract_state=abstract(state_shapes, state),
                     abstract_train_batch=abstract(first, train_sharding), abstract_eval_batch=abstract_eval)
