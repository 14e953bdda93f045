"""Chat models loaded from their runs: a base LM (task lm) gains the four chat tokens; a chat
stage's run (chat_sft, chat_dpo, ...) already has them.

The new tokens' embedding rows (and output-projection columns, when untied) start at the mean of
the base vocabulary's (Hewitt 2021: a new word's initial logits are then the average word's, not
random ones that could dominate the softmax); every other parameter is the base run's.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aigc_jax.config import ConfigError, load_saved_config
from aigc_jax.data.tokenizers import load_tokenizer
from aigc_jax.families.chat.template import ChatTokenizer
from aigc_jax.files import read_json, write_json
from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.train.restore import restore_params

STAGES = ("chat_sft", "chat_dpo", "chat_ppo")  # runs whose parameters are a chat policy
SCORERS = ("chat_rm",)  # runs whose parameters are {"lm": a chat transformer's, "head": a scalar head}


@dataclasses.dataclass
class ChatModel:
    workdir: str
    task: str  # lm for a base run, else the chat stage
    tokenizer: ChatTokenizer
    model: TransformerLM
    params: Any  # a reward model's (chat_rm): {"lm": ..., "head": ...}
    step: int
    model_config: Any  # the LM's model section (shared by every stage built on it)


def extend_vocabulary(base_params, fresh_params, base_vocab: int):
    """The base run's parameters with the embedding (and untied head) grown to the chat vocabulary:
    the first base_vocab rows copied, the new ones the mean of those."""
    def grow(path, base, fresh):
        name = jax.tree_util.keystr(path)
        if base.shape == fresh.shape:
            return jnp.asarray(base)
        if "token_embed" in name and base.ndim == 2 and base.shape[1] == fresh.shape[1]:
            rows = jnp.asarray(base)[:base_vocab]
            new = jnp.broadcast_to(rows.mean(0), (fresh.shape[0] - base_vocab, fresh.shape[1]))
            return jnp.concatenate([rows, new], axis=0)
        if "lm_head" in name and base.ndim == 2 and base.shape[0] == fresh.shape[0]:
            cols = jnp.asarray(base)[:, :base_vocab]
            new = jnp.broadcast_to(cols.mean(1, keepdims=True), (fresh.shape[0], fresh.shape[1] - base_vocab))
            return jnp.concatenate([cols, new], axis=1)
        raise ValueError(f"parameter {name} has shape {base.shape} in the base run and {fresh.shape} in the chat model")
    return jax.tree_util.tree_map_with_path(grow, base_params, fresh_params)


MODEL_FILE = "chat_model.json"


def save_model_config(model_config, workdir: str) -> None:
    """A chat stage keeps its LM's model section beside its tokenizer, so its run loads without
    the base run it started from."""
    write_json(os.path.join(workdir, MODEL_FILE), model_config.to_dict())


def read_model_config(workdir: str):
    path = os.path.join(workdir, MODEL_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {MODEL_FILE} in {workdir!r}: the chat run did not start")
    return ml_collections.ConfigDict(read_json(path, "chat model config"))


def load_chat_model(workdir: str, *, what: str = "the run") -> ChatModel:
    """A base LM run (grown to the chat vocabulary) or a chat stage's run, newest checkpoint."""
    config = load_saved_config(workdir)
    task = config.get("task", "lm")
    if task == "lm":
        base_tokenizer = load_tokenizer(workdir)
        model_config = config.model
    elif task in STAGES + SCORERS:
        base_tokenizer = load_tokenizer(workdir)
        model_config = read_model_config(workdir)
    else:
        raise ConfigError(f"{what} {workdir!r} is a {task!r} run; expected a language model (task lm) or a chat "
                          f"policy or reward model ({', '.join(STAGES + SCORERS)})")
    tokenizer = ChatTokenizer(base_tokenizer)
    model = TransformerLM.from_config(model_config, tokenizer.vocab_size)
    example = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), example)["params"]
    if task == "lm":
        base_model = TransformerLM.from_config(model_config, base_tokenizer.vocab_size)
        base_shapes = jax.eval_shape(base_model.init, jax.random.key(0), example)["params"]
        run = restore_params(workdir, task="lm", expect_params=base_shapes)
        fresh = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        params = extend_vocabulary(run.params, fresh, base_tokenizer.vocab_size)
    else:
        width = model_config.embed_dim
        scorer = {"lm": shapes, "head": {"kernel": jax.ShapeDtypeStruct((width,), jnp.float32),
                                         "bias": jax.ShapeDtypeStruct((), jnp.float32)}}
        if task in SCORERS:
            shapes = scorer
        elif task == "chat_ppo":  # the policy beside its value network
            shapes = {"policy": shapes, "value": scorer}
        run = restore_params(workdir, task=task, expect_params=shapes)
        params = run.params["policy"] if task == "chat_ppo" else run.params
    return ChatModel(workdir, task, tokenizer, model, params, run.step, model_config)
