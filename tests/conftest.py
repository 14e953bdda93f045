import gc
import os
import random

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; skipped unless --runslow is given")
    share_compiled_steps()


def share_compiled_steps():
    """The library's persistent compilation cache for this process and the commands it starts
    (they inherit the environment): tests that compile the same step compile it once, and a
    second session loads what the first compiled. AIGC_JAX_COMPILATION_CACHE moves it or turns
    it off (aigc_jax/compilation_cache.py). Caching changes no numerics."""
    from aigc_jax import compilation_cache
    directory = compilation_cache.enable()
    if directory:
        os.environ[compilation_cache.ENV] = directory


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """The tests are over: nothing they made needs collecting again. An xdist worker holds about
    1.5 million tracked objects by then, a full collection of them takes 1.3 s on 2 cores, and
    the teardown's collections pushed a worker past execnet's 5 s shutdown grace, after which
    execnet interrupts it (a KeyboardInterrupt printed inside JAX's gc callback)."""
    gc.freeze()


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


def train_tiny_run(config_name: str, workdir: str, *overrides: str) -> dict:
    """Trains configs/<config_name> (a tiny variant) into workdir quietly; its summary."""
    from aigc_jax import families
    from aigc_jax.config import load_config
    return families.train(load_config(config_path(config_name), ["train.progress_bar=false", *overrides]), workdir,
                          echo=lambda *_: None)


def config_path(name: str) -> str:
    return os.path.join(REPO, "configs", name)


@pytest.fixture(scope="session")
def tiny_clip_run(tmp_path_factory) -> str:
    """A tiny contrastive run (configs/clip.py:tiny) for the CLIP and captioner tests; the tests that
    use it name the xdist_group "tiny_clip_run", so one worker trains it once."""
    workdir = str(tmp_path_factory.mktemp("clip") / "run")
    train_tiny_run("clip.py:tiny", workdir)
    return workdir


@pytest.fixture(scope="session")
def tiny_supervised_run(tmp_path_factory) -> str:
    """The tiny contrastive run's image encoder trained on the shapes world's labels instead
    (configs/clip.py:tiny,supervised): the linear probes' and the captioner's supervised baseline.
    Its tests name the xdist_group "tiny_clip_run" too."""
    workdir = str(tmp_path_factory.mktemp("clip_supervised") / "run")
    train_tiny_run("clip.py:tiny,supervised", workdir)
    return workdir


@pytest.fixture(scope="session")
def tiny_chat_base(tmp_path_factory) -> str:
    """A tiny base LM run (the standard-library corpus) with a context long enough for the chat
    stages' tiny conversations. Tests using it or the runs built on it name the xdist_group
    "tiny_chat", so one worker trains them once."""
    workdir = str(tmp_path_factory.mktemp("chat_base") / "run")
    train_tiny_run("gpt_char.py:tiny", workdir, "model.context_length=192")
    return workdir


@pytest.fixture(scope="session")
def tiny_chat_sft(tiny_chat_base, tmp_path_factory) -> str:
    """A tiny SFT run from the tiny base (the start and reference of the preference stages)."""
    workdir = str(tmp_path_factory.mktemp("chat_sft") / "run")
    train_tiny_run("chat.py:tiny", workdir, f"chat.base={tiny_chat_base}")
    return workdir


@pytest.fixture(scope="session")
def tiny_chat_rm(tiny_chat_sft, tmp_path_factory) -> str:
    """A tiny reward model run on the tiny SFT run (PPO's frozen scorer)."""
    workdir = str(tmp_path_factory.mktemp("chat_rm") / "run")
    train_tiny_run("chat.py:rm,tiny", workdir, f"chat.sft={tiny_chat_sft}")
    return workdir


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
