"""Sequence-to-sequence data: reversal, sorting and addition generated in-process, or a
user's TSV of `source<TAB>target` lines.

Every example is character text on both sides; a `Seq2SeqVocab` maps characters to ids
after three special tokens (PAD 0, BOS 1, EOS 2). Batches are fixed-shape arrays:

  source  [B, S]  source ids, padded with PAD
  inputs  [B, T]  BOS + target, padded (the decoder's teacher-forced input)
  targets [B, T]  target + EOS, padded (what the decoder predicts; PAD = no loss)

with S = max_source_length and T = max_target_length + 1.

Held-out test splits. Generated tasks split examples by a hash of their content: an
example whose hash falls in the test bucket (a `test_fraction` of all examples) is
never drawn for training. Reversal and sorting test on lengths test_min..test_max and
may also hold out whole lengths (`heldout_lengths`: never trained on, only tested);
addition trains on operands of 1..max_digits digits (the count uniform, then the value)
and tests on test_digits + test_digits pairs from the held-out bucket.
Training batches are a pure function of (seed, step).
"""
from __future__ import annotations

import dataclasses
import os
import string

import numpy as np

from aigc_jax.data.text import DataError
from aigc_jax.data.tokenizers import CharTokenizer, UnknownCharactersError
from aigc_jax.files import read_json, write_json

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
TASKS = ("reverse", "sort", "add", "tsv")
VOCAB_FILE = "tokenizer.json"
DIGITS = string.digits


# ------------------------------------------------------------------ vocabulary

