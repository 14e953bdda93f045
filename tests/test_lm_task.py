"""The LM family's pure functions: batches, gradient accumulation, evaluation sums."""
import math

import jax
import numpy as np
import pytest

from aigc_jax.config import apply_overrides
from aigc_jax.families import build_task
from aigc_jax.families.lm.task import summarize_eval
from aigc_jax.train.eval_batches import padded_batches


@pytest.mark.parametrize("unroll", [False, True])
def test_gradient_accumulation_equals_one_large_batch(tiny_lm_config, unroll):
    def one_step(accum):
        config = apply_overrides(tiny_lm_config.copy_and_resolve_references(),
                                 ["train.batch_size=8", f"train.grad_accum_steps={accum}",
                                  f"train.unroll_micro_batches={unroll}"])
        task = build_task(config, "")
        batch = task.train_batch(3)
        step = jax.jit(task.train_step)
        hlo = step.lower(task.init(jax.random.key(0)), batch, jax.random.key(1)).as_text()
        # a loop over the micro-batches, or none: the unrolled parts are independent in the program
        assert ("stablehlo.while" in hlo) == (not unroll)
        state, metrics = step(task.init(jax.random.key(0)), batch, jax.random.key(1))
        return batch, state, metrics
    batch1, state1, m1 = one_step(1)
    batch4, state4, m4 = one_step(4)
    assert batch1.shape == (1, 8, 17) and batch4.shape == (4, 2, 17)
    np.testing.assert_array_equal(batch1.reshape(8, 17), batch4.reshape(8, 17))  # the same windows
    assert float(m1["loss"]) == pytest.approx(float(m4["loss"]), abs=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(state1.params), jax.tree_util.tree_leaves(state4.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_batch_not_divisible_by_accumulation_is_named(tiny_lm_config):
    config = apply_overrides(tiny_lm_config, ["train.batch_size=6", "train.grad_accum_steps=4"])
    with pytest.raises(ValueError, match="config field train.batch_size=6 is not divisible by train.grad_accum_steps=4"):
        build_task(config, "")


def test_padded_eval_rows_carry_no_weight(tiny_lm_config):
    windows = np.arange(5 * 4).reshape(5, 4)
    batches = padded_batches({"tokens": windows}, 2)
    assert [b["tokens"].shape for b in batches] == [(2, 4)] * 3
    np.testing.assert_array_equal(batches[-1]["weight"], [1.0, 0.0])
    task = build_task(tiny_lm_config, "")
    state = task.init(jax.random.key(0))
    full = task.eval_step(state, {"tokens": windows[:1], "weight": np.ones(1, np.float32)})
    padded = task.eval_step(state, batches[-1])
    assert float(padded["tokens"]) == 4 - 1
    assert float(padded["nats"]) == pytest.approx(float(
        task.eval_step(state, {"tokens": windows[4:5], "weight": np.ones(1, np.float32)})["nats"]), rel=1e-6)
    assert float(full["tokens"]) == 3


def test_eval_summary_units():
    result = summarize_eval({"nats": 30.0, "tokens": 10.0})
    assert result["loss"] == 3.0
    assert result["bits_per_token"] == pytest.approx(3.0 / math.log(2))
    assert result["perplexity"] == pytest.approx(math.exp(3.0))
