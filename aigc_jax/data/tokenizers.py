"""Character-, byte- and byte-level-BPE tokenizers (aigc_jax/data/bpe.py), saved with a run as JSON
and reloaded from it."""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from aigc_jax.data.bpe import BPETokenizer
from aigc_jax.files import read_json, write_json


def check_text(text: str) -> None:
    """Text decoded from invalid UTF-8 (Python keeps such bytes as lone surrogates, e.g. from a
    command-line argument) is an error naming the first bad position, not an encoder crash."""
    try:
        text.encode("utf-8")  # refuses exactly the lone surrogates, at C speed
    except UnicodeEncodeError as e:
        raise UnknownCharactersError(f"text that is not valid UTF-8 (an undecodable byte or a lone surrogate "
                                     f"U+{ord(text[e.start]):04X} at character {e.start})") from None


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
        """Vectorised: a table from code point to id (-1 outside the vocabulary), indexed by the
        text's code points."""
        check_text(text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab = np.fromiter((ord(c) for c in self.chars), dtype=np.uint32, count=len(self.chars))
        table = np.full(int(max(vocab.max(initial=0), codes.max(initial=0))) + 1, -1, np.int32)
        table[vocab] = np.arange(len(vocab), dtype=np.int32)
        ids = table[codes]
        if (ids < 0).any():
            unknown = sorted({chr(c) for c in np.unique(codes[ids < 0]).tolist()})
            raise UnknownCharactersError(
                f"{len(unknown)} character(s) not in the vocabulary: {''.join(unknown)!r}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def token_bytes(self) -> np.ndarray:
        """[vocab_size] UTF-8 bytes of each token's text (for bits per byte)."""
        return np.array([len(c.encode("utf-8")) for c in self.chars], dtype=np.int64)

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

    def token_bytes(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> dict:
        return {"kind": self.kind}


def build_tokenizer(kind: str, text: str, vocab_size: int = 0):
    """A tokenizer for `text`: its characters (char), the 256 byte values (byte), or byte-level
    BPE merges learnt on it up to `vocab_size` entries (bpe)."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}; expected 'char', 'byte' or 'bpe'")


TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tokenizer, workdir: str) -> str:
    return write_json(os.path.join(workdir, TOKENIZER_FILE), tokenizer.to_json(), ensure_ascii=False)


def _tokenizer_from(spec: dict):
    if spec["kind"] == "char":
        return CharTokenizer(spec["chars"])
    if spec["kind"] == "byte":
        return ByteTokenizer()
    if spec["kind"] == "bpe":
        return BPETokenizer.from_json(spec)
    raise ValueError(f"unknown tokenizer kind {spec['kind']!r}")


def load_tokenizer(workdir: str):
    path = os.path.join(workdir, TOKENIZER_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer in {workdir!r} (expected {TOKENIZER_FILE}): is it a training workdir?")
    return read_json(path, "tokenizer file", _tokenizer_from)
