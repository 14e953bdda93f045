"""One test per architecture switch of the LM (GPT -> PaLM), checked against the math."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.nn import layers
from aigc_jax.nn import losses
from aigc_jax.config import apply_overrides
from aigc_jax.nn.transformer import Block, TransformerLM
from aigc_jax.nn.params import count_params
from aigc_jax.families import build_task


def test_rope_scores_depend_only_on_relative_offset():
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, 16))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, 16))

    def score(m, n):
        qm = layers.rotary_embedding(q, jnp.array([[m]]))
        kn = layers.rotary_embedding(k, jnp.array([[n]]))
        return float(jnp.sum(qm * kn))

    for offset in (0, 3, 17):
        base = score(5 + offset, 5)
        for start in (0, 11, 200):
            assert score(start + offset, start) == pytest.approx(base, rel=1e-4, abs=1e-4)
    assert abs(score(9, 0) - score(2, 0)) > 1e-3  # and it does depend on the offset


def reference_multi_head(q, k, v, mask):
    """Textbook per-head attention: softmax(q k^T / sqrt(d)) v, one head at a time."""
    outs = []
    for h in range(q.shape[2]):
        scores = q[:, :, h] @ jnp.swapaxes(k[:, :, h], 1, 2) / math.sqrt(q.shape[-1])
        scores = jnp.where(mask, scores, -jnp.inf)
        outs.append(jax.nn.softmax(scores, axis=-1) @ v[:, :, h])
    return jnp.stack(outs, axis=2)


def test_grouped_query_attention_equals_multi_head_with_shared_kv():
    rng = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(rng[0], (2, 6, 4, 8))
    k = jax.random.normal(rng[1], (2, 6, 2, 8))
    v = jax.random.normal(rng[2], (2, 6, 2, 8))
    mask = layers.causal_mask(6)
    # As many kv heads as query heads: exactly multi-head attention.
    k_full, v_full = jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2)
    np.testing.assert_allclose(layers.grouped_attention(q, k_full, v_full, mask),
                               reference_multi_head(q, k_full, v_full, mask), atol=1e-5)
    # Two kv heads shared by groups of two query heads: multi-head with each kv head repeated.
    np.testing.assert_allclose(layers.grouped_attention(q, k, v, mask),
                               reference_multi_head(q, k_full, v_full, mask), atol=1e-5)
    # A different mask per example (padding, a KV cache), with groups of two.
    ragged = mask & (jnp.arange(6)[None, None, :] < jnp.array([6, 4])[:, None, None])
    np.testing.assert_allclose(layers.grouped_attention(q, k, v, ragged),
                               reference_multi_head(q, k_full, v_full, ragged), atol=1e-5)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_grouped_attention_softmax_runs_on_four_dims(kv_heads):
    """The softmax and its backward reductions see [B, K, G*T, S]: with a size-1 group axis
    (multi-head) XLA:CPU's fused reductions ran ~8x slower (performance.md)."""
    q = jnp.zeros((2, 6, 4, 8))
    kv = jnp.zeros((2, 6, kv_heads, 8))
    loss = lambda q, k, v: layers.grouped_attention(q, k, v, layers.causal_mask(6)).sum()
    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, kv, kv)
    reductions = [e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("reduce_max", "reduce_sum")
                  and e.invars[0].aval.ndim >= 4]
    assert reductions, "expected the softmax's reductions over keys"
    assert all(e.invars[0].aval.ndim == 4 for e in reductions)


