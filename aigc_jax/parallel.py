"""Device mesh, sharding rules, and multi-host start-up.

One config runs unchanged from a laptop CPU to a pod: the `mesh` section names how many
devices go to each axis (data, fsdp, tensor; -1 = all the rest), parameters are mapped
to mesh axes through logical axis names, and the batch is split along data x fsdp.

  data    pure data parallelism: parameters replicated, batch split
  fsdp    batch split too, and parameters / optimizer state sharded along their
          'embed' dimension (ZeRO-3 / fully sharded data parallel)
  tensor  Megatron-style model parallelism over heads, MLP width and vocabulary
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aigc_jax import compilation_cache
from aigc_jax.config import ConfigError
from aigc_jax.host import usable_cores

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (None: replicated along that dimension).
LOGICAL_TO_MESH = {
    "batch": BATCH_AXES,
    "embed": "fsdp",
    "heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
    "length": None,
    "norm": None,
}


class MeshError(ValueError):
    """A mesh or batch that does not fit the devices; raised before anything compiles."""


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int, int]:
    """Resolves a {data, fsdp, tensor} config (one entry may be -1) against the device count."""
    sizes = [int(mesh_config.get(axis, 1) if mesh_config is not None else (-1 if axis == "data" else 1))
             for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise MeshError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise MeshError(f"mesh axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if num_devices % known:
            raise MeshError(f"mesh {dict(zip(MESH_AXES, sizes))}: the fixed axes ({known} devices) do not "
                            f"divide the {num_devices} devices")
        sizes[sizes.index(-1)] = num_devices // known
    if int(np.prod(sizes)) != num_devices:
        raise MeshError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, "
                        f"but {num_devices} are available")
    return tuple(sizes)


def make_mesh(mesh_config=None, devices: Optional[Sequence] = None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_config, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return ".".join(parts)


def logical_axes(name: str, ndim: int, rules: Sequence[tuple[str, tuple]]) -> tuple:
    """The first rule whose regex matches the parameter's dotted path and rank; else replicated."""
    for pattern, axes in rules:
        if len(axes) == ndim and re.search(pattern, name):
            return axes
    return (None,) * ndim


def spec_for(shape: tuple, axes: tuple, mesh: Mesh) -> P:
    """Maps logical axes to mesh axes, replicating a dimension the mesh axis does not divide."""
    spec = []
    for size, logical in zip(shape, axes):
        mesh_axis = LOGICAL_TO_MESH.get(logical) if logical else None
        names = mesh_axis if isinstance(mesh_axis, tuple) else (mesh_axis,) if mesh_axis else ()
        ways = int(np.prod([mesh.shape[n] for n in names])) if names else 1
        spec.append(mesh_axis if names and ways > 1 and size % ways == 0 else None)
    return P(*spec)


def param_specs(params, mesh: Mesh, rules) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, x: spec_for(np.shape(x), logical_axes(path_name(path), np.ndim(x), rules), mesh), params)


def state_sharding(state, mesh: Mesh, rules) -> Any:
    """Shardings for a whole TrainState: parameters by the rules, and every optimizer-state
    or extra leaf that mirrors a parameter (same path suffix and shape) sharded like it."""
    specs = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]:
        name = path_name(path)
        specs[name] = (tuple(np.shape(leaf)), spec_for(np.shape(leaf), logical_axes(name, np.ndim(leaf), rules), mesh))

    def leaf_sharding(path, leaf):
        name = path_name(path)
        shape = tuple(np.shape(leaf))
        for param_name, (param_shape, spec) in specs.items():
            if shape == param_shape and (name == "params." + param_name or name.endswith("." + param_name)):
                return NamedSharding(mesh, spec)
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(leaf_sharding, state)


def batch_sharding(batch, mesh: Mesh, axis: int = 0) -> Any:
    """Every batch leaf split along `axis` over data x fsdp."""
    def leaf_sharding(leaf):
        spec = [None] * np.ndim(leaf)
        spec[axis] = BATCH_AXES
        return NamedSharding(mesh, P(*spec))
    return jax.tree_util.tree_map(leaf_sharding, batch)


def check_batch(batch, mesh: Mesh, axis: int, what: str) -> None:
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    for leaf in jax.tree_util.tree_leaves(batch):
        size = np.shape(leaf)[axis]
        if size % ways:
            raise MeshError(f"{what} of {size} examples does not divide over data x fsdp = "
                            f"{mesh.shape['data']} x {mesh.shape['fsdp']} = {ways} devices")


