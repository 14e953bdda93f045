"""The NLL baselines WaveNet is measured against, on the same mu-law classes of the same audio.

marginal   the training audio's histogram of the 256 mu-law classes (add-one smoothed): what a
           model knowing nothing of time gets;
linear     an order-k linear predictor (least squares on the training waveforms, in the linear
           domain): x_t ~ N(sum_i a_i x_{t-i} + b, sigma^2), sigma the training residuals' standard
           deviation, read out as the probability of each mu-law class's interval of x (the edge
           classes take the tails), mixed 99:1 with the marginal so no class has probability 0.
Both give bits per sample, comparable with WaveNet's categorical NLL.
"""
from __future__ import annotations

import math

import numpy as np

from aigc_jax.audio import mulaw

FLOOR_WEIGHT = 0.01


def class_edges(mu: int = mulaw.MU) -> np.ndarray:
    """[mu + 2] boundaries in the linear domain: class q covers [edges[q], edges[q + 1])."""
    centres_y = 2.0 * np.arange(mu + 1) / mu - 1.0
    inner = np.asarray(mulaw.expand((centres_y[:-1] + centres_y[1:]) / 2.0, mu), np.float64)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def marginal(train_classes: np.ndarray, mu: int = mulaw.MU) -> np.ndarray:
    counts = np.bincount(np.asarray(train_classes).ravel(), minlength=mu + 1).astype(np.float64) + 1.0
    return counts / counts.sum()


def marginal_bits(train_classes: np.ndarray, test_classes: np.ndarray) -> float:
    p = marginal(train_classes)
    return float(-np.mean(np.log2(p[np.asarray(test_classes).ravel()])))


def lagged(waveforms: list, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(X [N, order + 1] of the previous `order` samples and a 1, y [N]) over every waveform (zeros before
    each start)."""
    xs, ys = [], []
    for w in waveforms:
        w = np.asarray(w, np.float64)
        padded = np.concatenate([np.zeros(order), w])
        cols = [padded[order - i:order - i + len(w)] for i in range(1, order + 1)]
        xs.append(np.stack(cols + [np.ones(len(w))], axis=1))
        ys.append(w)
    return np.concatenate(xs), np.concatenate(ys)


def fit_linear_predictor(waveforms: list, order: int) -> tuple[np.ndarray, float]:
    """Least squares through the normal equations, accumulated one waveform at a time (a corpus's
    lagged matrix would not fit in memory): (coefficients [order + 1], residual standard deviation)."""
    gram, moment, count, y_sq = np.zeros((order + 1, order + 1)), np.zeros(order + 1), 0, 0.0
    for w in waveforms:
        x, y = lagged([w], order)
        gram += x.T @ x
        moment += x.T @ y
        count += len(y)
        y_sq += float(y @ y)
    coef = np.linalg.solve(gram + 1e-9 * np.eye(order + 1), moment)
    residual_sq = y_sq - 2.0 * coef @ moment + coef @ gram @ coef  # sum of (y - x coef)^2
    return coef, float(np.sqrt(max(residual_sq, 0.0) / count))


def linear_predictor_bits(train_waveforms: list, test_waveforms: list, order: int,
                          train_classes: np.ndarray) -> float:
    from scipy.special import ndtr
    coef, sigma = fit_linear_predictor(train_waveforms, order)
    edges, prior = class_edges(), marginal(train_classes)
    total, count = 0.0, 0
    for w in test_waveforms:
        x, y = lagged([w], order)
        mean = x @ coef
        classes = np.asarray(mulaw.encode(y.astype(np.float32)))
        lo, hi = edges[classes], edges[classes + 1]
        p_gauss = ndtr((hi - mean) / sigma) - ndtr((lo - mean) / sigma)
        total += float(-np.sum(np.log((1.0 - FLOOR_WEIGHT) * p_gauss + FLOOR_WEIGHT * prior[classes])))
        count += len(y)
    return total / count / math.log(2.0)
