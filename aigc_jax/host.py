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


def machine() -> str:
    """One line naming the machine for a report: cores, CPU model (from /proc/cpuinfo where it
    exists) and Python version, e.g. "2-core Intel(R) Xeon(R) Processor, Python 3.11.7"."""
    import platform
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{usable_cores()}-core {model}, Python {platform.python_version()}"
