"""Captions as tokens: a word vocabulary with reserved specials, and paraphrases of shapes-world
captions (synonyms and relation wordings) for image-text models (aigc_jax/families/clip/).

Words are lower-case runs of letters or digits; every other non-space character is a token of
its own (":" and "," in the shapes world's captions). Ids 0-2 are PAD, BOS and EOS (end of
text: the CLIP text encoder pools there, the captioner stops there); the corpus's words follow
in sorted order. A word outside the vocabulary is an error that names it.
"""
from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

import numpy as np

from aigc_jax.files import read_json, write_json

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
VOCAB_FILE = "caption_vocab.json"


class UnknownWordError(ValueError):
    pass


def words_of(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class CaptionVocab:
    """Word <-> id for captions; ids 0-2 are the specials."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if len(set(words)) != len(words) or set(words) & set(SPECIALS):
            raise ValueError("caption vocabulary words must be distinct and not special tokens")
        self.words = list(SPECIALS) + words
        self._ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CaptionVocab":
        return cls(sorted({w for text in texts for w in words_of(text)}))

    @property
    def size(self) -> int:
        return len(self.words)

    def encode(self, text: str, length: int = 0) -> np.ndarray:
        """[BOS, words..., EOS], padded with PAD to `length` when given (an error when too long)."""
        words = words_of(text)
        unknown = sorted({w for w in words if w not in self._ids})
        if unknown:
            raise UnknownWordError(f"{len(unknown)} word(s) not in the caption vocabulary: {', '.join(unknown)} "
                                   f"(in {text!r})")
        ids = [BOS] + [self._ids[w] for w in words] + [EOS]
        if length:
            if len(ids) > length:
                raise ValueError(f"caption of {len(ids)} tokens (with BOS and EOS) exceeds the context of {length}: "
                                 f"{text!r}")
            ids = ids + [PAD] * (length - len(ids))
        return np.asarray(ids, np.int32)

    def encode_batch(self, texts: Sequence[str], length: int) -> np.ndarray:
        return np.stack([self.encode(t, length) for t in texts]) if texts else np.zeros((0, length), np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first EOS (BOS and PAD skipped); punctuation attached to the word before."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            word = self.words[i]
            if out and not word[0].isalnum():
                out[-1] += word
            else:
                out.append(word)
        return " ".join(out)

    def to_json(self) -> dict:
        return {"kind": "caption_words", "words": self.words[len(SPECIALS):]}


def save_vocab(vocab: CaptionVocab, workdir: str) -> str:
    return write_json(os.path.join(workdir, VOCAB_FILE), vocab.to_json())


def load_vocab(workdir: str) -> CaptionVocab:
    path = os.path.join(workdir, VOCAB_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no caption vocabulary in {workdir!r} (expected {VOCAB_FILE}): is it a training "
                                f"workdir of an image-text run?")
    return read_json(path, "caption vocabulary", lambda spec: CaptionVocab(spec["words"]))


# Paraphrases of the shapes world's canonical captions (aigc_jax/data/shapes.py: caption): each
# canonical word or phrase with the wordings that may replace it. The first entry is the canonical.
SYNONYMS = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
    "medium": ("medium", "mid-sized"),
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "background": ("background", "backdrop"),
}
_SYNONYM = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")


def paraphrase(text: str, rng: np.random.Generator, probability: float = 0.5) -> str:
    """Each canonical word of SYNONYMS in `text` replaced, with `probability`, by one of its other
    wordings drawn from rng (deterministic for a seeded rng)."""
    def swap(match):
        options = SYNONYMS[match.group(1)]
        if rng.uniform() >= probability:
            return match.group(1)
        return options[1 + int(rng.integers(len(options) - 1))]
    return _SYNONYM.sub(swap, text)


def all_paraphrase_words() -> list[str]:
    """Every word a paraphrase can introduce (so a vocabulary built from canonical captions covers them)."""
    return sorted({w for options in SYNONYMS.values() for option in options for w in words_of(option)})
