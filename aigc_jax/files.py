"""Small JSON files a run keeps in its workdir (config, tokenizer, vocabulary, summary): written
atomically, read with errors that name the file."""
from __future__ import annotations

import json
import os
from typing import Any, Callable


def write_json(path: str, payload: Any, **dump_args) -> str:
    """Writes `payload` to `path` through a temporary file and a rename, so a reader (or a run
    killed mid-write) sees the old file or the new one, never half of one."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, **dump_args)
    os.replace(tmp, path)
    return path


def read_json(path: str, what: str, parse: Callable[[Any], Any] = lambda spec: spec) -> Any:
    """parse(the JSON in `path`); a file that is not UTF-8 JSON, or that `parse` rejects (KeyError,
    TypeError, ValueError), is a ValueError naming `what` and the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(json.load(f))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"corrupt {what} {path!r}: {e}") from None
