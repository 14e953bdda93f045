"""Items 2 and 3 of the math reproductions: an LM trained on a Markov source meets the source's
exact entropies, and its perplexity / bits are exp(nats) / nats over ln 2 of its own outputs."""
import math

import numpy as np
import pytest

from aigc_jax.config import load_config
from aigc_jax.reproductions import markov_entropy, perplexity
from tests.conftest import config_path


def failed(report):
    return [(c.item, c.measured, c.expected, c.tolerance) for c in report.checks if not c.passed]


def test_geometric_mean_perplexity_by_hand_and_without_underflow():
    assert perplexity.geometric_mean_perplexity(np.array([0.5, 0.125])) == pytest.approx(4.0, rel=1e-12)
    assert perplexity.geometric_mean_perplexity(np.full(3, 1 / 3)) == pytest.approx(3.0, rel=1e-12)
    # 10,000 probabilities of 1e-300: the product underflows any float, the perplexity is 1e300
    assert perplexity.geometric_mean_perplexity(np.full(10_000, 1e-300)) == pytest.approx(1e300, rel=1e-9)
    probs = np.random.default_rng(0).uniform(0.01, 1.0, 5000)
    assert perplexity.geometric_mean_perplexity(probs) == pytest.approx(math.exp(-np.log(probs).mean()), rel=1e-10)


def test_quick_markov_lm_meets_the_entropies_and_its_perplexity_is_exp_loss(tmp_path):
    quiet = ["train.progress_bar=false"]
    full = load_config(config_path("markov_lm.py:quick"), quiet)
    short = load_config(config_path("markov_lm.py:quick,short"), quiet)
    report, run = markov_entropy.reproduce(str(tmp_path), full, short, str(tmp_path / "runs"))
    assert not failed(report)
    assert len(report.checks) == 8
    source = run["source"]
    assert source.order == 2 and short.model.context_length == 1
    # the curve is logged by the loop and starts far above the limit
    assert run["eval_steps"][0] == 0 and run["eval_loss"][0] > 1.1 * run["window_limit"]
    items3 = perplexity.reproduce(str(tmp_path), run)
    assert not failed(items3)
    for name in report.figures + items3.figures:
        assert (tmp_path / name).stat().st_size > 1000


def test_short_context_must_be_shorter_than_the_order(tmp_path):
    quiet = ["train.progress_bar=false"]
    full = load_config(config_path("markov_lm.py:tiny"), quiet)
    with pytest.raises(ValueError, match="not shorter than the order"):
        markov_entropy.reproduce(str(tmp_path), full, full, str(tmp_path / "runs"))
    other = load_config(config_path("markov_lm.py:tiny,short"), quiet + ["data.markov_seed=1"])
    with pytest.raises(ValueError, match="differ in data.markov_seed"):
        markov_entropy.reproduce(str(tmp_path), full, other, str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()  # refused before anything trained


@pytest.mark.slow
def test_full_markov_reproduction(tmp_path):
    from experiments.reproduce_math import markov_configs
    full, short = markov_configs()
    report, run = markov_entropy.reproduce(str(tmp_path), full, short, str(tmp_path / "runs"))
    assert not failed(report)
    assert not failed(perplexity.reproduce(str(tmp_path), run))
