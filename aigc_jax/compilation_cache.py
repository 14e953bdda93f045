"""JAX's persistent compilation cache, on by default: a second run of a command, a resumed run,
`experiments.sample` and the test suite load the executables XLA compiled before instead of
compiling them again (the cache key is the program, the compiler options, the devices and
the jax version, so a hit is the executable the compiler would make; numerics are unchanged).

Where it lives, first that applies:
  the environment variable AIGC_JAX_COMPILATION_CACHE: a directory, or "off";
  the config field `compilation_cache`: a directory, or "off" ("" = the default);
  the default: $XDG_CACHE_HOME/aigc_jax/xla, else ~/.cache/aigc_jax/xla (outside any workdir,
  shared by all runs of the user).
"""
from __future__ import annotations

import os
import sys
from typing import Optional

from aigc_jax import threefry_cpu

ENV = "AIGC_JAX_COMPILATION_CACHE"
OFF = "off"


def default_directory() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "aigc_jax", "xla")


def resolve(setting: str = "") -> Optional[str]:
    """The cache directory for a config's `compilation_cache` setting, or None when off."""
    chosen = os.environ.get(ENV) or setting or default_directory()
    return None if chosen.strip().lower() == OFF else os.path.abspath(os.path.expanduser(chosen))


def enable(setting: str = "") -> Optional[str]:
    """Turns the cache on (every compilation, however short, is kept) and returns its directory,
    or leaves it off and returns None. Call before the first compilation. Either way it also
    selects the fast-compiling random-number lowering on CPU (threefry_cpu.py; same bits)."""
    import jax
    threefry_cpu.use_unrolled_lowering()
    directory = resolve(setting)
    if directory is not None:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:  # an unwritable home, say: run without the cache rather than fail
            print(f"warning: compilation cache off: cannot create {directory} ({e.strerror or e}); set "
                  f"{ENV} to a writable directory", file=sys.stderr)
            directory = None
    jax.config.update("jax_enable_compilation_cache", directory is not None)
    if directory is None:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
