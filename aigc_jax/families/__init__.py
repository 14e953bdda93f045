"""The registry of model families: one package each, with a `task` module providing
`MODEL_FIELDS` (config fields that change the model) and `build(config, workdir) -> Task`.

The training loop imports no family; the command line builds the task here and hands it over.
"""
from __future__ import annotations

import contextlib
import importlib
import os

import jax

from aigc_jax import threefry_cpu
from aigc_jax.config import ConfigError
from aigc_jax.train import loop
from aigc_jax.train.task import Task
from aigc_jax.train.workdir_lock import WorkdirLock

FAMILIES = {
    "lm": "aigc_jax.families.lm.task",
    "seq2seq": "aigc_jax.families.seq2seq.task",
    "gan": "aigc_jax.families.gan.task",
    "stylegan": "aigc_jax.families.gan.stylegan_task",
    "vae": "aigc_jax.families.vae.task",
    "flow": "aigc_jax.families.flow.task",
    "clip": "aigc_jax.families.clip.task",
    "caption": "aigc_jax.families.clip.captioner_task",
    "clip_supervised": "aigc_jax.families.clip.supervised_task",
    "wavenet": "aigc_jax.families.wavenet.task",
    "chat_sft": "aigc_jax.families.chat.sft_task",
    "chat_dpo": "aigc_jax.families.chat.dpo_task",
    "chat_rm": "aigc_jax.families.chat.rm_task",
    "chat_ppo": "aigc_jax.families.chat.ppo_task",
}


def task_module(name: str):
    if name not in FAMILIES:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[name])


def check_config(config) -> None:
    """The family's check of a config before anything is built: its declared ranges and choices
    (shared and the family's FIELD_RULES, aigc_jax/config_rules.py) and the constraints between
    fields, each bad value a one-line error naming the field. A sweep checks every point with it
    up front."""
    task_module(config.task).check_config(config)


def build_task(config, workdir: str) -> Task:
    """The family's Task for `config`. A workdir that holds a run whose model differs is
    refused (by field) before the family reads or writes anything in it."""
    module = task_module(config.task)
    threefry_cpu.use_unrolled_lowering()  # compile speed only; entry points have done it already
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