def put_batch(batch, shardings) -> Any:
    """A host batch (identical on every process) onto the devices; each process writes
    only the shards its own devices hold, so each host feeds its slice of the batch. A leaf
    that reads its rows on demand (aigc_jax/data/prepared.py's WindowRows) is read only for those."""
    def put(leaf, sharding):
        if not getattr(leaf, "reads_rows_on_demand", False):
            leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])
    return jax.tree_util.tree_map(put, batch, shardings)


def stack_leaves(leaves: Sequence) -> Any:
    """np.stack of same-shaped batch leaves, kept lazy for leaves that read rows on demand."""
    if getattr(leaves[0], "reads_rows_on_demand", False):
        return type(leaves[0]).stack(list(leaves))
    return np.stack(leaves)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def resolve_cpu_devices(setting: int, batch_size: int, cores: Optional[int] = None) -> int:
    """How many XLA devices to split the host CPU into (`mesh.cpu_devices`): 0 leaves JAX's
    default (one); -1 means one per usable core, reduced to the largest count that divides
    the batch; N > 0 means exactly N."""
    if setting >= 0:
        return setting
    if setting != -1:
        raise MeshError(f"mesh.cpu_devices must be -1 (one per core), 0 (JAX's default) or positive, got {setting}")
    count = max(1, min(cores or usable_cores(), batch_size))
    while batch_size % count:
        count -= 1
    return count


def apply_xla_flags(config) -> str:
    """Appends the config's `xla_flags` (e.g. XLA:CPU options a recipe was tuned with) to the
    XLA_FLAGS environment variable, after any already there, and returns them. XLA reads
    XLA_FLAGS once, when JAX starts its first backend, so this must run before any
    computation; afterwards it is an error rather than a silent no-op."""
    extra = str(config.get("xla_flags", "") or "").strip()
    if not extra:
        return ""
    from jax._src import xla_bridge
    started = getattr(xla_bridge, "backends_are_initialized", lambda: False)()
    if started:
        raise ConfigError(f"xla_flags={extra!r} must be applied before JAX's first computation; "
                          f"JAX is already running in this process")
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra}".strip()
    return extra


def prepare_host(config) -> None:
    """What the command-line entry points set up from the config before any computation:
    XLA flags, the split of the CPU into devices, and the persistent compilation cache."""
    apply_xla_flags(config)
    split_host_cpu(config)
    compilation_cache.enable(config.get("compilation_cache", ""))


def split_host_cpu(config) -> int:
    """Applies `mesh.cpu_devices` to the CPU platform and returns the count applied (0: none).

    XLA runs the ops of one CPU device one after another; the small matmuls of a small model
    then use a single core. Split into several devices, the data-parallel mesh runs each
    device's share of the batch on its own core (shakespeare_cpu on 2 cores: 1.14x per step with
    10 steps per call, 1.57x with one; opt-in, because XLA's in-process all-reduce aborted one
    run: experiments/results/performance.md). Only the CPU platform is affected (on a GPU or TPU
    host the CPU devices stay unused), and it must run before the first JAX computation:
    the command-line entry points call it right after reading the config."""
    mesh_cfg = config.get("mesh")
    setting = int(mesh_cfg.get("cpu_devices", 0)) if mesh_cfg is not None else 0
    count = resolve_cpu_devices(setting, int(config.train.batch_size))
    if count > 0:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # JAX already running (e.g. called in-process): keep its devices
            return 0
    return count


def initialize_distributed(distributed_config=None) -> bool:
    """Starts jax.distributed for a multi-process run; returns True if it did.

    From config (`distributed.coordinator_address`, `num_processes`, `process_id`) or the
    environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID). On TPU pods
    and SLURM/Open MPI clusters, `distributed.auto=True` lets JAX find them itself.
    """
    cfg = distributed_config
    address = (cfg.coordinator_address if cfg is not None else "") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    auto = bool(cfg is not None and cfg.get("auto", False))
    if not address and not auto:
        return False
    if auto:
        jax.distributed.initialize()
        return True
    num = int((cfg.num_processes if cfg is not None else 0) or os.environ.get("JAX_NUM_PROCESSES", 0))
    pid = cfg.process_id if cfg is not None and cfg.process_id >= 0 else int(os.environ.get("JAX_PROCESS_ID", -1))
    if num < 1 or pid < 0 or pid >= num:
        raise MeshError(f"multi-process run needs num_processes >= 1 and 0 <= process_id < num_processes, "
                        f"got num_processes={num}, process_id={pid}")
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    return True
