"""Scores of generated images by a classifier trained on the real data set
(aigc_jax/metrics/classifier.py) -- NOT Inception, so not comparable with published scores:
  classifier_score   exp(E_x KL(p(y|x) || p(y))) (the Inception-Score formula, Salimans et al.
                     2016): between 1 and the number of classes; high when every sample is
                     confidently one class and the classes are balanced.
  mean_confidence    E_x max_y p(y|x).
  frechet_distance   in the classifier's feature space (aigc_jax/metrics/frechet.py).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aigc_jax.metrics.classifier import classify
from aigc_jax.metrics.frechet import feature_sums, frechet_distance, gaussian_from_sums, gaussian_of


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
    feature space of our SmallClassifier (aigc_jax/metrics/classifier.py; not Inception).

    `sums` runs inside a jit-compiled evaluation step (the classifier's weights are constants);
    `metrics` finishes the summed statistics on the host."""

    def __init__(self, model, params, real_images: np.ndarray):
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
        _, features = classify(self.model, self.params, images)
        mean, cov = gaussian_of(features)
        return frechet_distance(mean, cov, self.real_mean, self.real_cov)
