"""The config sections every family shares; a family's config says only what differs.

Each function returns a fresh section with the loop's defaults, overridden by keyword:
  base(task)         task, seed, XLA flags, train, eval, mesh and distributed sections
  optimizer(**kw)    the fields of aigc_jax.train.optimizers.make_optimizer
  adam(lr, beta1)    a constant-rate Adam (the GANs' two optimizers)
  apply_variants(config, arg, variants, name)   `path.py:a,b` -> variants["a"](config), ...
"""
from __future__ import annotations

from typing import Callable

import ml_collections


def optimizer(**overrides) -> ml_collections.ConfigDict:
    section = ml_collections.ConfigDict(dict(
        name="adamw",  # adamw | lion | adafactor | muon
        learning_rate=1e-3,
        min_learning_rate=1e-4,
        schedule="cosine",  # cosine | constant (both after linear warm-up)
        warmup_steps=100,
        decay_steps=0,  # 0: decay until train.num_steps
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,  # decoupled (AdamW), on matrices only (ndim >= 2), not on biases or norms
        grad_clip=0.0,  # global norm; 0 turns clipping off
        # Muon only: learning_rate is Muon's (hidden matrices); this is AdamW's for the embeddings,
        # biases and norm scales (0: the same); muon_embeddings: the embeddings under Muon too.
        adam_learning_rate=0.0,
        muon_embeddings=False,
        muon_ns_steps=5,  # Newton-Schulz iterations per Muon update
    ))
    section.update(overrides)
    return section


def adam(learning_rate: float, beta1: float) -> ml_collections.ConfigDict:
    """Adam with a constant rate (adamw with weight_decay 0 is Adam)."""
    return optimizer(learning_rate=learning_rate, min_learning_rate=learning_rate, schedule="constant",
                     warmup_steps=0, beta1=beta1)


def train(**overrides) -> ml_collections.ConfigDict:
    section = ml_collections.ConfigDict(dict(
        num_steps=1000,
        batch_size=64,  # examples (sequences, images, points) per optimizer step
        # Optimizer steps per compiled call (a lax.scan over steps, their batches prepared ahead):
        # fewer host round trips; must divide num_steps, log_every, eval_every, checkpoint_every.
        steps_per_call=1,
        log_every=100,
        eval_every=500,
        checkpoint_every=500,
        keep_checkpoints=2,
        peak_flops_per_device=0.0,  # FLOP/s for MFU; 0: look up the device kind
        progress_bar=True,
        stop_at_eval_loss=0.0,  # > 0: stop at the first evaluation at or below this loss
        # A fine-tuning start: another run's workdir whose newest parameters (shapes checked)
        # initialise this run, with a fresh optimizer. Ignored when resuming this run's own.
        init_from="",
    ))
    section.update(overrides)
    return section


def base(task: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = task
    config.seed = 0
    # Extra XLA_FLAGS for this run (experiments/train.py applies them before JAX starts).
    config.xla_flags = ""
    # JAX's persistent compilation cache: a directory, "off", or "" for ~/.cache/aigc_jax/xla
    # (the environment variable AIGC_JAX_COMPILATION_CACHE overrides; aigc_jax/compilation_cache.py).
    config.compilation_cache = ""
    config.train = train()
    config.eval = ml_collections.ConfigDict(dict(
        batch_size=100,
        at_start=True,  # evaluate the initial model (step 0) too
    ))
    # Devices per mesh axis (-1: all the rest); see aigc_jax/parallel.py and the README.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    # On CPU: split the cores into this many XLA devices, data parallel over them (-1: one per
    # core, as many as divide the batch; 0: JAX's default single device). GPU/TPU: no effect.
    # Opt-in: faster on 2 cores, but XLA's in-process all-reduce hung once (performance.md).
    config.mesh.cpu_devices = 0
    # Multi-process runs: or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID.
    config.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 0, "process_id": -1, "auto": False})
    return config


def apply_variants(config: ml_collections.ConfigDict, arg, variants: dict[str, Callable], name: str):
    """Applies the comma-separated variants of `arg` in order (`:mnist,tiny`); an unknown one is
    an error listing those that exist."""
    for variant in (arg or "").split(","):
        if not variant:
            continue
        if variant not in variants:
            raise ValueError(f"unknown {name} variant {variant!r}; expected one of {', '.join(variants)} "
                             f"(several may be joined with commas)")
        variants[variant](config)
    return config
