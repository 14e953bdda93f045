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


def test_the_vocabulary_is_padded_to_a_multiple_of_128_without_changing_the_model():
    """GPT-2's 50,257 entries -> a 50,304-row table; the padding rows are never used: the logits
    equal an unpadded model's with the same real rows, and they get no gradient."""
    config = load_config(config_path("gpt3.py:small"))
    small = TransformerLM.from_config(config.model, config.data.vocab_size)
    shapes = jax.eval_shape(small.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 2048), jnp.int32))
    assert shapes["params"]["token_embed"]["embedding"].shape == (50304, 768)
    padded = TransformerLM(vocab_size=300, num_layers=1, num_heads=2, embed_dim=16, context_length=8, vocab_multiple=128)
    plain = padded.clone(vocab_multiple=1)
    tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, 300)
    params = padded.init(jax.random.key(0), tokens)["params"]
    assert params["token_embed"]["embedding"].shape == (384, 16)
    real_rows = {**params, "token_embed": {"embedding": params["token_embed"]["embedding"][:300]}}
    logits = padded.apply({"params": params}, tokens)
    assert logits.shape == (2, 8, 300)
    assert jnp.allclose(logits, plain.apply({"params": real_rows}, tokens), atol=1e-6)
    grads = jax.grad(lambda p: padded.apply({"params": p}, tokens).sum())(params)
    assert not jnp.any(grads["token_embed"]["embedding"][300:])
