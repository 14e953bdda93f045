import os
import random
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; skipped unless --runslow is given")
    share_compiled_steps()


def share_compiled_steps():
    """One XLA compilation cache for the whole session, this process and the commands it starts
    (they inherit the environment): the many tests that compile the same tiny step compile it
    once. A fresh directory per session unless AIGC_JAX_TEST_CACHE names one to keep across
    sessions. Caching changes no numerics: a hit loads the executable the compiler made."""
    directory = os.environ.get("AIGC_JAX_TEST_CACHE") or tempfile.mkdtemp(prefix="aigc_jax_test_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = directory
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    import jax
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def restore_newest(config, workdir):
    """(state, step) of the newest checkpoint in workdir, restored onto the task's template."""
    import jax
    from aigc_jax.families import build_task
    from aigc_jax.train.checkpoints import Checkpointer
    task = build_task(config, workdir)
    template = jax.jit(task.init)(jax.random.key(0))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    state, step = checkpointer.restore_latest(template)
    checkpointer.close()
    return state, step


def config_path(name: str) -> str:
    return os.path.join(REPO, "configs", name)


@pytest.fixture(scope="session")
def small_text_file(tmp_path_factory) -> str:
    """A 30k-character English-like text with a small alphabet, made from a seed."""
    rng = random.Random(0)
    words = ("the model learns to predict the next character of a text one step at a time "
             "and a generator plays against a discriminator in a minimax game").split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "." for _ in range(600)]
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def tiny_lm_config(small_text_file):
    from aigc_jax.config import load_config
    return load_config(config_path("gpt_char.py:tiny"),
                       [f"data.path={small_text_file}", "train.progress_bar=false"])
