"""A checksum per checkpoint, written once Orbax has finished it and verified before it is
restored, so bytes changed inside an array file (a bad disk, a stray write) are found instead
of restored silently. `WORKDIR/checksums/<step>.sha256` holds one line per file of the step's
directory: "<sha256>  <relative path>". A checkpoint without a checksum file (saved by an older
version, or interrupted before its checksum) is restored unverified."""
from __future__ import annotations

import os
from typing import Optional

from aigc_jax.files import sha256_of_file, write_text

CHECKSUMS_DIR = "checksums"


def _files(step_dir: str) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(step_dir):
        found.extend(os.path.relpath(os.path.join(root, name), step_dir) for name in names)
    return sorted(found)


def checksum_path(checkpoints_dir: str, step: int) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(checkpoints_dir)), CHECKSUMS_DIR, f"{step}.sha256")


def write(checkpoints_dir: str, step: int) -> str:
    """Writes the checksums of a finished checkpoint (atomically)."""
    step_dir = os.path.join(checkpoints_dir, str(step))
    lines = [f"{sha256_of_file(os.path.join(step_dir, name))}  {name}\n" for name in _files(step_dir)]
    path = checksum_path(checkpoints_dir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return write_text(path, "".join(lines), "the checksums")


def verify(checkpoints_dir: str, step: int) -> Optional[str]:
    """None when the checkpoint matches its checksums (or has none: unverified); otherwise what
    differs, naming the first file."""
    path = checksum_path(checkpoints_dir, step)
    if not os.path.exists(path):
        return None
    step_dir = os.path.join(checkpoints_dir, str(step))
    expected = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            digest, _, name = line.rstrip("\n").partition("  ")
            expected[name] = digest
    present = _files(step_dir)
    missing = sorted(set(expected) - set(present))
    if missing:
        return f"{missing[0]} is missing"
    for name in sorted(expected):
        if sha256_of_file(os.path.join(step_dir, name)) != expected[name]:
            return f"{name} does not match its checksum"
    return None


def verify_or_explain(checkpoints_dir: str, step: int) -> Optional[str]:
    """None only for a checkpoint whose checksums exist and match; otherwise why it is not verified."""
    if not os.path.exists(checksum_path(checkpoints_dir, step)):
        return "no checksums to verify it"
    return verify(checkpoints_dir, step)


def prune(checkpoints_dir: str, kept_steps) -> None:
    """Removes the checksum files of checkpoints that no longer exist (keep-N deleted them)."""
    folder = os.path.join(os.path.dirname(os.path.abspath(checkpoints_dir)), CHECKSUMS_DIR)
    if not os.path.isdir(folder):
        return
    kept = {f"{step}.sha256" for step in kept_steps}
    for name in os.listdir(folder):
        if name.endswith(".sha256") and name not in kept:
            os.remove(os.path.join(folder, name))
