import subprocess
import sys

import pytest

from aigc_jax import config as config_lib
from tests.conftest import REPO, config_path


def test_overrides_parse_to_the_field_type():
    config = config_lib.load_config(config_path("gpt_char.py:tiny"), [
        "model.num_layers=3", "model.dropout=0.25", "model.use_bias=false", "model.positions=rope",
        "optimizer.learning_rate=3e-4"])
    assert config.model.num_layers == 3 and isinstance(config.model.num_layers, int)
    assert config.model.dropout == 0.25
    assert config.model.use_bias is False
    assert config.model.positions == "rope"
    assert config.optimizer.learning_rate == pytest.approx(3e-4)


def test_variants_differ_and_shakespeare_recipe_is_exact():
    tiny = config_lib.load_config(config_path("gpt_char.py:tiny"))
    recipe = config_lib.load_config(config_path("gpt_char.py:shakespeare_cpu"))
    assert tiny.model.embed_dim < recipe.model.embed_dim
    assert (recipe.model.num_layers, recipe.model.num_heads, recipe.model.embed_dim) == (4, 4, 128)
    assert (recipe.model.context_length, recipe.train.batch_size, recipe.train.num_steps) == (64, 12, 2000)
    opt = recipe.optimizer
    assert (opt.learning_rate, opt.min_learning_rate, opt.warmup_steps) == (1e-3, 1e-4, 100)
    assert (opt.beta1, opt.beta2, opt.weight_decay, opt.grad_clip) == (0.9, 0.99, 0.1, 1.0)
    assert recipe.model.dropout == 0.0
    # the batch of 12 as three unrolled micro-batches of 4: the same gradient (tests/test_lm_task.py)
    assert (recipe.train.grad_accum_steps, recipe.train.unroll_micro_batches) == (3, True)


def test_unknown_field_is_named_with_a_suggestion():
    with pytest.raises(config_lib.ConfigError, match=r"unknown config field 'model.num_layerz'.*'model.num_layers'"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["model.num_layerz=2"])
    with pytest.raises(config_lib.ConfigError, match="unknown config field 'nosuch.section.x'"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["nosuch.section.x=1"])


def test_wrong_types_and_malformed_overrides():
    with pytest.raises(config_lib.ConfigError, match="'model.num_layers' expects an integer, got 'two'"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["model.num_layers=two"])
    with pytest.raises(config_lib.ConfigError, match="boolean"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["model.use_bias=maybe"])
    with pytest.raises(config_lib.ConfigError, match="not of the form field=value"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["model.num_layers"])
    with pytest.raises(config_lib.ConfigError, match="is a section"):
        config_lib.load_config(config_path("gpt_char.py:tiny"), ["model=3"])


def test_missing_config_file_and_unknown_variant():
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        config_lib.load_config("configs/nope.py")
    with pytest.raises(ValueError, match="unknown gpt_char variant 'huge'"):
        config_lib.load_config(config_path("gpt_char.py:huge"))


def test_changed_fields_only_under_prefixes():
    saved = {"model": {"num_layers": 4, "dropout": 0.0}, "train": {"num_steps": 10}, "data": {"tokenizer": "char"}}
    current = {"model": {"num_layers": 2, "dropout": 0.0}, "train": {"num_steps": 99}, "data": {"tokenizer": "byte"}}
    assert config_lib.changed_fields(saved, current, ["model", "data.tokenizer"]) == [
        "data.tokenizer", "model.num_layers"]


def test_command_line_unknown_field_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", f"--config={config_path('gpt_char.py:tiny')}",
         f"--workdir={tmp_path / 'run'}", "--config.model.num_layerz=2"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown config field 'model.num_layerz' (did you mean 'model.num_layers'?)"]
    assert not (tmp_path / "run").exists()


def test_palm_variant_turns_on_palms_set_and_combines():
    config = config_lib.load_config(config_path("gpt_char.py:shakespeare_cpu,palm"))
    m = config.model
    assert (m.positions, m.mlp, m.num_kv_heads, m.parallel_block, m.use_bias) == ("rope", "swiglu", 1, True, False)
    assert config.loss.z_loss == 1e-4 and m.embed_dim == 128
    gpt = config_lib.load_config(config_path("gpt_char.py"))
    assert (gpt.model.positions, gpt.model.mlp, gpt.model.num_kv_heads, gpt.loss.z_loss) == ("learned", "gelu", 0, 0.0)
