"""Functional-correctness metrics for code models: Codex's unbiased pass@k and AlphaCode's n@k.

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", section 2.1):
draw n >= k samples for a problem, count the c that pass its unit tests; the probability that
at least one of k samples drawn without replacement from those n is correct is

    pass@k = 1 - C(n - c, k) / C(n, k),

an unbiased estimate of the chance that k fresh samples contain a correct one. Binomial
coefficients of n in the thousands overflow floats, so the ratio is computed as the product

    C(n - c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i),

which is 0 (pass@k = 1) when n - c < k: every k-subset then holds a correct sample. Here the
product is summed in logarithms (log1p) and 1 - exp(.) taken with expm1, so a pass@k as small
as 1/n keeps its relative precision.

n@k (Li et al. 2022, "Competition-Level Code Generation with AlphaCode"): the
fraction of problems solved when at most n submissions, chosen from k samples (by filtering and
clustering), are judged on the hidden tests; a problem counts as solved when any submission
passes. pass@k is k@k with every sample submitted.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(num_samples, num_correct, k: int) -> np.ndarray:
    """Unbiased pass@k per problem: 1 - prod_{i=n-c+1}^{n} (1 - k/i), or 1 when n - c < k.

    num_samples: n per problem, shape [P] (or a scalar shared by all problems);
    num_correct: c per problem, shape [P], 0 <= c <= n; k: 1 <= k <= n.
    Returns float64 [P].
    """
    n, c = np.broadcast_arrays(np.asarray(num_samples, np.int64), np.asarray(num_correct, np.int64))
    n, c = np.atleast_1d(n), np.atleast_1d(c)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("need 0 <= num_correct <= num_samples for every problem")
    if np.any(n < k):
        raise ValueError(f"pass@{k} needs at least k={k} samples per problem; got n={n.min()}")
    always = n - c < k  # every k-subset holds a correct sample
    # Row p holds i = n_p, n_p - 1, ..., n_p - c_p + 1 (the c_p factors), padded to the largest c.
    offsets = np.arange(int(c.max(initial=0)))
    factor_index = n[:, None] - offsets[None, :]
    in_product = (offsets[None, :] < c[:, None]) & ~always[:, None]
    ratio = np.where(in_product, k / np.where(in_product, factor_index, 1), 0.0)  # k/i < 1 here
    log_fail = np.log1p(-ratio).sum(axis=1)  # log C(n-c, k)/C(n, k)
    return np.where(always, 1.0, -np.expm1(log_fail))


def mean_pass_at_k(num_samples, num_correct, k: int) -> float:
    """pass@k averaged over problems, the number Codex reports for a benchmark."""
    return float(np.mean(pass_at_k(num_samples, num_correct, k)))


def n_at_k(submission_passes: Sequence[Sequence[bool]], n: int) -> float:
    """AlphaCode's n@k: the fraction of problems with a passing program among its first n submissions.

    submission_passes[p] lists, in submission order, whether each program chosen for problem p
    (from its k samples) passes the hidden tests; a problem with no submission counts unsolved.
    Only the first n are submitted.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not submission_passes:
        raise ValueError("n@k needs at least one problem")
    return float(np.mean([any(bool(p) for p in passes[:n]) for passes in submission_passes]))
