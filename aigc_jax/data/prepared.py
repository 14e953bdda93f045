"""Reads a prepared token dataset (aigc_jax/data/prepare.py) window by window.

Training windows are a pure function of (seed, step), like the in-memory path's: start positions
are drawn uniformly over every position where a window of context + 1 tokens fits inside one
shard's training part. A batch is a `WindowRows`: the starts only, read from the shards when its
rows are asked for, so each process of a multi-host run reads just the rows its devices hold
(jax.make_array_from_callback asks for those), and nothing but the batch is ever in memory.
Rows are read with pread rather than through a memory map: the shards are memory-mappable, but
pages touched through a map count in the process's resident memory, which would then grow with
the part of the dataset a run has seen.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from aigc_jax.data import tokenizers
from aigc_jax.data.prepare import FORMAT_VERSION, INDEX_FILE
from aigc_jax.data.text import DataError
from aigc_jax.files import read_json, sha256_of_file


class PreparedDataset:
    """A finished DATA_DIR: its tokenizer, dtype and the (shard, start, length) segments of each split."""

    def __init__(self, directory: str, verify: bool = True):
        self.directory = directory
        index_path = os.path.join(directory, INDEX_FILE)
        if not os.path.isdir(directory):
            raise DataError(f"data.prepared {directory!r} does not exist")
        if not os.path.exists(index_path):
            raise DataError(f"data.prepared {directory!r} has no {INDEX_FILE}: it is not a finished prepared dataset "
                            f"(rerun experiments.prepare_data with the same --output to finish it)")
        self.index = read_json(index_path, "prepared dataset index")
        if self.index.get("format") != FORMAT_VERSION:
            raise DataError(f"{index_path!r} has format {self.index.get('format')!r}; this version reads "
                            f"{FORMAT_VERSION}: prepare the dataset again")
        self.dtype = np.dtype(self.index["dtype"])
        self.tokenizer = tokenizers.load_tokenizer(directory)
        self.paths = [os.path.join(directory, shard["file"]) for shard in self.index["shards"]]
        for path, shard in zip(self.paths, self.index["shards"]):
            if not os.path.exists(path):
                raise DataError(f"shard {path!r} of the prepared dataset is missing")
            if os.path.getsize(path) != shard["tokens"] * self.dtype.itemsize:
                raise DataError(f"shard {path!r} has {os.path.getsize(path):,} bytes; its index says "
                                f"{shard['tokens'] * self.dtype.itemsize:,}: the dataset is damaged, prepare it again")
            if verify and sha256_of_file(path) != shard["sha256"]:
                raise DataError(f"shard {path!r} fails its checksum: the dataset is damaged, prepare it again")
        self._files: dict[int, int] = {}
        self._lock = threading.Lock()

    def segments(self, split: str) -> np.ndarray:
        """[S, 3] (shard, first token, token count) of the split's contiguous parts."""
        rows = []
        for number, shard in enumerate(self.index["shards"]):
            cut = shard["train_tokens"]
            start, length = (0, cut) if split == "train" else (cut, shard["tokens"] - cut)
            if length > 0:
                rows.append((number, start, length))
        return np.asarray(rows, np.int64).reshape(-1, 3)

    def _fd(self, shard: int) -> int:
        with self._lock:
            if shard not in self._files:
                self._files[shard] = os.open(self.paths[shard], os.O_RDONLY)
            return self._files[shard]

    def read(self, shard: int, start: int, count: int) -> np.ndarray:
        size = self.dtype.itemsize
        data = os.pread(self._fd(shard), count * size, start * size)
        return np.frombuffer(data, self.dtype)

    def read_windows(self, places: np.ndarray, length: int) -> np.ndarray:
        """places [..., 2] (shard, absolute start) -> int32 windows [..., length]."""
        flat = places.reshape(-1, 2)
        out = np.empty((len(flat), length), np.int32)
        for row, (shard, start) in enumerate(flat):
            out[row] = self.read(int(shard), int(start), length)
        return out.reshape(places.shape[:-1] + (length,))

    def close(self) -> None:
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()


