"""Byte-level BPE (GPT-2's scheme: Radford et al. 2019, section 2.2), trained locally with Hugging
Face `tokenizers` on a run's training split and saved with the run.

The text is first mapped to its UTF-8 bytes, each byte to one of 256 base symbols, so every
string has an encoding and decoding it gives the string back (no unknown token, no normaliser);
merges learnt on the training split then join frequent byte pairs, within the pieces of
GPT-2's pre-tokenising pattern, until the vocabulary has `vocab_size` entries.
"""
from __future__ import annotations

import json
from typing import Iterable

import numpy as np

BASE_SYMBOLS = 256  # one per byte value


def _library():
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ImportError("data.tokenizer='bpe' needs Hugging Face tokenizers: pip install tokenizers") from None
    return tokenizers


class BPETokenizer:
    kind = "bpe"

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        """Learns merges on `text` until the vocabulary holds `vocab_size` entries (at most; a small
        text may run out of pairs to merge first). Every byte value is in the vocabulary."""
        if vocab_size <= BASE_SYMBOLS:
            raise ValueError(f"a byte-level BPE vocabulary needs more than {BASE_SYMBOLS} entries "
                             f"(one per byte), got data.vocab_size={vocab_size}")
        lib = _library()
        tokenizer = lib.Tokenizer(lib.models.BPE())
        tokenizer.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = lib.decoders.ByteLevel()
        trainer = lib.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                          initial_alphabet=lib.pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(_lines(text), trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        from aigc_jax.data.tokenizers import check_text
        check_text(text)  # lone surrogates (undecodable input) are an error naming where
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int32)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text, encoded in parallel over the cores (the library's threads)."""
        from aigc_jax.data.tokenizers import check_text
        for text in texts:
            check_text(text)
        return [np.asarray(e.ids, dtype=np.int32) for e in self._tokenizer.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids])

    def token_bytes(self) -> np.ndarray:
        """[vocab_size] bytes of each token: its symbols are bytes (one base symbol per byte value)."""
        return np.array([len(self._tokenizer.id_to_token(i)) for i in range(self.vocab_size)], dtype=np.int64)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self._tokenizer.to_str())}

    @classmethod
    def from_json(cls, spec: dict) -> "BPETokenizer":
        return cls(_library().Tokenizer.from_str(json.dumps(spec["tokenizer"])))


def _lines(text: str, lines_per_chunk: int = 1000):
    """The training text in chunks of whole lines (the trainer counts pairs chunk by chunk)."""
    lines = text.splitlines(keepends=True)
    for start in range(0, len(lines), lines_per_chunk):
        yield "".join(lines[start:start + lines_per_chunk])
