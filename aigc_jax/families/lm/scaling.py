"""The LM at scale on paper: its train state from shapes alone, the bytes each device holds
on a mesh, its FLOPs per token, and its train step compiled ahead of time for a mesh.

Nothing here allocates a parameter: the state is `jax.eval_shape` of the task's init, and the
step is lowered from `jax.ShapeDtypeStruct`s that carry their shardings. Two different memory
figures come out of it, and they are kept apart:

  state arithmetic  (`state_bytes_per_device`): for every leaf of the TrainState (parameters,
      Adam's two moments, step counters) the shape of the shard one device holds under the
      leaf's sharding times the dtype's item size, summed. This is exact for any mesh, also
      an abstract one of 1,024 devices that this machine cannot build.
  XLA's analysis  (`AotResult.memory`): `compiled.memory_analysis()` of the partitioned step
      on a real (here: simulated CPU) mesh: its per-device argument, output and temporary
      buffers. Temporary bytes include the gradients and the activations the backward pass
      keeps; the CPU backend's buffer assignment is not a GPU's, so they are an estimate.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
import types
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec as P

from aigc_jax import parallel
from aigc_jax.families.lm import task as lm_task
from aigc_jax.nn.params import count_params
from aigc_jax.nn.transformer import SHARDING_RULES, TransformerLM, flops_per_token
from aigc_jax.train import placement as placement_lib
from aigc_jax.train.optimizers import make_optimizer
from aigc_jax.train.state import TrainState


def build_model(config, remat: Optional[bool] = None) -> TransformerLM:
    """The config's TransformerLM over its data.vocab_size entries; `remat` overrides model.remat."""
    model = lm_task.build_model(config, config.data.vocab_size)
    return model if remat is None else model.clone(remat=remat)


def abstract_state(config, model: Optional[TransformerLM] = None) -> TrainState:
    """The TrainState the LM task's init would make (parameters + optimizer state), as
    ShapeDtypeStructs: jax.eval_shape, no allocation."""
    model = model or build_model(config)
    tx, _ = make_optimizer(config.optimizer, config.train.num_steps)
    tokens = jax.ShapeDtypeStruct((1, config.model.context_length), jnp.int32)

    def init(rng):
        return TrainState.create(model.init(rng, jnp.zeros(tokens.shape, tokens.dtype))["params"], tx)

    return jax.eval_shape(init, jax.random.key(0))


def abstract_mesh(data: int, fsdp: int, tensor: int) -> AbstractMesh:
    """A mesh of data x fsdp x tensor devices described by its axis sizes only (no devices):
    enough to shard shapes for the state arithmetic of a pod this machine does not have."""
    return AbstractMesh((data, fsdp, tensor), parallel.MESH_AXES)


def state_shardings(state, mesh) -> Any:
    """The training loop's shardings of the LM state (aigc_jax.parallel.state_sharding with the
    Transformer's rules): parameters split along embed over fsdp and heads / mlp / vocab over
    tensor where the mesh axis divides the dimension, optimizer moments like their parameter."""
    return parallel.state_sharding(state, mesh, SHARDING_RULES)


def shard_bytes(leaf, sharding: NamedSharding) -> int:
    """Bytes of the one shard a device holds: prod(shard shape) x item size.

    The loop's specs split a dimension only where the mesh axes divide it evenly
    (parallel.spec_for), so every device's shard has this shape; the check below keeps it so."""
    shape = tuple(leaf.shape)
    shard = sharding.shard_shape(shape)
    for size, part, names in zip(shape, shard, tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))):
        names = names if isinstance(names, tuple) else (names,) if names else ()
        ways = math.prod(sharding.mesh.shape[n] for n in names)
        if part * ways != size:
            raise ValueError(f"shape {shape} is split unevenly by {sharding.spec}")
    return math.prod(shard) * np.dtype(leaf.dtype).itemsize


def state_bytes_per_device(state, shardings) -> dict:
    """{'params', 'opt_state', 'other', 'total'}: bytes one device holds of each part of the
    TrainState (every device holds the same, the most any device holds), and 'unsharded':
    the total on a single device."""
    out = {"params": 0, "opt_state": 0, "other": 0, "unsharded": 0}
    for part in ("params", "opt_state", "step", "extra"):
        leaves = jax.tree_util.tree_leaves(getattr(state, part))
        sharding_leaves = jax.tree_util.tree_leaves(getattr(shardings, part))
        key = part if part in out else "other"
        for leaf, sharding in zip(leaves, sharding_leaves, strict=True):
            out[key] += shard_bytes(leaf, sharding)
            out["unsharded"] += math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
    out["total"] = out["params"] + out["opt_state"] + out["other"]
    return out


def training_flops_per_token(config, num_params: int) -> float:
    """6 N + 12 L C T (forward + backward; aigc_jax.nn.transformer.flops_per_token) at T = context."""
    return flops_per_token(build_model(config), num_params, config.model.context_length)


