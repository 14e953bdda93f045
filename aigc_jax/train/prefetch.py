"""Prepares the next batches on a host thread while the device computes."""
from __future__ import annotations

import concurrent.futures
from typing import Any, Callable


class Prefetcher:
    """`get(step)` returns make_batch(step); the next `depth` keys (step + stride, ...) are
    already queued. With several optimizer steps per call, keys are the calls' first steps."""

    def __init__(self, make_batch: Callable[[int], Any], stop: int, depth: int = 2, stride: int = 1):
        self._make_batch = make_batch
        self._stop = stop
        self._depth = depth
        self._stride = stride
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._futures: dict[int, concurrent.futures.Future] = {}

    def get(self, step: int, state: Any = None) -> Any:
        """The batch of `step` (`state` is unused: these batches do not depend on the model)."""
        for ahead in range(step, min(step + (self._depth + 1) * self._stride, self._stop), self._stride):
            if ahead not in self._futures:
                self._futures[ahead] = self._pool.submit(self._make_batch, ahead)
        future = self._futures.pop(step, None) or self._pool.submit(self._make_batch, step)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
