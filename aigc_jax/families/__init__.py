"""The registry of model families: one package each, with a `task` module providing
`MODEL_FIELDS` (config fields that change the model) and `build(config, workdir) -> Task`.

The training loop imports no family; the command line builds the task here and hands it over.
"""
from __future__ import annotations

import contextlib
import importlib
import os

import jax

from aigc_jax import config_rules
from aigc_jax.config import ConfigError
from aigc_jax.train import loop
from aigc_jax.train.task import Task
from aigc_jax.train.workdir_lock import WorkdirLock

FAMILIES = {
    "lm": "aigc_jax.families.lm.task",
    "seq2seq": "aigc_jax.families.seq2seq.task",
    "gan": "aigc_jax.families.gan.task",
    "vae": "aigc_jax.families.vae.task",
    "flow": "aigc_jax.families.flow.task",
}


def task_module(name: str):
    if name not in FAMILIES:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[name])


def check_config(config) -> None:
    """One pass over the config's declared ranges and choices (shared and the family's), each bad
    value a one-line ConfigError naming the field; a sweep checks every point with it up front."""
    module = task_module(config.task)
    config_rules.check(config, {**config_rules.SHARED_RULES, **getattr(module, "FIELD_RULES", {})})


def build_task(config, workdir: str) -> Task:
    """The family's Task for `config`. A workdir that holds a run whose model differs is
    refused (by field) before the family reads or writes anything in it."""
    module = task_module(config.task)
    check_config(config)  # before the family builds anything from it
    if workdir:
        loop.check_resume_config(workdir, config, module.MODEL_FIELDS)
        os.makedirs(workdir, exist_ok=True)  # a family may keep files there (a tokenizer, a vocabulary)
    return module.build(config, workdir)


def train(config, workdir: str, **kwargs) -> dict:
    """Builds the family's task and trains it on the one loop (see aigc_jax.train.loop.train),
    holding the workdir's lock from before the family writes anything there."""
    os.makedirs(workdir, exist_ok=True)
    with WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return loop.train(config, workdir, build_task(config, workdir), **kwargs)