class WindowStarts:
    """Where windows of `length` tokens can start in a split: every position that keeps the window
    inside one segment. Position u in [0, total) maps to a (shard, start) pair."""

    def __init__(self, segments: np.ndarray, length: int, split: str, directory: str):
        usable = segments[segments[:, 2] >= length]
        if not len(usable):
            longest = int(segments[:, 2].max()) if len(segments) else 0
            raise DataError(f"the {split} split of {directory!r} has no run of {length} tokens (context + 1) inside "
                            f"one shard (the longest is {longest}); use a shorter model.context_length or more data")
        self.segments = usable
        self.counts = usable[:, 2] - length + 1
        self.cumulative = np.cumsum(self.counts)
        self.total = int(self.cumulative[-1])
        self.length = length

    def places(self, positions: np.ndarray) -> np.ndarray:
        """positions [...] in [0, total) -> [..., 2] (shard, absolute start)."""
        seg = np.searchsorted(self.cumulative, positions, side="right")
        before = np.where(seg > 0, self.cumulative[seg - 1], 0)
        return np.stack([self.segments[seg, 0], self.segments[seg, 1] + positions - before], axis=-1)

    def tiles(self) -> np.ndarray:
        """[N, 2] every non-overlapping window, segment by segment (the exact evaluation)."""
        step = self.length - 1
        rows = []
        for shard, first, count in self.segments:
            offsets = first + np.arange(0, count - self.length + 1, step)
            rows.append(np.stack([np.full(len(offsets), shard), offsets], axis=-1))
        return np.concatenate(rows)


class WindowRows:
    """A batch of windows [..., length] as (shard, start) places, read on demand: indexing reads
    only the rows asked for (numpy-style slices over the leading axes, one over the tokens).
    np.asarray(rows) reads them all."""

    reads_rows_on_demand = True
    dtype = np.dtype(np.int32)

    def __init__(self, dataset: PreparedDataset, places: np.ndarray, length: int):
        self.dataset, self.places, self.length = dataset, places, length

    @property
    def shape(self) -> tuple:
        return tuple(self.places.shape[:-1]) + (self.length,)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def reshape(self, *shape) -> "WindowRows":
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        if shape[-1] != self.length:
            raise ValueError(f"windows keep their length {self.length}; cannot reshape to {shape}")
        return WindowRows(self.dataset, self.places.reshape(tuple(shape[:-1]) + (2,)), self.length)

    @staticmethod
    def stack(batches: list["WindowRows"]) -> "WindowRows":
        return WindowRows(batches[0].dataset, np.stack([b.places for b in batches]), batches[0].length)

    def __getitem__(self, index) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        leading, tokens = index[:self.ndim - 1], index[self.ndim - 1:]
        rows = self.dataset.read_windows(self.places[leading], self.length)
        return rows[(Ellipsis,) + tokens] if tokens else rows

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.dataset.read_windows(self.places, self.length)
        return rows if dtype is None else rows.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def training_windows(dataset: PreparedDataset, starts: WindowStarts, seed: int, step: int,
                     batch_size: int) -> WindowRows:
    """[batch_size, context + 1] windows at uniform positions: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    return WindowRows(dataset, starts.places(rng.integers(0, starts.total, size=batch_size)), starts.length)


def evaluation_windows(dataset: PreparedDataset, starts: WindowStarts, num_windows: int) -> np.ndarray:
    """A fixed set of validation windows: evenly spaced over the split (num_windows > 0) or every
    non-overlapping one (0)."""
    if num_windows == 0:
        places = starts.tiles()
    else:
        positions = np.unique(np.linspace(0, starts.total - 1, num=num_windows).round().astype(np.int64))
        places = starts.places(positions)
    return dataset.read_windows(places, starts.length)


def check_tokenizer(dataset: PreparedDataset, kind: str, vocab_size: int, others: dict) -> None:
    """A run whose tokenizer differs from the dataset's is refused, naming both: the config's kind and
    size, and `others` {description: tokenizer} (a resumed run's, a fine-tuning source's)."""
    spec = dataset.index["tokenizer"]
    if kind != spec["kind"] or (kind == "bpe" and vocab_size != spec["vocab_size"]):
        raise DataError(f"the prepared dataset {dataset.directory!r} is tokenized with {spec['kind']} (vocabulary "
                        f"{spec['vocab_size']:,}); the config asks for data.tokenizer={kind!r}, "
                        f"data.vocab_size={vocab_size}: set --config.data.tokenizer={spec['kind']}"
                        + (f" --config.data.vocab_size={spec['vocab_size']}" if spec["kind"] == "bpe" else ""))
    for what, tokenizer in others.items():
        if tokenizer.to_json() != dataset.tokenizer.to_json():
            raise DataError(f"{what} differs from the one the prepared dataset {dataset.directory!r} was "
                            f"tokenized with: its token ids would mean other text")
