"""Prepares a token dataset once (issue 19): text files (and JSONL with a text field) tokenized into
shards of raw little-endian token ids that the loader (aigc_jax/data/prepared.py) reads window by
window, so a corpus larger than memory trains with flat resident memory.

DATA_DIR after a finished preparation:
  index.json          what the loader reads (written last: its presence means the dataset is whole):
                      the tokenizer, the dtype, per shard its token count, the split point between its
                      training and validation tokens and its sha256; per input file its shard and
                      token count; the inputs skipped and why
  tokenizer.json      the tokenizer, in the format a run keeps in its workdir
  plan.json           the inputs and how they were cut into work units, fixed at the first start so
                      a resumed preparation cuts them the same way
  shards/NNNNN.bin    uint16 ids where the vocabulary fits in 65,536 entries, else uint32
  shards/NNNNN.json   written after its shard is complete: its token count and checksum

Inputs are packed in sorted order into units of about `unit_bytes` (a large file is cut at line
boundaries into several); each unit becomes one shard. Within each shard the first
1 - val_fraction of the tokens train and the rest validate (the split of nanoGPT's single-file
recipe, applied per shard). A JSONL file's records contribute their `text_field`, separated by a
blank line. A preparation killed at any point resumes: finished shards (checksum file present and
matching) are kept, anything half-written is redone.
"""
from __future__ import annotations

import codecs
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
from typing import Callable, Iterable, Optional

import numpy as np

from aigc_jax.data import tokenizers
from aigc_jax.data.text import DataError, stdlib_source_files
from aigc_jax.files import read_json, sha256_of_file, write_json
from aigc_jax.host import usable_cores

INDEX_FILE, PLAN_FILE, SHARDS_DIR = "index.json", "plan.json", "shards"
STDLIB = "stdlib"  # --input=stdlib: the embedded corpus
FORMAT_VERSION = 1
CHUNK_CHARS = 1 << 18  # the encoder's batch items: ~256k characters, cut after a newline
GROUP_CHUNKS = 8  # chunks encoded together (~2M characters)
TASKS_PER_WORKER = 4  # units a worker process tokenizes before a fresh one replaces it (bounds its memory)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


# ---------------------------------------------------------------- inputs and their plan


def input_files(inputs: Iterable[str]) -> list[str]:
    """Paths given (files, or directories walked recursively, hidden entries skipped), sorted;
    `stdlib` (where no such path exists) is the embedded corpus: the standard library's top-level sources."""
    found = []
    for given in inputs:
        if given == STDLIB and not os.path.exists(given):
            found.extend(str(p) for p in stdlib_source_files())
        elif os.path.isdir(given):
            for root, dirs, names in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in names if not n.startswith("."))
        elif os.path.isfile(given):
            found.append(given)
        else:
            raise DataError(f"--input {given!r} does not exist")
    if not found:
        raise DataError(f"no files under --input {', '.join(inputs)}")
    return sorted(os.path.abspath(p) for p in found)


def unusable_reason(path: str) -> Optional[str]:
    """Why a file cannot be a text input (None when it can): empty, binary (a NUL byte in its
    first 8 KiB, git's test), or not UTF-8 (checked over the whole file, streaming)."""
    if os.path.getsize(path) == 0:
        return "empty"
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            if offset == 0 and b"\0" in block[:8192]:
                return "binary (NUL bytes)"
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                return f"not UTF-8 ({e.reason} at byte {offset + e.start})"
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "not UTF-8 (truncated character at the end)"
    return None


def line_cuts(path: str, unit_bytes: int) -> list[int]:
    """Byte offsets cutting a file into pieces of about unit_bytes, each cut just after a newline
    (a file without newlines stays whole)."""
    size, cuts = os.path.getsize(path), [0]
    with open(path, "rb") as f:
        while cuts[-1] + unit_bytes < size:
            f.seek(cuts[-1] + unit_bytes)
            rest = f.readline()
            if not rest or f.tell() >= size:
                break
            cuts.append(f.tell())
    return cuts + [size]


