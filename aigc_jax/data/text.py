"""Text corpora and deterministic training windows.

The embedded default corpus is the Python standard library's own top-level source
files (found through `sysconfig`, so every machine with Python has it): a few MB of
real text, split into training and validation by file. A user's text file is split as
the char-rnn / nanoGPT recipe does: first 90% of the characters train, last 10% validate.
"""
from __future__ import annotations

import os
import pathlib
import sysconfig
import zlib
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Unusable training data; the message names the path or the problem."""


@dataclass(frozen=True)
class TextSplits:
    train: str
    validation: str
    description: str


def stdlib_source_files() -> list[pathlib.Path]:
    """The standard library's top-level *.py files, in a deterministic (sorted) order."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"), key=lambda p: p.name)
    if not files:
        raise DataError(f"no Python source files found in the standard library at {root}")
    return files


def is_validation_file(name: str, val_fraction: float) -> bool:
    """Stable split by file name: a file's crc32 decides, so adding files moves no others."""
    return zlib.crc32(name.encode()) % 1000 < round(val_fraction * 1000)


def load_stdlib_corpus(val_fraction: float = 0.1) -> TextSplits:
    train, validation = [], []
    for path in stdlib_source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        (validation if is_validation_file(path.name, val_fraction) else train).append(text)
    return TextSplits("\n".join(train), "\n".join(validation),
                      f"Python {sysconfig.get_python_version()} standard library sources "
                      f"({len(train)} training files, {len(validation)} validation files)")


def read_text_file(path: str) -> str:
    if not os.path.exists(path):
        raise DataError(f"data.path {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"data.path {path!r} is a directory; expected a text file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except PermissionError:
        raise DataError(f"data.path {path!r} is not readable (permission denied)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"data.path {path!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_text_file(path: str, val_fraction: float = 0.1) -> TextSplits:
    text = read_text_file(path)
    if not text:
        raise DataError(f"data.path {path!r} is empty")
    split = int(len(text) * (1.0 - val_fraction))
    return TextSplits(text[:split], text[split:], f"{path} ({len(text):,} characters, first "
                      f"{1 - val_fraction:.0%} for training, last {val_fraction:.0%} for validation)")


CODE_CORPORA = ("python_functions", "code_problems", "code_finetune")  # aigc_jax/data/code_corpus.py


def load_text_splits(data_config) -> TextSplits:
    if data_config.path:
        return load_text_file(data_config.path, data_config.val_fraction)
    if data_config.corpus == "stdlib":
        return load_stdlib_corpus(data_config.val_fraction)
    if data_config.corpus in CODE_CORPORA:
        from aigc_jax.data import code_corpus  # generated problems: imported only when asked for
        return code_corpus.load_code_splits(data_config.corpus, data_config.val_fraction, seed=0,
                                            num_train_problems=data_config.get("code_train_problems",
                                                                               code_corpus.TRAIN_PROBLEMS))
    raise DataError(f"unknown data.corpus {data_config.corpus!r}; expected 'stdlib', one of {', '.join(CODE_CORPORA)} "
                    f"or set data.path")


def check_length(tokens: np.ndarray, context: int, split: str) -> None:
    if len(tokens) < context + 1:
        raise DataError(f"the {split} split has {len(tokens)} tokens, fewer than context + 1 = {context + 1}; "
                        f"use a longer corpus or a shorter model.context_length")


def training_windows(tokens: np.ndarray, seed: int, step: int, batch_size: int, context: int) -> np.ndarray:
    """[batch_size, context + 1] windows at uniformly random offsets.

    A pure function of (seed, step): a resumed run draws exactly the batches that an
    uninterrupted run would have drawn at the same steps.
    """
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - context, size=batch_size)
    return tokens[starts[:, None] + np.arange(context + 1)]


def evaluation_windows(tokens: np.ndarray, num_windows: int, context: int) -> np.ndarray:
    """A fixed set of [N, context + 1] windows.

    num_windows = 0: every non-overlapping window, tiling the whole split (the exact
    average over start positions; a few hundred windows can be off by 0.01+ nats on a
    small corpus). num_windows > 0: that many windows at evenly spaced offsets.
    """
    last_start = len(tokens) - context - 1
    if num_windows == 0:
        starts = np.arange(0, last_start + 1, context)
    else:
        starts = np.unique(np.linspace(0, last_start, num=num_windows).round().astype(np.int64))
    return tokens[starts[:, None] + np.arange(context + 1)]
