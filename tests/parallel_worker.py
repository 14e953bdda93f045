"""Multi-device checks, run in a subprocess whose XLA_FLAGS fake N CPU devices.

  python tests/parallel_worker.py meshes TEXT OUT.json            (every mesh against one device)
  python tests/parallel_worker.py process ID PORT TEXT OUT.json   (one of two processes: mesh 2,2,2)
  python tests/parallel_worker.py save TEXT WORKDIR MESH OUT.npz   (train a few steps on MESH, dump params)
  python tests/parallel_worker.py restore TEXT WORKDIR MESH OUT.npz (restore on MESH, dump params)
  python tests/parallel_worker.py gan OUT.json                      (a GAN step on 8 devices vs 1)
  python tests/parallel_worker.py clip OUT.json                     (contrastive steps on 8 devices vs 1)
"""
import json
import os
import sys

import jax
import numpy as np

from aigc_jax import parallel
from aigc_jax.config import load_config
from aigc_jax.families import build_task
from aigc_jax import families
from aigc_jax.train.checkpoints import Checkpointer
from aigc_jax.train.placement import place

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIG = os.path.join(CONFIGS, "gpt_char.py:tiny")
MESHES = [(8, 1, 1), (1, 8, 1), (2, 2, 2), (1, 1, 8)]
ACROSS_PROCESSES = (2, 2, 2)  # the mesh two processes share: data, fsdp and tensor axes all split


def tiny_config(text, mesh=(-1, 1, 1), extra=()):
    data, fsdp, tensor = mesh
    return load_config(CONFIG, [f"data.path={text}", "train.progress_bar=false", "train.batch_size=8",
                                "eval.batch_size=8", f"mesh.data={data}", f"mesh.fsdp={fsdp}",
                                f"mesh.tensor={tensor}", *extra])


def train_steps(task, mesh, num_steps=3):
    """Three optimizer steps (the first Adam step is nearly sign(g) and would hide differences)."""
    init_rng, step_rng = jax.random.split(jax.random.key(0))
    placement = place(task, mesh, init_rng)
    state = placement.init(task, init_rng)
    step = placement.jit_train_step(task)
    for i in range(num_steps):
        state, metrics = step(state, placement.put_train(task.train_batch(i)), step_rng)
    return state, metrics


