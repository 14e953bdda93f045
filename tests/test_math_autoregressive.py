"""Item 1 of the math reproductions: P(x_1..x_n | x_0) = prod_t P(x_t | x_<t) for a tiny LM."""
import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.reproductions import autoregressive


def test_all_sequences_enumerates_the_vocabulary_power():
    sequences = autoregressive.all_sequences(3, 5)
    assert sequences.shape == (243, 5)
    assert len({tuple(s) for s in sequences}) == 243 and sequences.min() == 0 and sequences.max() == 2


def test_one_pass_log_probability_equals_the_product_of_prefix_conditionals():
    """Each conditional recomputed from a forward pass over its prefix alone: causality and the
    chain rule together give the one-pass sum."""
    model, params = autoregressive.random_lm(seed=1, context_length=8)
    tokens = np.random.default_rng(0).integers(0, 3, size=(6, 7)).astype(np.int32)
    one_pass = np.asarray(autoregressive.sequence_log_probs(model, params, tokens))
    by_prefix = np.zeros(len(tokens))
    apply = jax.jit(lambda x: model.apply({"params": params}, x))
    for t in range(1, tokens.shape[1]):
        logits = apply(jnp.asarray(tokens[:, :t]))[:, -1]
        log_p = jax.nn.log_softmax(logits)
        by_prefix += np.asarray(log_p)[np.arange(len(tokens)), tokens[:, t]]
    np.testing.assert_allclose(one_pass, by_prefix, atol=1e-5)
    # the redrawn weights make the conditionals far from uniform (else the sums are trivially 1)
    assert np.std(one_pass) > 1.0


def test_item_1_passes_and_its_control_fails(tmp_path):
    report = autoregressive.reproduce(str(tmp_path), decode_length=12, num_decoded=6)
    assert [c.passed for c in report.checks] == [True] * len(report.checks)
    sums = [c.measured for c in report.checks if c.item.startswith("1a: sum")]
    assert len(sums) == 3 and all(abs(s - 1) < 1e-5 for s in sums)
    control = [c for c in report.checks if "control" in c.item][0]
    assert abs(control.measured - 1) > 1e-2  # without the causal mask it is no distribution
    assert (tmp_path / "autoregressive.png").stat().st_size > 1000
