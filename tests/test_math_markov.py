"""The Markov source of the math reproductions: exact stationary distribution and entropies
(against brute-force enumeration and the two-state closed form), exact log-probabilities,
deterministic streams, and the LM family training on it."""
import itertools
import math

import jax
import numpy as np
import pytest

from aigc_jax.config import load_config
from aigc_jax.data import markov
from aigc_jax.families import build_task
from tests.conftest import config_path


def brute_force_joint(source: markov.MarkovSource, length: int) -> dict:
    """P(x_1..x_n) of every sequence of a stationary chain, by the chain rule from scratch:
    P(first k symbols) = pi(context) and then the transition rows (length >= k)."""
    V, k = source.alphabet_size, source.order
    joint = {}
    for seq in itertools.product(range(V), repeat=length):
        context = 0
        for symbol in seq[:k]:
            context = context * V + symbol
        p = source.stationary[context]
        for symbol in seq[k:]:
            p *= source.transitions[context, symbol]
            context = (context * V + symbol) % V ** k
        joint[seq] = p
    return joint


def block_entropy(joint: dict, length: int) -> float:
    """H(X_1..X_length) from the joint of longer sequences (marginalising the tail)."""
    marginal = {}
    for seq, p in joint.items():
        marginal[seq[:length]] = marginal.get(seq[:length], 0.0) + p
    return -sum(p * math.log(p) for p in marginal.values() if p > 0)


@pytest.mark.parametrize("alphabet,order", [(2, 2), (3, 2), (2, 3)])
def test_conditional_entropies_match_brute_force_block_entropies(alphabet, order):
    source = markov.make_source(alphabet, order, seed=3, concentration=0.7)
    joint = brute_force_joint(source, order + 1)
    assert sum(joint.values()) == pytest.approx(1.0, abs=1e-12)
    previous = math.inf
    for c in range(order + 1):
        # H(X_t | previous c) = H(X_1..X_{c+1}) - H(X_1..X_c) for a stationary chain
        expected = block_entropy(joint, c + 1) - (block_entropy(joint, c) if c else 0.0)
        assert source.conditional_entropy(c) == pytest.approx(expected, abs=1e-10)
        assert source.conditional_entropy(c) <= previous + 1e-12  # more context never hurts
        previous = source.conditional_entropy(c)
    assert source.conditional_entropy(order) == pytest.approx(source.entropy_rate, abs=1e-12)


def test_stationary_distribution_is_invariant_and_stationary_windows_stay_stationary():
    source = markov.make_source(3, 2, seed=1, concentration=0.5)
    joint = brute_force_joint(source, 3)
    # the distribution of the last 2 symbols of (x_1, x_2, x_3) is again pi
    shifted = np.zeros(source.num_contexts)
    for (a, b, c), p in joint.items():
        shifted[b * 3 + c] += p
    np.testing.assert_allclose(shifted, source.stationary, atol=1e-12)


def test_two_state_chain_closed_form():
    source = markov.make_source(2, 1, seed=5, concentration=1.0)
    p, q = source.transitions[0, 1], source.transitions[1, 0]  # P(1 | 0), P(0 | 1)
    np.testing.assert_allclose(source.stationary, [q / (p + q), p / (p + q)], atol=1e-12)

    def h(x):
        return -x * math.log(x) - (1 - x) * math.log(1 - x)
    assert source.entropy_rate == pytest.approx(q / (p + q) * h(p) + p / (p + q) * h(q), abs=1e-12)
    assert source.conditional_entropy(0) == pytest.approx(h(p / (p + q)), abs=1e-12)


def test_log_probs_are_the_exact_conditionals_of_a_stationary_window():
    source = markov.make_source(2, 2, seed=2, concentration=0.6)
    length = 5
    joint = brute_force_joint(source, length)
    sequences = np.array(list(joint), np.int64)
    first = source.conditional_table(0)[0, sequences[:, 0]]  # P(x_1), the stationary marginal
    log_p = np.log(first) + source.log_probs(sequences).sum(axis=1)
    np.testing.assert_allclose(np.exp(log_p), [joint[tuple(s)] for s in sequences], rtol=1e-10)


def test_samples_follow_the_source():
    source = markov.make_source(3, 2, seed=0, concentration=0.5)
    tokens = markov.windows(source, seed=0, split="train", step=0, num_windows=4000, length=12)
    assert tokens.shape == (4000, 12) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < 3
    # the mean exact log-loss of sampled windows is the window limit (within 5 standard errors)
    nats = -source.log_probs(tokens)
    per_window = nats.mean(axis=1)
    limit = markov.window_entropy_limit(source, 11)
    assert abs(per_window.mean() - limit) < 5 * per_window.std() / math.sqrt(len(per_window))
    # pairs (x_t, x_{t+1}) at a late position have the stationary frequencies of contexts
    contexts = tokens[:, 10] * 3 + tokens[:, 11]
    counts = np.bincount(contexts, minlength=9) / len(contexts)
    se = np.sqrt(source.stationary * (1 - source.stationary) / len(contexts))
    assert np.all(np.abs(counts - source.stationary) < 5 * se + 1e-9)


def test_windows_are_a_pure_function_of_seed_split_step():
    source = markov.make_source(3, 3, seed=0, concentration=0.5)
    a = markov.windows(source, 0, "train", 7, 16, 9)
    np.testing.assert_array_equal(a, markov.windows(source, 0, "train", 7, 16, 9))
    assert not np.array_equal(a, markov.windows(source, 0, "train", 8, 16, 9))
    assert not np.array_equal(a, markov.windows(source, 0, "validation", 7, 16, 9))
    assert not np.array_equal(a, markov.windows(source, 1, "train", 7, 16, 9))
    short = markov.windows(source, 0, "train", 7, 16, 2)  # shorter than the order
    assert short.shape == (16, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="alphabet size 1"):
        markov.make_source(1, 2)
    with pytest.raises(ValueError, match="order 0"):
        markov.make_source(3, 0)
    with pytest.raises(ValueError, match="concentration"):
        markov.make_source(3, 2, concentration=0.0)
    with pytest.raises(ValueError, match="context length 4"):
        markov.make_source(3, 3).conditional_entropy(4)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        markov.windows(markov.make_source(2, 1), 0, "test", 0, 4, 4)


def test_lm_family_trains_on_the_markov_corpus(tmp_path):
    config = load_config(config_path("markov_lm.py:tiny"), ["train.progress_bar=false"])
    task = build_task(config, str(tmp_path))
    batch = task.train_batch(3)
    assert batch.shape == (1, 8, 9) and batch.max() < 3
    np.testing.assert_array_equal(batch, task.train_batch(3))
    source = markov.source_from_config(config.data)
    np.testing.assert_array_equal(batch[0], markov.windows(source, config.seed, "train", 3, 8, 9))
    assert "order-3 Markov source over 3 symbols" in task.description
    assert (tmp_path / "tokenizer.json").exists()  # a vocabulary-only tokenizer: the letters a, b, c
    state = jax.jit(task.init)(jax.random.key(0))
    state, metrics = jax.jit(task.train_step)(state, batch, jax.random.key(1))
    assert math.isfinite(float(metrics["loss"]))


def test_markov_corpus_without_its_fields_is_named():
    config = load_config(config_path("gpt_char.py:tiny"), ["data.corpus=markov", "train.progress_bar=false"])
    with pytest.raises(ValueError, match="data.markov_alphabet"):
        build_task(config, "")