def test_multi_query_has_fewer_parameters():
    def params(kv):
        model = TransformerLM(vocab_size=11, num_layers=2, num_heads=4, num_kv_heads=kv, embed_dim=32,
                              context_length=8)
        return count_params(model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
    head_dim = 8
    per_layer_kv = 2 * 32 * head_dim + 2 * head_dim  # one kv head's kernel + bias, for k and v
    assert params(4) - params(1) == 2 * 3 * per_layer_kv
    assert params(1) < params(2) < params(4)


def test_parallel_block_is_x_plus_attn_of_norm_plus_mlp_of_norm():
    block = Block(num_heads=2, num_kv_heads=2, head_dim=8, mlp="gelu", mlp_ratio=4.0, norm="layernorm",
                  parallel=True, use_bias=True, use_rope=False, dropout_rate=0.0, out_init_std=0.02,
                  attention_impl="einsum", dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    positions = jnp.broadcast_to(jnp.arange(5), (2, 5))
    params = block.init(jax.random.key(1), x, positions, layers.causal_mask(5))["params"]
    y, _ = block.apply({"params": params}, x, positions, layers.causal_mask(5))
    h = layers.make_norm("layernorm", True, jnp.float32).apply({"params": params["norm1"]}, x)
    attn = layers.Attention(num_heads=2, num_kv_heads=2, head_dim=8)
    a, _ = attn.apply({"params": params["attn"]}, h, positions=positions, mask=layers.causal_mask(5))
    m = layers.MLP().apply({"params": params["mlp"]}, h)
    np.testing.assert_allclose(y, x + a + m, atol=1e-5)
    assert "norm2" not in params  # one shared norm


def test_z_loss_on_a_hand_checked_input():
    logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0, 0.0]])
    # log Z: ln 4 for the first row, ln 5 for the second.
    expected = (math.log(4.0) ** 2 + math.log(5.0) ** 2) / 2
    assert float(losses.z_loss(logits)) == pytest.approx(expected, rel=1e-6)
    assert 1e-4 * float(losses.z_loss(logits)) == pytest.approx(1e-4 * expected, rel=1e-6)


def test_z_loss_enters_the_training_objective(tiny_lm_config):
    config = apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["loss.z_loss=0.5"])
    task = build_task(config, "")
    state = task.init(jax.random.key(0))
    _, metrics = jax.jit(task.train_step)(state, task.train_batch(0), jax.random.key(1))
    assert float(metrics["z_loss"]) > 1.0  # log Z is about ln V at init, so (log Z)^2 > 1


def test_bfloat16_compute_keeps_float32_master_parameters(tiny_lm_config):
    config = apply_overrides(tiny_lm_config.copy_and_resolve_references(), ["model.dtype=bfloat16"])
    task = build_task(config, "")
    state = task.init(jax.random.key(0))
    new_state, metrics = jax.jit(task.train_step)(state, task.train_batch(0), jax.random.key(1))
    for tree in (new_state.params, new_state.opt_state):
        assert {x.dtype for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)} == {
            jnp.dtype("float32")}
    model = TransformerLM(vocab_size=11, num_layers=1, num_heads=2, embed_dim=16, context_length=8, dtype="bfloat16")
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = model.init(jax.random.key(0), tokens)
    hidden = model.apply(params, tokens, capture_intermediates=True, mutable=["intermediates"])[1]
    block_out = hidden["intermediates"]["block_0"]["__call__"][0][0]
    assert block_out.dtype == jnp.bfloat16  # the compute really is bfloat16
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor", "muon"])
def test_each_optimizer_reduces_the_loss_on_a_fixed_batch(tiny_lm_config, name):
    lr = {"adamw": 3e-3, "lion": 1e-3, "adafactor": 1e-1, "muon": 2e-2}[name]
    config = apply_overrides(tiny_lm_config.copy_and_resolve_references(), [
        f"optimizer.name={name}", f"optimizer.learning_rate={lr}", f"optimizer.min_learning_rate={lr}",
        "optimizer.warmup_steps=0", "optimizer.schedule=constant"])
    task = build_task(config, "")
    state = task.init(jax.random.key(0))
    step = jax.jit(task.train_step)
    batch = task.train_batch(0)
    losses_seen = []
    for _ in range(15):
        state, metrics = step(state, batch, jax.random.key(1))
        losses_seen.append(float(metrics["loss"]))
    assert losses_seen[-1] < losses_seen[0] - 0.3, losses_seen