def make_plan(paths: list[str], unit_bytes: int) -> dict:
    """Units: lists of [path, start, end] byte ranges, packed in order up to unit_bytes each."""
    units, current, current_bytes, skipped, files = [], [], 0, [], []
    for path in paths:
        reason = unusable_reason(path)
        if reason:
            skipped.append({"path": path, "reason": reason})
            continue
        files.append({"path": path, "bytes": os.path.getsize(path), "mtime_ns": os.stat(path).st_mtime_ns})
        cuts = line_cuts(path, unit_bytes)
        for start, end in zip(cuts[:-1], cuts[1:]):
            if current and current_bytes + (end - start) > unit_bytes:
                units.append(current)
                current, current_bytes = [], 0
            current.append([path, start, end])
            current_bytes += end - start
    if current:
        units.append(current)
    return {"format": FORMAT_VERSION, "unit_bytes": unit_bytes, "files": files, "skipped": skipped, "units": units}


def same_inputs(old: dict, new: dict) -> Optional[str]:
    """None when a saved plan was made from the same inputs as a new one; else what changed."""
    before = {f["path"]: f for f in old["files"]}
    now = {f["path"]: f for f in new["files"]}
    for path in sorted(set(before) | set(now)):
        if path not in now:
            return f"{path} is no longer an input"
        if path not in before:
            return f"{path} is a new input"
        if (before[path]["bytes"], before[path]["mtime_ns"]) != (now[path]["bytes"], now[path]["mtime_ns"]):
            return f"{path} has changed"
    for setting in ("unit_bytes", "val_fraction", "text_field"):
        if old.get(setting) != new.get(setting):
            return f"--{setting} was {old.get(setting)!r}"
    return None


# ---------------------------------------------------------------- reading a unit's text


@dataclasses.dataclass
class PieceText:
    path: str
    text: str
    skipped_records: int = 0


def read_piece(path: str, start: int, end: int, text_field: str) -> PieceText:
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8")
    if not path.endswith(".jsonl"):
        return PieceText(path, text)
    texts, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)[text_field]
        except (json.JSONDecodeError, KeyError, TypeError, IndexError):
            bad += 1
            continue
        if isinstance(value, str) and value:
            texts.append(value + "\n\n")
        else:
            bad += 1
    return PieceText(path, "".join(texts), bad)


def text_chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """The text in pieces of about `size` characters, each ending just after a newline."""
    chunks, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        chunks.append(text[start:end])
        start = end
    return chunks


