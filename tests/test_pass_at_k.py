"""pass@k (Codex) against exact combinatorics, and AlphaCode's n@k."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from aigc_jax.metrics.pass_at_k import mean_pass_at_k, n_at_k, pass_at_k


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def test_matches_exact_combinatorics_over_a_grid():
    rows = [(n, c, k) for n in range(1, 13) for c in range(n + 1) for k in range(1, n + 1)]
    n, c, k_values = (np.array(column) for column in zip(*rows))
    for k in range(1, 13):  # one vectorised call per k, over every (n, c) that allows it
        chosen = k_values == k
        got = pass_at_k(n[chosen], c[chosen], k)
        want = [float(exact_pass_at_k(a, b, k)) for a, b in zip(n[chosen], c[chosen])]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


def test_edge_cases():
    assert pass_at_k(10, 0, 1)[0] == 0.0  # nothing correct
    assert pass_at_k(10, 10, 3)[0] == 1.0  # everything correct
    assert pass_at_k(10, 1, 10)[0] == 1.0  # k = n: the one correct sample is always drawn
    assert pass_at_k(10, 4, 7)[0] == 1.0  # k > n - c: every 7-subset holds a correct sample
    assert pass_at_k(10, 3, 7)[0] == pytest.approx(1 - 1 / math.comb(10, 7), rel=1e-14)  # k = n - c
    assert pass_at_k(10, 3, 1)[0] == pytest.approx(0.3, rel=1e-14)  # pass@1 is c/n
    np.testing.assert_allclose(pass_at_k(7, np.arange(8), 1), np.arange(8) / 7, rtol=1e-14)


def test_is_the_mean_over_all_k_subsets_of_any_correct():
    """pass@k is the fraction of k-subsets of the n samples holding a correct one (k@k)."""
    samples = [True, False, False, True, False, False, False]
    for k in range(1, len(samples) + 1):
        subsets = list(itertools.combinations(samples, k))
        want = sum(any(subset) for subset in subsets) / len(subsets)
        assert pass_at_k(len(samples), sum(samples), k)[0] == pytest.approx(want, rel=1e-13)


def test_large_n_where_the_naive_formula_overflows():
    n, c, k = 10000, 37, 200
    with pytest.raises(OverflowError):
        float(math.comb(n, k))  # the textbook form in floats is out of range
    want = float(exact_pass_at_k(n, c, k))
    assert pass_at_k(n, c, k)[0] == pytest.approx(want, rel=1e-12)
    # A tiny pass@k keeps its relative precision (1 - prod would lose it to cancellation).
    assert pass_at_k(4000, 1, 1)[0] == pytest.approx(1 / 4000, rel=1e-13)
    many_n = np.array([1000, 2500, 4000, 200])
    many_c = np.array([3, 0, 4000, 150])
    for k in (1, 10, 100):
        want = [float(exact_pass_at_k(a, b, k)) for a, b in zip(many_n, many_c)]
        np.testing.assert_allclose(pass_at_k(many_n, many_c, k), want, rtol=1e-12)


def test_mean_averages_over_problems():
    n = np.array([20, 20, 20])
    c = np.array([0, 5, 20])
    want = (0 + float(exact_pass_at_k(20, 5, 10)) + 1) / 3
    assert mean_pass_at_k(n, c, 10) == pytest.approx(want, rel=1e-14)
    assert mean_pass_at_k(20, c, 1) == pytest.approx((0 + 0.25 + 1) / 3, rel=1e-14)  # shared n


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_n_at_k_counts_a_problem_solved_by_any_of_its_first_n_submissions():
    submissions = [
        [False, False, True],  # solved at the third submission
        [True],  # solved at the first
        [False, False, False],  # never solved
        [],  # nothing survived filtering: unsolved
    ]
    assert n_at_k(submissions, 1) == pytest.approx(1 / 4)
    assert n_at_k(submissions, 2) == pytest.approx(1 / 4)
    assert n_at_k(submissions, 3) == pytest.approx(2 / 4)
    assert n_at_k(submissions, 10) == pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        n_at_k(submissions, 0)


def test_k_at_k_with_every_sample_submitted_averages_to_pass_at_k():
    """Submitting all k of k samples drawn from n: the mean over draws of k@k is pass@k."""
    samples = [False, True, False, False, True, False]
    k = 3
    draws = [list(subset) for subset in itertools.combinations(samples, k)]
    assert n_at_k(draws, k) == pytest.approx(pass_at_k(len(samples), sum(samples), k)[0], rel=1e-13)
