"""Fixed-shape evaluation batches, shared by every family: one compile for the whole set."""
from __future__ import annotations

import numpy as np


def padded_batches(arrays: dict, batch_size: int, *, with_index: bool = False) -> list[dict]:
    """Splits equally long arrays {name: [N, ...]} into batches of `batch_size` rows, each a dict
    of the same names plus 'weight' [batch_size] (1 for real rows, 0 for padding) and, with
    `with_index`, 'index' [batch_size] (each row's position in the set, e.g. to seed its noise).

    The last batch is padded by repeating its last row, so padding is always a valid input
    (an all-padding token row could make attention undefined); its weight of 0 keeps it out
    of every weighted sum."""
    lengths = {name: len(value) for name, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"evaluation arrays differ in length: {lengths}")
    if batch_size < 1:
        raise ValueError(f"evaluation batch size must be at least 1, got {batch_size}")
    count = next(iter(lengths.values()))
    batches = []
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        batch = {}
        for name, value in arrays.items():
            chunk = np.asarray(value[start:start + rows])
            if rows < batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - rows, axis=0)])
            batch[name] = chunk
        batch["weight"] = (np.arange(batch_size) < rows).astype(np.float32)
        if with_index:
            batch["index"] = np.arange(start, start + batch_size, dtype=np.int32)
        batches.append(batch)
    return batches
