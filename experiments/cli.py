"""Shared command-line plumbing: `--config=path.py[:arg]` plus `--config.field=value`
overrides, and one-line errors for bad input instead of tracebacks."""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags, logging

from aigc_jax import compilation_cache
from aigc_jax.config import ConfigError, load_config
from aigc_jax.data.text import DataError
from aigc_jax.files import DiskFull, is_disk_full
from aigc_jax.data.tokenizers import UnknownCharactersError
from aigc_jax.train.checkpoints import CheckpointError
from aigc_jax.train.loop import TrainingDiverged, TrainingInterrupted
from aigc_jax.train.workdir_lock import WorkdirLocked

USER_ERRORS = (ConfigError, DataError, CheckpointError, UnknownCharactersError, TrainingDiverged, FileNotFoundError,
               ValueError, WorkdirLocked, DiskFull)

flags.DEFINE_string("config", None, "Config file and variant, e.g. configs/gpt_char.py:tiny.")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Takes `--config.a.b=v` (or `--config.a.b v`) out of argv; returns (overrides, rest)."""
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config."):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ConfigError(f"override {arg!r} has no value")
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def config_from_flags(overrides: list[str]):
    if not flags.FLAGS.config:
        raise ConfigError("--config is required, e.g. --config=configs/gpt_char.py:tiny")
    return load_config(flags.FLAGS.config, overrides)


def _exit(message: str, status: int) -> None:
    """Prints the one-line error and ends the process now. The loop has already closed its files
    and waited for its checkpoints; a failed asynchronous save can leave Orbax threads that
    would hold the interpreter's exit for minutes (a 300 s hang), so they are not waited for."""
    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(main: Callable[[list[str]], None]) -> None:
    """Runs main(overrides) under absl; user errors print one line and exit with status 2."""
    try:
        overrides, argv = split_overrides(sys.argv)
    except ConfigError as e:
        sys.exit(f"error: {e}")

    def wrapped(_argv):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
        compilation_cache.enable()  # the environment's or the default; a config may move it (prepare_host)
        try:
            main(overrides)
        except TrainingDiverged as e:
            _exit(f"error: {e}", 1)
        except TrainingInterrupted as e:
            _exit(str(e), 130)
        except KeyboardInterrupt:
            _exit("interrupted", 130)
        except USER_ERRORS as e:
            _exit(f"error: {e}", 2)
        except OSError as e:
            if not is_disk_full(e):
                raise
            _exit(f"error: no space left on device writing {e.filename or 'the workdir'}; free some space and "
                  f"rerun the same command (earlier checkpoints are intact)", 2)

    app.run(wrapped, argv=argv)