class Seq2SeqVocab:
    """Characters -> ids NUM_SPECIAL.. (after PAD, BOS, EOS), plus the padded lengths."""
    kind = "seq2seq_char"

    def __init__(self, chars, max_source_length: int, max_target_length: int):
        self.chars = CharTokenizer(sorted(set(chars)))
        self.max_source_length = int(max_source_length)
        self.max_target_length = int(max_target_length)

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL + self.chars.vocab_size

    def encode(self, text: str) -> np.ndarray:
        """text -> ids [len(text)] int32 (UnknownCharactersError names characters not in it)."""
        if not text:
            return np.zeros((0,), np.int32)
        return self.chars.encode(text).astype(np.int32) + NUM_SPECIAL

    def decode(self, ids) -> str:
        """Ids up to the first EOS (specials skipped) -> text."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == EOS:
                break
            if i >= NUM_SPECIAL:
                out.append(self.chars.chars[i - NUM_SPECIAL])
        return "".join(out)

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.chars.chars, "max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length}


def save_vocab(vocab: Seq2SeqVocab, workdir: str) -> None:
    write_json(os.path.join(workdir, VOCAB_FILE), vocab.to_json(), ensure_ascii=False)


def _vocab_from(spec: dict) -> Seq2SeqVocab:
    if spec.get("kind") != Seq2SeqVocab.kind:
        raise ValueError(f"kind {spec.get('kind')!r} is not {Seq2SeqVocab.kind!r}")
    return Seq2SeqVocab(spec["chars"], spec["max_source_length"], spec["max_target_length"])


def load_vocab(workdir: str) -> Seq2SeqVocab:
    path = os.path.join(workdir, VOCAB_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no vocabulary in {workdir!r} (expected {VOCAB_FILE}): is it a seq2seq workdir?")
    return read_json(path, "vocabulary file", _vocab_from)


def encode_pairs(vocab: Seq2SeqVocab, sources: list, targets: list) -> dict:
    """Lists of source / target strings -> {'source' [N, S], 'inputs' [N, T], 'targets' [N, T]}."""
    n, src_len, tgt_len = len(sources), vocab.max_source_length, vocab.max_target_length + 1
    batch = {"source": np.full((n, src_len), PAD, np.int32), "inputs": np.full((n, tgt_len), PAD, np.int32),
             "targets": np.full((n, tgt_len), PAD, np.int32)}
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        s, t = vocab.encode(src), vocab.encode(tgt)
        if len(s) > src_len or len(t) > tgt_len - 1:
            raise DataError(f"example {src!r} -> {tgt!r} is longer than the model's lengths "
                            f"(source {src_len}, target {tgt_len - 1})")
        batch["source"][i, :len(s)] = s
        batch["inputs"][i, 0], batch["inputs"][i, 1:len(t) + 1] = BOS, t
        batch["targets"][i, :len(t)], batch["targets"][i, len(t)] = t, EOS
    return batch


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective avalanche mix of uint64 values."""
    x = np.asarray(x, np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sequence_hash(symbols: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """symbols [N, L] (values 0..A-1, only the first lengths[i] count), lengths [N] -> uint64 [N]."""
    h = mix64(lengths.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    for i in range(symbols.shape[1]):
        live = i < lengths
        step = mix64(h ^ (symbols[:, i].astype(np.uint64) + np.uint64(1 + 1000 * i)))
        h = np.where(live, step, h)
    return h


def in_test_bucket(hashes: np.ndarray, test_fraction: float) -> np.ndarray:
    return (hashes % np.uint64(100_000)) < np.uint64(int(round(test_fraction * 100_000)))


# ------------------------------------------------------------------ the generated tasks

@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What a generated task draws. Lengths count symbols (reverse / sort) or digits (add)."""
    task: str
    alphabet: str
    min_length: int
    max_length: int
    test_min_length: int
    test_max_length: int
    heldout_lengths: tuple
    max_digits: int
    test_digits: int
    test_fraction: float
    add_sampling: str = "digits"

    @classmethod
    def from_config(cls, data) -> "SyntheticSpec":
        spec = cls(task=data.task, alphabet=data.alphabet, min_length=data.min_length, max_length=data.max_length,
                   test_min_length=data.test_min_length, test_max_length=data.test_max_length,
                   heldout_lengths=parse_lengths(data.heldout_lengths), max_digits=data.max_digits,
                   test_digits=data.test_digits, test_fraction=data.test_fraction, add_sampling=data.add_sampling)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.task not in ("reverse", "sort", "add"):
            raise DataError(f"unknown data.task {self.task!r}; expected one of {', '.join(TASKS)}")
        if not 0 < self.test_fraction < 1:
            raise DataError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.task == "add":
            if self.add_sampling not in ("digits", "numbers"):
                raise DataError(f"unknown data.add_sampling {self.add_sampling!r}; expected 'digits' or 'numbers'")
            if not 1 <= self.max_digits <= 9:
                raise DataError(f"data.max_digits must be in 1..9, got {self.max_digits}")
            if not 1 <= self.test_digits <= self.max_digits:
                raise DataError(f"data.test_digits must be in 1..data.max_digits ({self.max_digits}), "
                                f"got {self.test_digits}")
            return
        if len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
            raise DataError(f"data.alphabet must hold at least 2 distinct characters, got {self.alphabet!r}")
        if not 1 <= self.min_length <= self.max_length:
            raise DataError(f"need 1 <= data.min_length <= data.max_length, got {self.min_length}, {self.max_length}")
        if not 1 <= self.test_min_length <= self.test_max_length <= self.max_length:
            raise DataError(f"need 1 <= data.test_min_length <= data.test_max_length <= data.max_length, got "
                            f"{self.test_min_length}, {self.test_max_length}, {self.max_length}")
        if any(not self.min_length <= n <= self.max_length for n in self.heldout_lengths):
            raise DataError(f"data.heldout_lengths {self.heldout_lengths} must lie in "
                            f"{self.min_length}..{self.max_length}")
        if len(self.train_lengths()) == 0:
            raise DataError("data.heldout_lengths holds out every training length")

    def train_lengths(self) -> np.ndarray:
        return np.array([n for n in range(self.min_length, self.max_length + 1) if n not in self.heldout_lengths])

    def vocab(self) -> Seq2SeqVocab:
        if self.task == "add":
            width = self.max_digits
            return Seq2SeqVocab(DIGITS + "+=", 2 * width + 2, width + 1)
        return Seq2SeqVocab(self.alphabet, self.max_length, self.max_length)

    def describe(self) -> str:
        if self.task == "add":
            return (f"addition of 1..{self.max_digits}-digit numbers; test: held-out {self.test_digits}+"
                    f"{self.test_digits}-digit pairs ({self.test_fraction:.0%} of pairs never trained on)")
        held = f", lengths {list(self.heldout_lengths)} never trained on" if self.heldout_lengths else ""
        return (f"{self.task} of {self.min_length}..{self.max_length} symbols from {self.alphabet!r}; test: "
                f"held-out sequences of length {self.test_min_length}..{self.test_max_length}{held}")


def parse_lengths(text: str) -> tuple:
    """'10,14' -> (10, 14); '' -> ()."""
    try:
        return tuple(sorted({int(part) for part in str(text).split(",") if part.strip()}))
    except ValueError:
        raise DataError(f"data.heldout_lengths must be comma-separated integers, got {text!r}") from None


def _draw_symbols(rng, spec: SyntheticSpec, count: int, lengths_allowed: np.ndarray):
    lengths = rng.choice(lengths_allowed, size=count)
    symbols = rng.integers(0, len(spec.alphabet), size=(count, spec.max_length))
    return symbols, lengths


def _draw_operands(rng, count: int, digits_allowed: np.ndarray, sampling: str) -> np.ndarray:
    """[count, 2] operands. sampling='digits': each one's digit count uniform over
    digits_allowed, then its value uniform over the numbers of that many digits (0..9 for
    one digit); 'numbers': uniform over all numbers of up to max(digits_allowed) digits
    (so mostly of the most digits), restricted to the allowed digit counts."""
    if sampling == "numbers":
        values = rng.integers(0, 10 ** int(max(digits_allowed)), size=(count, 2))
        digits = np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(int) + 1)
        return values[np.all(np.isin(digits, digits_allowed), axis=1)]
    digits = rng.choice(digits_allowed, size=(count, 2))
    return rng.integers(np.where(digits == 1, 0, 10 ** (digits - 1)), 10 ** digits)


def _pair_hash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return mix64(mix64(a.astype(np.uint64) + np.uint64(0x51ED27)) ^ b.astype(np.uint64))


def _draw(spec: SyntheticSpec, rng, count: int, split: str):
    """`count` examples of the split as (sources, targets) strings; train rejects the test bucket."""
    test = split == "test"
    chosen_src, chosen_tgt = [], []
    while len(chosen_src) < count:
        want = 2 * (count - len(chosen_src)) + 16
        if spec.task == "add":
            digits = np.array([spec.test_digits]) if test else np.arange(1, spec.max_digits + 1)
            ab = _draw_operands(rng, want, digits, "digits" if test else spec.add_sampling)
            keep = in_test_bucket(_pair_hash(ab[:, 0], ab[:, 1]), spec.test_fraction) == test
            for a, b in ab[keep]:
                chosen_src.append(f"{a}+{b}=")
                chosen_tgt.append(str(int(a) + int(b)))
        else:
            lengths = (np.arange(spec.test_min_length, spec.test_max_length + 1) if test
                       else spec.train_lengths())
            symbols, n = _draw_symbols(rng, spec, want, lengths)
            keep = in_test_bucket(sequence_hash(symbols, n), spec.test_fraction) == test
            for row, length in zip(symbols[keep], n[keep]):
                row = row[:length]
                out = row[::-1] if spec.task == "reverse" else np.sort(row)
                chosen_src.append("".join(spec.alphabet[i] for i in row))
                chosen_tgt.append("".join(spec.alphabet[i] for i in out))
    return chosen_src[:count], chosen_tgt[:count]


def synthetic_batch(spec: SyntheticSpec, vocab: Seq2SeqVocab, seed: int, split: str, step: int,
                    batch_size: int) -> dict:
    """A batch of generated examples, a pure function of (seed, split, step)."""
    rng = np.random.default_rng([seed, {"train": 0, "test": 1}[split], step])
    return encode_pairs(vocab, *_draw(spec, rng, batch_size, split))


def unseen_length_flags(spec: SyntheticSpec, sources: np.ndarray) -> np.ndarray:
    """[N] float: 1 where a test source's length is one of the held-out (never trained) lengths."""
    lengths = np.sum(sources != PAD, axis=1)
    if spec.task == "add" or not spec.heldout_lengths:
        return np.zeros(len(sources), np.float32)
    return np.isin(lengths, spec.heldout_lengths).astype(np.float32)


# ------------------------------------------------------------------ user TSV

@dataclasses.dataclass
class TextPairs:
    train_sources: list
    train_targets: list
    test_sources: list
    test_targets: list


def read_tsv(path: str, val_fraction: float) -> TextPairs:
    """`source<TAB>target` per line (UTF-8; blank lines skipped); the last val_fraction of the
    lines (at least one) are the test split."""
    if not path:
        raise DataError("data.task='tsv' needs data.path, a UTF-8 file of source<TAB>target lines")
    if not os.path.exists(path):
        raise DataError(f"data.path {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"data.path {path!r} is a directory; expected a TSV file")
    if not 0 < val_fraction < 1:
        raise DataError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"data.path {path!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    sources, targets = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected source<TAB>target (one tab), found {len(parts) - 1} tabs")
        if not parts[0] or not parts[1]:
            raise DataError(f"{path}:{number}: empty {'source' if not parts[0] else 'target'}")
        sources.append(parts[0])
        targets.append(parts[1])
    if len(sources) < 2:
        raise DataError(f"data.path {path!r} holds {len(sources)} example(s); need at least 2 (train and test)")
    num_test = max(1, int(round(val_fraction * len(sources))))
    cut = len(sources) - num_test
    return TextPairs(sources[:cut], targets[:cut], sources[cut:], targets[cut:])


def tsv_vocab(pairs: TextPairs) -> Seq2SeqVocab:
    all_sources = pairs.train_sources + pairs.test_sources
    all_targets = pairs.train_targets + pairs.test_targets
    chars = set("".join(all_sources)) | set("".join(all_targets))
    return Seq2SeqVocab(chars, max(map(len, all_sources)), max(map(len, all_targets)))


def tsv_train_batch(pairs: TextPairs, vocab: Seq2SeqVocab, seed: int, step: int, batch_size: int) -> dict:
    """Rows drawn uniformly with replacement, a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, 2, step])
    rows = rng.integers(0, len(pairs.train_sources), size=batch_size)
    return encode_pairs(vocab, [pairs.train_sources[i] for i in rows], [pairs.train_targets[i] for i in rows])


def prepare_source(task: str, text: str) -> str:
    """A user's input as the task's source: addition appends the '=' it was trained with."""
    if task == "add" and not text.endswith("="):
        return text + "="
    return text


def encode_source(vocab: Seq2SeqVocab, text: str) -> np.ndarray:
    """One input text -> source ids [1, S]; errors name unknown characters or the length."""
    try:
        ids = vocab.encode(text)
    except UnknownCharactersError as e:
        raise UnknownCharactersError(f"the input has {e}") from None
    if len(ids) == 0:
        raise ValueError("the input is empty")
    if len(ids) > vocab.max_source_length:
        raise ValueError(f"the input has {len(ids)} characters; this model takes at most {vocab.max_source_length}")
    out = np.full((1, vocab.max_source_length), PAD, np.int32)
    out[0, :len(ids)] = ids
    return out


def vocab_for(data):
    """The run's (vocabulary, synthetic spec or None, TSV pairs or None)."""
    if data.task == "tsv":
        pairs = read_tsv(data.path, data.val_fraction)
        vocab = tsv_vocab(pairs)
        return vocab, None, pairs
    if data.task not in TASKS:
        raise DataError(f"unknown data.task {data.task!r}; expected one of {', '.join(TASKS)}")
    spec = SyntheticSpec.from_config(data)
    return spec.vocab(), spec, None
