"""A trained language model loaded from its workdir for sampling and scoring text.

load_language_model(workdir) reads what a training run wrote (config.json,
tokenizer.json, the newest checkpoint); no corpus is loaded.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.decoding import sampling
from aigc_jax.config import ConfigError, load_saved_config
from aigc_jax.data.tokenizers import UnknownCharactersError, load_tokenizer
from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.train.restore import restore_params

START_TEXT = "\n"  # an empty prompt starts from this character (the start of a new line)


@dataclasses.dataclass
class LanguageModel:
    config: Any
    tokenizer: Any
    model: TransformerLM
    params: Any
    step: int  # optimizer steps of the restored checkpoint


def load_language_model(workdir: str) -> LanguageModel:
    """Config, tokenizer and the newest checkpoint's parameters of an LM training run.

    Raises ConfigError (no workdir / config, not an LM run), FileNotFoundError (no tokenizer or
    no checkpoint) or CheckpointError (no checkpoint that reads and fits the saved config).
    """
    config = load_saved_config(workdir)
    if config.get("task", "lm") != "lm":
        raise ConfigError(f"workdir {workdir!r} holds a {config.task!r} run, not a language model")
    tokenizer = load_tokenizer(workdir)
    model = TransformerLM.from_config(config.model, tokenizer.vocab_size)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, model.context_length), jnp.int32))
    run = restore_params(workdir, expect_params=shapes["params"])
    return LanguageModel(config=config, tokenizer=tokenizer, model=model, params=run.params, step=run.step)


def start_token(tokenizer) -> int:
    """The token an empty prompt starts from: START_TEXT (a newline); for a character
    vocabulary without a newline, its first character (id 0)."""
    try:
        return int(tokenizer.encode(START_TEXT)[0])
    except UnknownCharactersError:
        return 0


def encode_prompt(tokenizer, text: str) -> np.ndarray:
    """Prompt text -> token ids [T] int32; an empty text is [start_token(tokenizer)]."""
    if text == "":
        return np.array([start_token(tokenizer)], np.int32)
    try:
        return np.asarray(tokenizer.encode(text), np.int32)
    except UnknownCharactersError as e:
        raise UnknownCharactersError(f"the prompt has {e}") from None


def stop_tokens(tokenizer, characters: str) -> tuple:
    """Characters that end a sample -> their token ids (each must be one token)."""
    ids = []
    for char in dict.fromkeys(characters):
        encoded = encode_prompt(tokenizer, char)
        if len(encoded) != 1:
            raise ValueError(f"stop character {char!r} is {len(encoded)} tokens; a stop must be one token")
        ids.append(int(encoded[0]))
    return tuple(ids)


def sample_text(lm: LanguageModel, prompt: str, *, num_samples: int, seed: int,
                settings: sampling.SamplingSettings) -> list[str]:
    """num_samples continuations of `prompt` (the continuation only, up to and including a stop).
    The same seed gives the same texts."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    settings.validate(lm.model.vocab_size)
    ids = encode_prompt(lm.tokenizer, prompt)
    out = sampling.generate(lm.model, lm.params, [ids] * num_samples, jax.random.key(seed), settings)
    return [lm.tokenizer.decode(row[:length]) for row, length in zip(out.tokens, out.lengths)]


def score_text(lm: LanguageModel, text: str) -> np.ndarray:
    """log P(c_t | c_<t) in nats for every token of `text` after the first: [T - 1]."""
    ids = encode_prompt(lm.tokenizer, text)
    if len(ids) < 2:
        raise ValueError("scoring needs a text of at least two tokens (the first one is given)")
    return sampling.score_tokens(lm.model, lm.params, ids[None])[0]
