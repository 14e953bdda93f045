"""The persistent compilation cache: where it lives, that a command fills it, and that "off" is off."""
import os
import subprocess
import sys

from aigc_jax import compilation_cache
from tests.conftest import REPO, config_path


def test_the_environment_beats_the_config_which_beats_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.resolve("") == str(tmp_path / "xdg" / "aigc_jax" / "xla")
    assert compilation_cache.resolve(str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert compilation_cache.resolve("off") is None
    monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "env"))
    assert compilation_cache.resolve(str(tmp_path / "mine")) == str(tmp_path / "env")
    monkeypatch.setenv(compilation_cache.ENV, "OFF")
    assert compilation_cache.resolve(str(tmp_path / "mine")) is None


def test_a_training_command_fills_the_cache_and_off_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, **{compilation_cache.ENV: str(cache)})
    subprocess.run([sys.executable, "-m", "experiments.train", f"--config={config_path('markov_lm.py:tiny')}",
                    f"--workdir={tmp_path / 'run'}", "--config.train.progress_bar=false"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    assert len(os.listdir(cache)) > 2  # at least the train and eval steps
    # "off": nothing reaches the default location either (what `enable` leaves JAX with decides it for
    # every entry point; a compilation in that process then writes nowhere)
    env = dict(os.environ, **{compilation_cache.ENV: "off", "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    code = ("import jax; from aigc_jax import compilation_cache as c; assert c.enable() is None; "
            "jax.jit(lambda x: x * 2)(1.0).block_until_ready(); print(jax.config.jax_enable_compilation_cache)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
    assert not (tmp_path / "xdg").exists()


def test_an_unwritable_cache_location_runs_without_the_cache(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    env = dict(os.environ, **{compilation_cache.ENV: str(blocker / "cache")})
    result = subprocess.run([sys.executable, "-c", "from aigc_jax import compilation_cache as c; print(c.enable())"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "None"
    assert "warning: compilation cache off: cannot create" in result.stderr
