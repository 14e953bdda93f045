import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aigc_jax.nn import losses
from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.nn.params import count_params

VOCAB = 23
VARIANTS = {
    "gpt": {},
    "palm": dict(positions="rope", mlp="swiglu", num_kv_heads=1, parallel_block=True, use_bias=False,
                 norm="rmsnorm"),
    "gqa_untied_remat": dict(num_heads=4, num_kv_heads=2, tie_embeddings=False, remat=True),
}


def tiny_model(**overrides):
    fields = dict(num_layers=2, num_heads=2, embed_dim=32, context_length=16)
    fields.update(overrides)
    return TransformerLM(vocab_size=VOCAB, **fields)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_are_causal(variant):
    model = tiny_model(**VARIANTS[variant])
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, VOCAB)
    params = model.init(jax.random.key(0), tokens)
    logits = model.apply(params, tokens)
    for t in (0, 7, 14):
        changed = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 5) % VOCAB)
        other = model.apply(params, changed)
        np.testing.assert_array_equal(other[:, :t + 1], logits[:, :t + 1])
        assert not np.allclose(other[:, t + 1:], logits[:, t + 1:])


def test_gpt2_parameter_count_in_closed_form():
    c, layers, context = 32, 2, 16
    model = tiny_model()
    params = model.init(jax.random.key(0), jnp.zeros((1, context), jnp.int32))
    per_block = (4 * c * c + 4 * c) + (8 * c * c + 5 * c) + 4 * c  # attention, MLP, two LayerNorms
    expected = VOCAB * c + context * c + layers * per_block + 2 * c
    assert count_params(params) == expected


def test_gpt2_initialisation_scales_residual_projections():
    model = TransformerLM(vocab_size=64, num_layers=8, num_heads=4, embed_dim=256, context_length=8)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    std_out = float(jnp.std(params["block_3"]["attn"]["out"]["kernel"]))
    std_qkv = float(jnp.std(params["block_3"]["attn"]["qkv"]["kernel"]))
    assert std_qkv == pytest.approx(0.02, rel=0.05)
    assert std_out == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_loss_at_initialisation_is_about_log_vocab():
    model = TransformerLM(vocab_size=65, num_layers=2, num_heads=2, embed_dim=64, context_length=32)
    tokens = jax.random.randint(jax.random.key(3), (8, 33), 0, 65)
    params = model.init(jax.random.key(0), tokens[:, :-1])
    loss = losses.cross_entropy(model.apply(params, tokens[:, :-1]), tokens[:, 1:])
    assert float(loss) == pytest.approx(math.log(65), abs=0.05)


def test_tiny_model_overfits_one_batch():
    model = tiny_model()
    tokens = jax.random.randint(jax.random.key(7), (4, 17), 0, VOCAB)
    params = model.init(jax.random.key(0), tokens[:, :-1])
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: losses.cross_entropy(model.apply(p, tokens[:, :-1]), tokens[:, 1:]))(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    first = None
    for _ in range(300):
        params, opt_state, loss = step(params, opt_state)
        first = loss if first is None else first
    assert float(first) > 2.5
    assert float(loss) < 0.05


def test_sequence_longer_than_context_is_an_error():
    model = tiny_model()
    params = model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))
    with pytest.raises(ValueError, match="longer than the context 16"):
        model.apply(params, jnp.zeros((1, 17), jnp.int32))


def test_dropout_is_active_only_in_training():
    model = tiny_model(dropout=0.5)
    tokens = jnp.ones((1, 8), jnp.int32)
    params = model.init(jax.random.key(0), tokens)
    eval_a = model.apply(params, tokens)
    eval_b = model.apply(params, tokens)
    train_a = model.apply(params, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(eval_a, eval_b)
    assert not np.allclose(train_a, eval_a)
