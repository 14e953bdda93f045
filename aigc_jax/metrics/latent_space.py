"""Disentanglement metrics of a generator's latent spaces (Karras et al. 2019, StyleGAN, sec. 4).

  perceptual path length (PPL)  E[ d(g(lerp(t)), g(lerp(t + eps))) / eps^2 ], t ~ U(0, 1), for
      latent pairs (z1, z2); interpolation is spherical (slerp) in Z (Gaussian), linear in W. The
      paper's d is LPIPS on VGG features; ours is the squared L2 distance between a feature
      network's activations (the caller's choice: the project's own classifiers), so numbers
      compare only across models scored by the same network. As in the paper, distances outside
      the 1st-99th percentile are dropped before averaging.
  linear separability  for each binary attribute (labelled by a classifier on generated images,
      keeping the `keep_fraction` most confident), a linear SVM predicts it from the latent; the
      score is exp(sum_i H(Y_i | X_i)), with X_i the SVM's prediction and Y_i the classifier's label
      (conditional entropy in nats). Lower = the attributes are more linearly separable.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def slerp(a, b, t):
    """Spherical interpolation between a and b [N, D] at t [N] (angle between the directions; the
    norm interpolated linearly, so it is exact for equal-norm endpoints)."""
    a_norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    b_norm = jnp.linalg.norm(b, axis=-1, keepdims=True)
    a_unit, b_unit = a / a_norm, b / b_norm
    t = t[:, None]
    cos = jnp.clip(jnp.sum(a_unit * b_unit, axis=-1, keepdims=True), -1.0, 1.0)
    angle = jnp.arccos(cos)
    sin = jnp.sin(angle)
    safe = sin > 1e-6
    w_a = jnp.where(safe, jnp.sin((1.0 - t) * angle) / jnp.where(safe, sin, 1.0), 1.0 - t)
    w_b = jnp.where(safe, jnp.sin(t * angle) / jnp.where(safe, sin, 1.0), t)
    return (w_a * a_unit + w_b * b_unit) * ((1.0 - t) * a_norm + t * b_norm)


def lerp(a, b, t):
    """Linear interpolation a + t (b - a), t [N] against a, b [N, ...]."""
    return a + t.reshape((-1,) + (1,) * (a.ndim - 1)) * (b - a)


def path_length_from_distances(distances: np.ndarray, epsilon: float) -> dict:
    """distances: squared feature distances d_i of the eps-steps -> PPL (mean of d / eps^2 within
    the 1st-99th percentile) and the spread of the kept values."""
    scaled = np.asarray(distances, np.float64) / (epsilon ** 2)
    low, high = np.percentile(scaled, [1, 99])
    kept = scaled[(scaled >= low) & (scaled <= high)]
    return {"ppl": float(kept.mean()), "ppl_median": float(np.median(kept)), "ppl_kept": int(len(kept))}


def conditional_entropy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """H(Y | X) in nats for binary arrays Y = labels, X = predictions."""
    labels, predictions = np.asarray(labels, bool), np.asarray(predictions, bool)
    total = len(labels)
    entropy = 0.0
    for x in (False, True):
        in_x = predictions == x
        n_x = int(in_x.sum())
        if n_x == 0:
            continue
        p_y = float(labels[in_x].mean())
        h = -sum(p * math.log(p) for p in (p_y, 1.0 - p_y) if p > 0)
        entropy += n_x / total * h
    return entropy


def linear_separability(latents: np.ndarray, attributes: dict, confidences: dict, keep_fraction: float = 0.5,
                        seed: int = 0) -> dict:
    """latents [N, D]; attributes {name: bool [N]}; confidences {name: [N]} -> {"separability":
    exp(sum of H), "separability_entropy_<name>": H(Y|X) per attribute, "separability_attributes":
    how many entered the sum}. An attribute whose kept labels are all one value (the generator never,
    or always, shows it) says nothing about the latent space: it is left out of the sum (its entropy
    reported as NaN), so a collapsed generator does not score as perfectly separable."""
    from sklearn.svm import LinearSVC
    latents = np.asarray(latents, np.float64)
    latents = (latents - latents.mean(0)) / (latents.std(0) + 1e-8)
    out, total, used = {}, 0.0, 0
    for name, labels in attributes.items():
        labels = np.asarray(labels, bool)
        keep = np.argsort(-np.asarray(confidences[name]))[:max(int(len(labels) * keep_fraction), 2)]
        x, y = latents[keep], labels[keep]
        if y.all() or not y.any():
            out[f"separability_entropy_{name}"] = float("nan")
            continue
        svm = LinearSVC(C=1.0, max_iter=5000, random_state=seed).fit(x, y)
        entropy = conditional_entropy(y, svm.predict(x))
        out[f"separability_entropy_{name}"] = entropy
        total += entropy
        used += 1
    out["separability"] = math.exp(total)
    out["separability_attributes"] = used
    return out