@dataclasses.dataclass
class AotResult:
    """One ahead-of-time compile of the LM train step.

    batch_shape: [A, b, T + 1] of the global batch (A micro-batches of b sequences);
    lower_seconds / compile_seconds: tracing + lowering to StableHLO, and XLA's compile;
    memory: compiled.memory_analysis() per device (XLA's analysis, None if the backend gives none);
    compiled: the executable (its input_shardings show where XLA put each leaf)."""
    batch_shape: tuple
    lower_seconds: float
    compile_seconds: float
    memory: Optional[dict]
    compiled: Any


def micro_batching(config, mesh: Mesh, sequences_per_shard: int) -> tuple[int, int]:
    """(A, b): the config's global batch of train.batch_size sequences as A micro-batches of
    b = sequences_per_shard x (data x fsdp) sequences, so each batch shard holds
    `sequences_per_shard` sequences per micro-step (the tensor axis shares its shard)."""
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    micro = sequences_per_shard * ways
    if config.train.batch_size % micro:
        raise ValueError(f"train.batch_size {config.train.batch_size} does not divide into micro-batches of "
                         f"{sequences_per_shard} x {ways} sequences")
    return config.train.batch_size // micro, micro


def memory_stats(compiled) -> Optional[dict]:
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return {name: int(getattr(stats, f"{name}_size_in_bytes")) for name in ("argument", "output", "alias", "temp")}


def compile_train_step(config, mesh: Mesh, *, sequences_per_shard: int = 1, remat: bool = True) -> AotResult:
    """Lowers and compiles the LM family's own train step (families/lm/task.train_step, jitted as
    the loop jits it: Placement.jit_train_step, state donated, every sharding explicit) for
    `mesh`, from abstract inputs only: the state and batch as ShapeDtypeStructs with shardings.
    The batch is the config's global batch split into micro-batches (`micro_batching`); with
    `remat` each block is recomputed in the backward pass (model.remat), so the activations
    kept are the blocks' inputs."""
    model = build_model(config, remat=remat)
    tx, schedule = make_optimizer(config.optimizer, config.train.num_steps)
    state = abstract_state(config, model)
    shardings = state_shardings(state, mesh)
    accum, micro = micro_batching(config, mesh, sequences_per_shard)
    batch = jax.ShapeDtypeStruct((accum, micro, config.model.context_length + 1), jnp.int32)
    batch_sharding = parallel.batch_sharding(batch, mesh, axis=1)
    rng = jax.eval_shape(lambda: jax.random.key(0))
    replicated = NamedSharding(mesh, P())
    place = placement_lib.Placement(mesh=mesh, state=shardings, train_batch=batch_sharding, eval_batch=None,
                                    replicated=replicated, train_batch_axis=1)
    step = functools.partial(lm_task.train_step, model=model, tx=tx, schedule=schedule,
                             z_loss_coef=config.loss.z_loss)
    jitted = place.jit_train_step(types.SimpleNamespace(train_step=step))  # the loop's jit, on this step
    start = time.perf_counter()
    lowered = jitted.lower(placement_lib.abstract(state, shardings), placement_lib.abstract(batch, batch_sharding),
                           jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=replicated))
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    return AotResult(batch_shape=batch.shape, lower_seconds=lowered_at - start, compile_seconds=done - lowered_at,
                     memory=memory_stats(compiled), compiled=compiled)


def num_params(state) -> int:
    return count_params(state.params)


@dataclasses.dataclass(frozen=True)
class PodAssumptions:
    """What "a plausible pod" means here: GPUs of `device_memory` bytes in nodes of `node`
    (tensor parallelism inside a node, over its fast links; FSDP across nodes), each sustaining
    `utilisation` of a `peak_flops` dense matmul peak, and a training run of `days`.
    Defaults: A100 80 GB (312 TFLOP/s bf16 dense peak, 8 per node), 40% model FLOP utilisation
    (Megatron-LM sustained 52% of it for a 1T-parameter model on 3,072 A100s: Narayanan et al.
    2021), 30 days."""
    peak_flops: float = 312e12
    utilisation: float = 0.4
    days: float = 30.0
    device_memory: float = 80e9
    node: int = 8


def pod_devices(total_flops: float, pod: PodAssumptions = PodAssumptions()) -> int:
    """The fewest devices, a power of two and at least one node, that do `total_flops` within
    pod.days: ceil(total / (peak x utilisation x seconds)) rounded up to a power of two."""
    needed = total_flops / (pod.peak_flops * pod.utilisation * pod.days * 86400.0)
    return max(pod.node, 2 ** math.ceil(math.log2(max(needed, 1.0))))


def pod_mesh_shape(devices: int, batch_size: int, pod: PodAssumptions = PodAssumptions()) -> tuple[int, int, int]:
    """(data, fsdp, tensor) = (1, devices / node, node): tensor parallel over a node, fully sharded
    data parallel across nodes; the global batch must divide over the fsdp axis."""
    tensor = min(pod.node, devices)
    fsdp = devices // tensor
    if batch_size % fsdp:
        raise ValueError(f"a batch of {batch_size} sequences does not divide over fsdp = {fsdp}")
    return 1, fsdp, tensor


def training_days(total_flops: float, devices: int, pod: PodAssumptions = PodAssumptions()) -> float:
    return total_flops / (devices * pod.peak_flops * pod.utilisation) / 86400.0