def encode_many(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text (BPE through its batch call)."""
    if not texts:
        return []
    if tokenizer.kind == "bpe":
        return tokenizer.encode_batch(texts)
    return [tokenizer.encode(t) for t in texts]


_WORKER_TOKENIZER = None


def _load_worker_tokenizer(out: str) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizers.load_tokenizer(out)


def _write_shard_in_worker(out: str, unit: int, pieces: list, dtype_str: str, text_field: str,
                           val_fraction: float) -> dict:
    return write_shard(out, unit, pieces, _WORKER_TOKENIZER, np.dtype(dtype_str), text_field, val_fraction)


# ---------------------------------------------------------------- one unit -> one shard


def shard_paths(out: str, unit: int) -> tuple[str, str]:
    base = os.path.join(out, SHARDS_DIR, f"{unit:05d}")
    return base + ".bin", base + ".json"


def finished_shard(out: str, unit: int) -> Optional[dict]:
    """The shard's record if it was finished and still matches its checksum, else None."""
    binary, record = shard_paths(out, unit)
    if not (os.path.exists(binary) and os.path.exists(record)):
        return None
    with contextlib.suppress(ValueError):
        info = read_json(record, "shard record")
        if sha256_of_file(binary) == info["sha256"]:
            return info
    return None


def write_shard(out: str, unit: int, pieces: list, tokenizer, dtype: np.dtype, text_field: str,
                val_fraction: float) -> dict:
    """Tokenizes one unit into its shard (through a temporary file, then its record)."""
    texts = [read_piece(path, start, end, text_field) for path, start, end in pieces]
    chunks, owners = [], []
    for i, piece in enumerate(texts):
        for chunk in text_chunks(piece.text):
            chunks.append(chunk)
            owners.append(i)
    encoded = []  # in groups of GROUP_CHUNKS chunks, each kept as compact ids at once (the encoder's
    per_piece = np.zeros(len(texts), np.int64)  # objects cost ~100 bytes a token while they live)
    for first in range(0, len(chunks), GROUP_CHUNKS):
        group = encode_many(tokenizer, chunks[first:first + GROUP_CHUNKS])
        for owner, ids in zip(owners[first:first + GROUP_CHUNKS], group):
            per_piece[owner] += len(ids)
            encoded.append(ids.astype(dtype))
    tokens = np.concatenate(encoded) if encoded else np.zeros(0, dtype)
    binary, record = shard_paths(out, unit)
    with open(binary + ".tmp", "wb") as f:
        f.write(tokens.data)  # the array's own buffer: no copy
        f.flush()
        os.fsync(f.fileno())
    os.replace(binary + ".tmp", binary)
    sha = hashlib.sha256(tokens.data).hexdigest()
    info = {"file": os.path.relpath(binary, out), "tokens": int(len(tokens)),
            "train_tokens": int(len(tokens) * (1.0 - val_fraction)), "sha256": sha,
            "pieces": [{"path": p.path, "tokens": int(n), "skipped_records": p.skipped_records}
                       for p, n in zip(texts, per_piece)]}
    write_json(record, info)
    return info


# ---------------------------------------------------------------- the whole preparation


def tokenizer_sample(plan: dict, sample_bytes: int, text_field: str) -> str:
    """The text a BPE vocabulary is learnt from: the start of each unit's training part, sample_bytes in all."""
    per_unit = max(sample_bytes // max(len(plan["units"]), 1), 1)
    parts = []
    for unit in plan["units"]:
        taken = 0
        for path, start, end in unit:
            if taken >= per_unit:
                break
            take = min(end - start, per_unit - taken)
            cut = line_end_after(path, start + take, end)
            parts.append(read_piece(path, start, cut, text_field).text)
            taken += cut - start
    return "".join(parts)


def line_end_after(path: str, want: int, end: int) -> int:
    """The first offset at or after `want` that ends a line (or `end`)."""
    if want >= end:
        return end
    with open(path, "rb") as f:
        f.seek(want)
        f.readline()
        return min(f.tell(), end)


def load_or_build_tokenizer(out: str, plan: dict, kind: str, vocab_size: int, tokenizer_from: str,
                            sample_bytes: int, text_field: str):
    saved = os.path.join(out, tokenizers.TOKENIZER_FILE)
    if os.path.exists(saved):  # a resumed preparation keeps the tokenizer its first shards used
        return tokenizers.load_tokenizer(out)
    if tokenizer_from:
        source = tokenizer_from if os.path.isdir(tokenizer_from) else os.path.dirname(tokenizer_from) or "."
        tokenizer = tokenizers.load_tokenizer(source)
    elif kind == "byte":
        tokenizer = tokenizers.ByteTokenizer()
    elif kind == "bpe":
        tokenizer = tokenizers.build_tokenizer("bpe", tokenizer_sample(plan, sample_bytes, text_field), vocab_size)
    else:
        raise DataError(f"--tokenizer={kind!r}: prepared datasets use 'bpe' or 'byte' (a character vocabulary "
                        f"needs every character of the corpus first; use byte, or --tokenizer_from a run's workdir)")
    tokenizers.save_tokenizer(tokenizer, out)
    return tokenizer


def prepare(inputs: list[str], out: str, *, tokenizer: str = "bpe", vocab_size: int = 0, tokenizer_from: str = "",
            val_fraction: float = 0.01, unit_bytes: int = 16 << 20, sample_bytes: int = 32 << 20,
            text_field: str = "text", workers: int = 0, progress: Optional[Callable] = None,
            log: Callable = print) -> dict:
    """Prepares (or finishes preparing) DATA_DIR `out` from `inputs` with `workers` processes (0: one per
    usable core); returns its index."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    os.makedirs(os.path.join(out, SHARDS_DIR), exist_ok=True)
    plan = make_plan(input_files(inputs), unit_bytes)
    plan.update(val_fraction=val_fraction, text_field=text_field)
    for item in plan["skipped"]:
        log(f"skipping {item['path']}: {item['reason']}")
    if not plan["units"]:
        raise DataError(f"none of the {len(plan['skipped'])} input files is usable text")
    plan_path = os.path.join(out, PLAN_FILE)
    if os.path.exists(plan_path):
        changed = same_inputs(read_json(plan_path, "preparation plan"), plan)
        if changed:
            raise DataError(f"{out!r} holds a preparation of other inputs ({changed}); use another --output "
                            f"or remove it")
    else:
        write_json(plan_path, plan)
    tok = load_or_build_tokenizer(out, plan, tokenizer, vocab_size, tokenizer_from, sample_bytes, text_field)
    dtype = token_dtype(tok.vocab_size)
    shards = [finished_shard(out, unit) for unit in range(len(plan["units"]))]
    kept = sum(info is not None for info in shards)
    todo = [unit for unit, info in enumerate(shards) if info is None]
    unit_bytes_of = [sum(end - start for _, start, end in unit) for unit in plan["units"]]
    bar = progress(total=sum(unit_bytes_of)) if progress else None
    if bar is not None:
        bar.update(sum(unit_bytes_of) - sum(unit_bytes_of[u] for u in todo))
    workers = min(workers or usable_cores(), len(todo))
    if workers <= 1:
        for unit in todo:
            shards[unit] = write_shard(out, unit, plan["units"][unit], tok, dtype, text_field, val_fraction)
            if bar is not None:
                bar.update(unit_bytes_of[unit])
    else:  # one process per core: the tokenizer's own batch call ran on one core here
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_load_worker_tokenizer,
                                                    initargs=(out,), max_tasks_per_child=TASKS_PER_WORKER) as pool:
            futures = {pool.submit(_write_shard_in_worker, out, unit, plan["units"][unit], dtype.str, text_field,
                                   val_fraction): unit for unit in todo}
            for future in concurrent.futures.as_completed(futures):
                shards[futures[future]] = future.result()
                if bar is not None:
                    bar.update(unit_bytes_of[futures[future]])
    if bar is not None:
        bar.close()
    index = build_index(plan, shards, tok, dtype, val_fraction)
    write_json(os.path.join(out, INDEX_FILE), index, indent=1)
    skipped_records = sum(f["skipped_records"] for f in index["files"])
    log(f"{index['train_tokens']:,} training and {index['validation_tokens']:,} validation tokens in "
        f"{len(shards)} shards ({kept} kept from an earlier run); {len(plan['skipped'])} input file(s) skipped"
        + (f", {skipped_records} JSONL record(s) without text skipped" if skipped_records else ""))
    return index


def build_index(plan: dict, shards: list[dict], tok, dtype: np.dtype, val_fraction: float) -> dict:
    files: dict[str, dict] = {}
    for number, shard in enumerate(shards):
        for piece in shard["pieces"]:
            entry = files.setdefault(piece["path"], {"path": piece["path"], "tokens": 0, "shards": [],
                                                     "skipped_records": 0})
            entry["tokens"] += piece["tokens"]
            entry["skipped_records"] += piece["skipped_records"]
            if number not in entry["shards"]:
                entry["shards"].append(number)
    train = sum(s["train_tokens"] for s in shards)
    return {"format": FORMAT_VERSION, "tokenizer": {"kind": tok.kind, "vocab_size": int(tok.vocab_size),
                                                    "file": tokenizers.TOKENIZER_FILE},
            "dtype": dtype.str, "val_fraction": val_fraction, "train_tokens": train,
            "validation_tokens": sum(s["tokens"] for s in shards) - train,
            "shards": [{k: s[k] for k in ("file", "tokens", "train_tokens", "sha256")} for s in shards],
            "files": list(files.values()), "skipped": plan["skipped"]}
