"""Measurements GAN papers use: mode coverage on 2-D mixtures, and feature-space scores for images.

2-D mixtures (VEEGAN, Srivastava et al. 2017, sec. 5.1; PacGAN, Lin et al. 2018, sec. 5):
  a generated sample is *high quality* if it lies within 3 standard deviations of its
  nearest mode; *modes captured* counts the components whose mean is nearest to at least one
  high-quality sample; *reverse KL* is KL(q || uniform) between the distribution q of the
  high-quality samples over modes (their histogram, normalised) and the uniform distribution
  over the K modes: sum_k q_k log(K q_k) = log K - H(q) (0 log 0 = 0). Missing modes enter
  through the entropy; a run with no high-quality sample gets log K.

Images, in the feature space of a small classifier the project trains on the same data set
(aigc_jax/models/classifier.py) -- NOT Inception, so not comparable with published FIDs:
  frechet_distance   ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians
                     fitted to real and generated features (the FID formula, Heusel et al. 2017).
  classifier_score   exp(E_x KL(p(y|x) || p(y))) (the Inception-Score formula, Salimans et al.
                     2016): between 1 and the number of classes; high when every sample is
                     confidently one class and the classes are balanced.
  mean_confidence    E_x max_y p(y|x).
Evaluation steps return sums (over samples) that add across batches; `*_from_sums` finish them.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

HIGH_QUALITY_STDS = 3.0


def nearest_modes(samples: jax.Array, means: jax.Array, std: float) -> tuple[jax.Array, jax.Array]:
    """samples [N, 2], means [K, 2] -> (index of the nearest mean [N], its distance in stds [N])."""
    sq = jnp.sum(jnp.square(samples[:, None, :] - means[None, :, :]), axis=-1)  # [N, K]
    index = jnp.argmin(sq, axis=-1)
    return index, jnp.sqrt(jnp.min(sq, axis=-1)) / std


def mode_sums(samples: jax.Array, means: jax.Array, std: float, weight: jax.Array) -> dict:
    """Summable statistics of a batch: high-quality counts per mode [K], sample count, and the
    summed distance to the nearest mode (data units). weight [N] masks padding rows."""
    index, distance = nearest_modes(samples, means, std)
    high_quality = (distance < HIGH_QUALITY_STDS).astype(jnp.float32) * weight
    counts = jnp.zeros(means.shape[0], jnp.float32).at[index].add(high_quality)
    return {"mode_counts": counts, "count": jnp.sum(weight),
            "distance_sum": jnp.sum(distance * std * weight)}


def mode_collapse_metrics(mode_counts: np.ndarray, num_samples: float) -> dict:
    """From the high-quality histogram [K] and the number of samples: the papers' three metrics."""
    counts = np.asarray(mode_counts, np.float64)
    num_modes = len(counts)
    high_quality = counts.sum()
    if high_quality > 0:
        q = counts / high_quality
        nonzero = q[q > 0]
        reverse_kl = float(np.sum(nonzero * np.log(num_modes * nonzero)))
    else:
        reverse_kl = math.log(num_modes)
    return {"modes_captured": float(np.count_nonzero(counts)),
            "high_quality_percent": 100.0 * float(high_quality) / max(float(num_samples), 1.0),
            "reverse_kl": reverse_kl}


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


def classifier_sums(logits: jax.Array, weight: jax.Array, labels=None) -> dict:
    """Summable class-probability statistics of a batch (labels: the conditioning classes, if any)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    probs = jnp.exp(log_probs)
    sums = {"prob_sum": jnp.sum(probs * weight[:, None], axis=0),
            "neg_entropy_sum": jnp.sum(jnp.sum(probs * log_probs, axis=-1) * weight),
            "confidence_sum": jnp.sum(jnp.max(probs, axis=-1) * weight)}
    if labels is not None:
        sums["label_agreement_sum"] = jnp.sum((jnp.argmax(logits, axis=-1) == labels) * weight)
    return sums


def classifier_metrics_from_sums(sums: dict) -> dict:
    """classifier_score = exp(E_x sum_y p log p - sum_y p(y) log p(y)), p(y) = E_x p(y|x)."""
    n = float(sums["count"])
    marginal = np.asarray(sums["prob_sum"], np.float64) / n
    marginal_entropy = -float(np.sum(marginal[marginal > 0] * np.log(marginal[marginal > 0])))
    metrics = {"classifier_score": math.exp(float(sums["neg_entropy_sum"]) / n + marginal_entropy),
               "mean_confidence": float(sums["confidence_sum"]) / n}
    if "label_agreement_sum" in sums:
        metrics["label_accuracy"] = float(sums["label_agreement_sum"]) / n
    return metrics


class ClassifierScores:
    """Frechet distance and classifier score of generated images against real ones, in the
    feature space of our SmallClassifier (aigc_jax/models/classifier.py; not Inception).

    `sums` runs inside a jit-compiled evaluation step (the classifier's weights are constants);
    `metrics` finishes the summed statistics on the host."""

    def __init__(self, model, params, real_images: np.ndarray):
        from aigc_jax.models.classifier import classify
        self.model, self.params = model, params
        _, features = classify(model, params, real_images)
        self.real_mean, self.real_cov = gaussian_of(features)

    def sums(self, images: jax.Array, weight: jax.Array, labels=None) -> dict:
        """images [N, H, W, C] in [0, 1], weight [N] -> summable statistics."""
        logits, features = self.model.apply({"params": self.params}, images)
        return {**feature_sums(features, weight), **classifier_sums(logits, weight, labels)}

    def metrics(self, sums: dict) -> dict:
        mean, cov = gaussian_from_sums(sums["feature_sum"], sums["feature_outer"], sums["count"])
        return {"frechet_distance": frechet_distance(mean, cov, self.real_mean, self.real_cov),
                **classifier_metrics_from_sums(sums)}

    def frechet_distance_of(self, images: np.ndarray) -> float:
        """The distance of a set of real images (e.g. the test split): the floor for its size."""
        from aigc_jax.models.classifier import classify
        _, features = classify(self.model, self.params, images)
        mean, cov = gaussian_of(features)
        return frechet_distance(mean, cov, self.real_mean, self.real_cov)