def test_swiglu_keeps_the_parameter_count_comparable():
    def params(mlp):
        model = TransformerLM(vocab_size=65, num_layers=4, num_heads=4, embed_dim=128, context_length=64, mlp=mlp)
        return count_params(model.init(jax.random.key(0), jnp.zeros((1, 64), jnp.int32)))
    assert abs(params("swiglu") - params("gelu")) / params("gelu") < 0.02
    assert layers.swiglu_hidden_width(128, 4.0) == 344  # 2/3 * 512 = 341.3, rounded up to a multiple of 8


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor", "muon"])
def test_weight_decay_is_decoupled_scaled_by_the_learning_rate_and_spares_vectors(name):
    """With zero gradients the only update is AdamW's decoupled decay: -lr * wd * p on matrices,
    nothing on biases. (optax's own adafactor decay ignores the learning rate: -wd * p.)"""
    import ml_collections
    from aigc_jax.train.optimizers import make_optimizer
    opt = ml_collections.ConfigDict(dict(name=name, learning_rate=0.01, min_learning_rate=0.01, schedule="constant",
                                         warmup_steps=0, decay_steps=0, beta1=0.9, beta2=0.99, eps=1e-8,
                                         weight_decay=0.1, grad_clip=0.0))
    tx, _ = make_optimizer(opt, 10)
    params = {"kernel": jnp.full((4, 4), 2.0), "bias": jnp.full((4,), 2.0)}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = tx.init(params)
    for _ in range(2):  # past the warm-up step of the schedule
        updates, state = tx.update(zeros, state, params)
    np.testing.assert_allclose(updates["kernel"], -0.01 * 0.1 * 2.0, rtol=1e-5)
    np.testing.assert_allclose(updates["bias"], 0.0, atol=1e-12)


@pytest.mark.parametrize("muon_embeddings", [False, True])
def test_muon_orthogonalizes_hidden_matrices_and_gives_embeddings_to_adamw(muon_embeddings):
    """Muon's update of a hidden matrix is its (Nesterov) momentum orthogonalised: singular values
    all near one scale, whatever the gradient's. The embedding table goes to AdamW at
    adam_learning_rate (exactly optax's Nesterov AdamW update), or to Muon with muon_embeddings."""
    import ml_collections
    import optax
    from aigc_jax.train.optimizers import make_optimizer
    opt = ml_collections.ConfigDict(dict(name="muon", learning_rate=0.02, min_learning_rate=0.02, schedule="constant",
                                         warmup_steps=0, decay_steps=0, beta1=0.9, beta2=0.99, eps=1e-8,
                                         weight_decay=0.0, grad_clip=0.0, adam_learning_rate=3e-3,
                                         muon_embeddings=muon_embeddings))
    tx, _ = make_optimizer(opt, 10)
    keys = jax.random.split(jax.random.key(0), 4)
    params = {"token_embed": {"embedding": jax.random.normal(keys[0], (12, 8))},
              "block_0": {"mlp": {"kernel": jax.random.normal(keys[1], (8, 16))}, "norm": {"scale": jnp.ones(8)}}}
    scales = jnp.array([3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.15, 0.1])  # ill-conditioned gradients
    grads = {"token_embed": {"embedding": jax.random.normal(keys[2], (12, 8)) * scales},
             "block_0": {"mlp": {"kernel": jax.random.normal(keys[3], (8, 16)) * scales[:, None]},
                         "norm": {"scale": jnp.full(8, 0.5)}}}
    updates, _ = tx.update(grads, tx.init(params), params)

    def spread(matrix):
        s = np.linalg.svd(np.asarray(matrix), compute_uv=False)
        return s.max() / s.min()
    assert spread(grads["block_0"]["mlp"]["kernel"]) > 20
    assert spread(updates["block_0"]["mlp"]["kernel"]) < 2.0
    adam = optax.adamw(3e-3, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, nesterov=True)
    adam_updates, _ = adam.update(grads, adam.init(params), params)
    np.testing.assert_allclose(updates["block_0"]["norm"]["scale"], adam_updates["block_0"]["norm"]["scale"], rtol=1e-5)
    if muon_embeddings:
        assert spread(updates["token_embed"]["embedding"]) < 2.0
    else:
        np.testing.assert_allclose(updates["token_embed"]["embedding"], adam_updates["token_embed"]["embedding"],
                                   rtol=1e-5)
