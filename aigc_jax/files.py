"""Small files a run keeps in its workdir (config, tokenizer, vocabulary, summary, checksums):
written atomically, read with errors that name the file; a full disk is one line (DiskFull)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from typing import Any, Callable


class DiskFull(OSError):
    """No space left on the device: one line naming what was being written, the bytes it needs
    and the bytes free. What was written before stays intact, and no temporary file is left."""

    def __init__(self, what: str, path: str, needed: int):
        self.path, self.needed, self.free = path, needed, free_bytes(path)
        super().__init__(errno.ENOSPC, f"no space left on device for {what} {path!r}: it needs about "
                                       f"{needed:,} bytes and {self.free:,} are free; free some space and "
                                       f"rerun the same command (earlier files are intact)")

    def __str__(self) -> str:
        return self.strerror


def free_bytes(path: str) -> int:
    """Free bytes on the filesystem holding `path` (its nearest existing ancestor)."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC, also when a storage library reports it inside another error's message."""
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def write_text(path: str, text: str, what: str = "the file") -> str:
    """Writes `text` to `path` through a temporary file and a rename, so a reader (or a run
    killed mid-write) sees the old file or the new one, never half of one. A failed write
    removes the temporary file; a full disk is a DiskFull naming the path. The temporary name
    carries the process id, so processes writing the same file at once (a shared cache) never
    write into one temporary file. A missing directory is a FileNotFoundError naming it."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot write {what} {path!r}: its directory {directory!r} does "
                                              f"not exist (create it, or check the path)")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if is_disk_full(e):
            raise DiskFull(what, path, len(text.encode("utf-8"))) from None
        raise
    return path


def write_json(path: str, payload: Any, **dump_args) -> str:
    """`payload` as JSON, written atomically (write_text)."""
    return write_text(path, json.dumps(payload, **dump_args), "the JSON file")


def read_json(path: str, what: str, parse: Callable[[Any], Any] = lambda spec: spec) -> Any:
    """parse(the JSON in `path`); a file that is not UTF-8 JSON, or that `parse` rejects (KeyError,
    TypeError, ValueError), is a ValueError naming `what` and the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(json.load(f))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"corrupt {what} {path!r}: {e}") from None


def sha256_of_file(path: str, block_bytes: int = 1 << 22) -> str:
    """The file's sha256 (hex), read in blocks (any size of file in little memory)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_bytes), b""):
            sha.update(block)
    return sha.hexdigest()
