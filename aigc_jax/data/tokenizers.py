"""Character- and byte-level tokenizers, saved with a run as JSON and reloaded from it."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from aigc_jax.files import read_json, write_json


def check_text(text: str) -> None:
    """Text decoded from invalid UTF-8 (Python keeps such bytes as lone surrogates, e.g. from a
    command-line argument) is an error naming the first bad position, not an encoder crash."""
    for position, char in enumerate(text):
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise UnknownCharactersError(f"text that is not valid UTF-8 (an undecodable byte or a lone surrogate "
                                         f"U+{ord(char):04X} at character {position})")


class UnknownCharactersError(ValueError):
    pass


class CharTokenizer:
    """One id per distinct character of the corpus, in sorted order (char-rnn / nanoGPT)."""
    kind = "char"

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("character vocabulary has duplicates")
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Vectorised: code points are looked up in the sorted code points of the vocabulary."""
        check_text(text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab = np.fromiter((ord(c) for c in self.chars), dtype=np.uint32, count=len(self.chars))
        order = np.argsort(vocab)
        slot = np.minimum(np.searchsorted(vocab[order], codes), len(vocab) - 1)
        known = vocab[order][slot] == codes
        if not known.all():
            unknown = sorted(set(np.asarray(list(text))[~known].tolist()))
            raise UnknownCharactersError(
                f"{len(unknown)} character(s) not in the vocabulary: {''.join(unknown)!r}")
        return order[slot].astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class ByteTokenizer:
    """UTF-8 bytes, vocabulary 256: never meets an unknown character."""
    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        check_text(text)
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def to_json(self) -> dict:
        return {"kind": self.kind}


def build_tokenizer(kind: str, text: str):
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    raise ValueError(f"unknown tokenizer {kind!r}; expected 'char' or 'byte'")


TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tokenizer, workdir: str) -> str:
    return write_json(os.path.join(workdir, TOKENIZER_FILE), tokenizer.to_json(), ensure_ascii=False)


def _tokenizer_from(spec: dict):
    if spec["kind"] == "char":
        return CharTokenizer(spec["chars"])
    if spec["kind"] == "byte":
        return ByteTokenizer()
    raise ValueError(f"unknown tokenizer kind {spec['kind']!r}")


def load_tokenizer(workdir: str):
    path = os.path.join(workdir, TOKENIZER_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer in {workdir!r} (expected {TOKENIZER_FILE}): is it a training workdir?")
    return read_json(path, "tokenizer file", _tokenizer_from)