def gather(tree):
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def flat(tree):
    return {parallel.path_name(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def meshes(text, out):
    task = build_task(tiny_config(text), "")
    reference, ref_metrics = train_steps(task, parallel.make_mesh(None, jax.devices()[:1]))
    ref_params = flat(reference.params)
    results = {}
    for shape in MESHES:
        mesh = parallel.make_mesh(dict(zip(parallel.MESH_AXES, shape)))
        state, metrics = train_steps(task, mesh)
        params = flat(state.params)
        sharded = [parallel.path_name(p) for p, x in jax.tree_util.tree_flatten_with_path(state.params)[0]
                   if not x.sharding.is_fully_replicated]
        opt_sharded = [parallel.path_name(p) for p, x in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
                       if not x.sharding.is_fully_replicated]
        results[str(shape)] = {
            "loss_diff": abs(float(metrics["loss"]) - float(ref_metrics["loss"])),
            "max_param_diff": max(float(np.max(np.abs(params[k] - ref_params[k]))) for k in ref_params),
            "sharded_params": sharded,
            "sharded_opt_leaves": len(opt_sharded),
            "qkv_spec": [a if a is None or isinstance(a, str) else list(a)
                         for a in state.params["block_0"]["attn"]["qkv"]["kernel"].sharding.spec],
        }
        if shape == ACROSS_PROCESSES:  # what the two-process run must reproduce
            results[str(shape)].update(steps_result(state, metrics))
    json.dump(results, open(out, "w"))


def gan(out):
    """PacGAN2 with 2 critic steps, batch-norm G and an EMA: data parallel over 8 devices
    (batch-norm statistics are over the global batch) against one device."""
    config = load_config(os.path.join(CONFIGS, "gan_2d.py:tiny"), [
        "train.progress_bar=false", "model.pack=2", "train.n_critic=2", "train.ema_decay=0.9",
        "eval.batch_size=40"])
    task = build_task(config, "")
    reference, ref_metrics = train_steps(task, parallel.make_mesh(None, jax.devices()[:1]))
    state, metrics = train_steps(task, parallel.make_mesh(None))
    ref, new = flat({"params": reference.params, "extra": reference.extra}), flat({"params": state.params,
                                                                                   "extra": state.extra})
    json.dump({"devices": jax.device_count(), "leaves": sorted(ref),
               "max_diff": max(float(np.max(np.abs(new[k] - ref[k]))) for k in ref),
               "metric_diff": max(abs(float(metrics[k]) - float(ref_metrics[k])) for k in ref_metrics)},
              open(out, "w"))


def clip(out):
    """The contrastive model data parallel over 8 devices against one: the N x N similarity matrix
    spans the global batch, so the compiled step must gather embeddings across devices."""
    config = load_config(os.path.join(CONFIGS, "clip.py:tiny"), ["train.progress_bar=false"])
    task = build_task(config, "")
    reference, ref_metrics = train_steps(task, parallel.make_mesh(None, jax.devices()[:1]))
    mesh = parallel.make_mesh(None)
    state, metrics = train_steps(task, mesh)
    rng = jax.random.key(0)
    placement = place(task, mesh, rng)
    hlo = placement.jit_train_step(task).lower(placement.init(task, rng), placement.put_train(task.train_batch(0)),
                                               rng).compile().as_text()
    ref, new = flat(reference.params), flat(state.params)
    json.dump({"devices": jax.device_count(), "all_gather": "all-gather" in hlo,
               "batch_sharding": str(placement.train_batch["images"].spec),
               "max_diff": max(float(np.max(np.abs(new[k] - ref[k]))) for k in ref),
               "loss": [float(ref_metrics["loss"]), float(metrics["loss"])]}, open(out, "w"))


def steps_result(state, metrics) -> dict:
    """Loss and gathered parameters after train_steps, as JSON."""
    return {"loss": float(gather(metrics["loss"])),
            "params": {k: v.tolist() for k, v in flat(gather(state.params)).items()}}


def process(pid, port, text, out):
    """Three steps on the mesh ACROSS_PROCESSES spanning two processes of 4 devices each;
    process 0 writes the loss and gathered parameters."""
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=int(pid))
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    task = build_task(tiny_config(text), "")
    state, metrics = train_steps(task, parallel.make_mesh(dict(zip(parallel.MESH_AXES, ACROSS_PROCESSES))))
    result = steps_result(state, metrics)
    if jax.process_index() == 0:
        json.dump(result, open(out, "w"))


def save(text, workdir, mesh, out):
    config = tiny_config(text, tuple(int(x) for x in mesh.split(",")), ["train.num_steps=10"])
    families.train(config, workdir, echo=lambda *_: None)
    restore(text, workdir, mesh, out)


def restore(text, workdir, mesh, out):
    config = tiny_config(text, tuple(int(x) for x in mesh.split(",")), ["train.num_steps=10"])
    task = build_task(config, workdir)
    rng = jax.random.split(jax.random.key(config.seed))[0]
    placement = place(task, parallel.make_mesh(config.mesh), rng)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    state, step = checkpointer.restore_latest(placement.init(task, rng))
    checkpointer.close()
    sharded = sum(not x.sharding.is_fully_replicated for x in jax.tree_util.tree_leaves(state.params))
    np.savez(out, step=step, num_sharded=sharded, **flat(gather(state.params)))


if __name__ == "__main__":
    if sys.argv[1] != "process":  # the test session's compilation cache (its environment names it)
        from aigc_jax import compilation_cache
        compilation_cache.enable()
    {"meshes": meshes, "process": process, "save": save, "restore": restore,
     "gan": gan, "clip": clip}[sys.argv[1]](*sys.argv[2:])
