"""Item 4 of the math reproductions: Var(q . k) = d and the softmax entropy with/without 1/sqrt(d)."""
import math

import jax
import jax.numpy as jnp
import pytest

from aigc_jax.reproductions import attention_scaling


def test_softmax_entropy_limits():
    assert float(attention_scaling.softmax_entropy(jnp.zeros(64))) == pytest.approx(math.log(64), abs=1e-5)
    assert float(attention_scaling.softmax_entropy(jnp.array([50.0, 0.0, 0.0]))) < 1e-18 + 1e-6
    two = float(attention_scaling.softmax_entropy(jnp.array([0.0, 0.0, -1e9])))
    assert two == pytest.approx(math.log(2), abs=1e-6)


def test_dot_product_variance_is_d():
    var = attention_scaling.dot_product_variance(jax.random.key(0), 8, 40_000)
    rel_se = math.sqrt((2 + 6 / 8) / 40_000)
    assert abs(var / 8 - 1) < 4 * rel_se


def test_item_4_quick(tmp_path):
    report = attention_scaling.reproduce(str(tmp_path), dims=(16, 128, 1024), num_samples=20_000,
                                         num_queries=512, theory_samples=20_000)
    assert [c.passed for c in report.checks] == [True] * len(report.checks), report.checks
    assert len(report.checks) == 3 + 4
    assert (tmp_path / "attention_scaling.png").stat().st_size > 1000
