"""The Frechet distance between Gaussians fitted to two sets of features (the FID formula,
Heusel et al. 2017):  ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).

Which features is the caller's choice: our small classifiers' (aigc_jax/metrics/classifier.py),
so the numbers are NOT comparable with published Inception FIDs. feature_sums runs inside a
jit-compiled evaluation step and adds across batches; gaussian_from_sums finishes it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def feature_sums(features: jax.Array, weight: jax.Array) -> dict:
    """features [N, F], weight [N] -> {feature_sum [F], feature_outer [F, F], count}."""
    weighted = features * weight[:, None]
    return {"feature_sum": jnp.sum(weighted, axis=0), "feature_outer": weighted.T @ features,
            "count": jnp.sum(weight)}


def gaussian_from_sums(feature_sum, feature_outer, count) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] in float64 from feature_sums."""
    n = float(count)
    mean = np.asarray(feature_sum, np.float64) / n
    second = np.asarray(feature_outer, np.float64) / n
    cov = (second - np.outer(mean, mean)) * n / max(n - 1.0, 1.0)
    return mean, cov


def gaussian_of(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b).
    Tr((A B)^(1/2)) = Tr((A^(1/2) B A^(1/2))^(1/2)), a symmetric PSD square root (stable)."""
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None))))
    diff = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
