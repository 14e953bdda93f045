"""Facts about the host machine, in a module light enough for worker processes that must not
import JAX (the sandbox's workers, prepare_data's tokenizing processes)."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; the core count off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
