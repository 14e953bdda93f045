"""configs/gpt3.py: the GPT-3 paper's Table 2.1 as configs; parameter counts by jax.eval_shape
(no allocation) within 2% of the paper's nominal sizes, and its schedule in steps."""
import jax
import jax.numpy as jnp
import pytest

from aigc_jax import families
from aigc_jax.config import load_config
from aigc_jax.nn.params import count_params
from aigc_jax.nn.transformer import TransformerLM
from configs import gpt3
from tests.conftest import config_path


def abstract_param_count(config) -> int:
    model = TransformerLM.from_config(config.model, config.data.vocab_size)
    tokens = jax.ShapeDtypeStruct((1, config.model.context_length), jnp.int32)
    return count_params(jax.eval_shape(model.init, jax.random.key(0), tokens)["params"])


def test_every_size_has_the_papers_parameter_count_within_two_percent():
    for size, (nominal, layers, width, heads, _, _) in gpt3.TABLE_2_1.items():
        config = load_config(config_path(f"gpt3.py:{size}"))
        families.check_config(config)
        assert (config.model.num_layers, config.model.embed_dim, config.model.num_heads) == (layers, width, heads)
        assert abstract_param_count(config) == pytest.approx(nominal, rel=0.02), size


def test_the_papers_schedule_in_steps():
    config = load_config(config_path("gpt3.py:small"))
    tokens_per_step = config.train.batch_size * config.model.context_length
    assert tokens_per_step == 2 ** 19  # "0.5M" tokens
    assert config.optimizer.warmup_steps == round(375e6 / tokens_per_step)  # 375M tokens of warm-up
    assert config.optimizer.decay_steps == round(260e9 / tokens_per_step)  # cosine over 260B tokens
    assert config.train.num_steps == round(300e9 / tokens_per_step)  # 300B tokens in all
    assert config.optimizer.min_learning_rate == pytest.approx(0.1 * config.optimizer.learning_rate)
    assert (config.optimizer.beta1, config.optimizer.beta2, config.optimizer.weight_decay,
            config.optimizer.grad_clip) == (0.9, 0.95, 0.1, 1.0)
    assert load_config(config_path("gpt3.py:175b")).train.batch_size * 2048 == 1536 * 2048


def test_cpu_variant_shrinks_the_shape_and_a_size_is_required():
    small, cpu = load_config(config_path("gpt3.py:small")), load_config(config_path("gpt3.py:small,cpu"))
    assert cpu.model.embed_dim == small.model.embed_dim // 8 and cpu.model.context_length == 256
    families.check_config(cpu)
    with pytest.raises(ValueError, match="one size of small, medium"):
        load_config(config_path("gpt3.py"))
    with pytest.raises(ValueError, match="one size of"):
        load_config(config_path("gpt3.py:small,xl"))
