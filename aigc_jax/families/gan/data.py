"""The GAN family's data sources: a 2-D Gaussian mixture (with the mode-coverage metrics of
VEEGAN and PacGAN) or an image set (with our classifier's Frechet distance and score). Each
gives train batches as a pure function of (seed, step), evaluation sums and a preview plot.
"""
from __future__ import annotations

import functools
import os

import jax.numpy as jnp
import numpy as np

from aigc_jax.metrics import classifier_score
from aigc_jax.metrics import mode_coverage
from aigc_jax.data import images as image_data
from aigc_jax.data import toy2d
from aigc_jax.image_grid import save_image_grid
from aigc_jax.metrics.classifier import ClassifierSettings, load_or_train_classifier


class ToySource:
    """A 2-D mixture (aigc_jax/data/toy2d.py): its fixed training set, and the papers' metrics."""

    def __init__(self, config):
        self.mixture = toy2d.make_mixture(config.data)
        self.points, self.labels = toy2d.training_set(self.mixture, config.data.num_train, config.seed)
        self.means = jnp.asarray(self.mixture.means, jnp.float32)
        self.example_shape = (2,)
        self.num_classes = self.mixture.num_modes  # the component a point was drawn from
        self.has_labels = True
        self.name = f"the 2-D {self.mixture.name}"
        self.preview_count = config.eval.num_samples
        self.eval_metric = "reverse_kl"  # 0 when every mode is covered evenly
        self.description = (f"2-D {self.mixture.name} of {self.mixture.num_modes} Gaussians (std "
                            f"{self.mixture.std:g}), {len(self.points):,} training points")

    def train_batch(self, seed: int, step: int, count: int):
        index = np.random.default_rng([seed, step]).integers(0, len(self.points), size=count)
        return self.points[index], self.labels[index]

    def eval_sums(self, samples, weight, labels):
        return mode_coverage.mode_sums(samples, self.means, self.mixture.std, weight)

    def summarize_eval(self, sums: dict) -> dict:
        metrics = mode_coverage.mode_collapse_metrics(sums["mode_counts"], float(sums["count"]))
        metrics["mean_mode_distance"] = float(sums["distance_sum"]) / max(float(sums["count"]), 1.0)
        return metrics

    def save_preview(self, samples: np.ndarray, path: str) -> None:
        """A scatter plot of the samples over the mixture's means."""
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color="black")
        ax.scatter(self.mixture.means[:, 0], self.mixture.means[:, 1], s=20, marker="x", color="red")
        extent = float(np.abs(self.mixture.means).max()) * 1.5
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)


class ImageSource:
    """Images (aigc_jax/data/images.py) scaled to [-1, 1]; with labels, a classifier of ours
    (trained once, cached) gives the Frechet distance and classifier score (aigc_jax/metrics/)."""

    def __init__(self, config):
        splits = image_data.load_image_splits(config.data)
        train, test = splits.train_images, splits.test_images
        if config.data.image_size:
            train = image_data.resize_nearest(train, config.data.image_size)
            test = image_data.resize_nearest(test, config.data.image_size)
        self.images = train * 2.0 - 1.0
        self.labels = splits.train_labels
        self.example_shape = tuple(train.shape[1:])
        self.has_labels = bool(np.all(splits.train_labels >= 0))
        self.num_classes = int(splits.train_labels.max()) + 1 if self.has_labels else 0
        self.conditional = bool(config.model.get("num_classes", 0)) and self.num_classes > 0
        self.name = splits.description.split(":")[0]
        self.preview_count = config.eval.grid_samples
        self.scores = None
        self.feature_fn = None  # images in [0, 1] -> the scoring network's features (jit-able)
        self.attribute_fn = None  # images in [0, 1] (numpy) -> ({name: bool [N]}, {name: confidence [N]})
        self.eval_metric = ""  # the Frechet distance once a classifier scores the samples
        self.description = f"{splits.description}, {train.shape[1]}x{train.shape[2]}"
        if image_data.uses_shapes_world(config.data) and config.eval.classifier_steps > 0:
            self._score_with_factor_classifier(config, test)
        elif self.has_labels and config.eval.classifier_steps > 0:
            settings = ClassifierSettings(num_classes=self.num_classes, steps=config.eval.classifier_steps)
            model, params, accuracy, path = load_or_train_classifier(
                train, splits.train_labels, test, splits.test_labels, settings, config.eval.classifier_cache)
            self.scores = classifier_score.ClassifierScores(model, params, train)
            self.feature_fn = lambda images: model.apply({"params": params}, images)[1]
            self.attribute_fn = functools.partial(class_attributes, model, params)
            self.eval_metric = "frechet_distance"
            floor = self.scores.frechet_distance_of(test)
            self.description += (f"; scored by our own classifier (test accuracy {accuracy:.3f}, {path}; not "
                                 f"Inception): Frechet distance of the real test images {floor:.3f}")
        elif not self.has_labels:
            self.description += "; no labels, so no classifier-based scores (set data.labels_path)"

    def _score_with_factor_classifier(self, config, test: np.ndarray) -> None:
        """The shapes world's judge: the factor classifier (aigc_jax/metrics/factor_classifier.py,
        trained once on every (shape, colour) pair and cached; eval.factor_classifier_steps and
        eval.factor_classifier_scenes) gives the Frechet distance, classifier score and factor match."""
        from aigc_jax.metrics import factor_classifier as fc
        world = image_data.shapes_world(config.data)
        scenes = config.eval.factor_classifier_scenes
        settings = fc.FactorSettings(steps=config.eval.factor_classifier_steps, train_scenes=scenes,
                                     test_scenes=min(fc.FactorSettings.test_scenes, scenes))
        model, params, accuracy, path = fc.load_or_train_factor_classifier(world, settings,
                                                                           cache_dir=config.eval.classifier_cache)
        real = (self.images + 1.0) / 2.0
        self.scores = fc.FactorScores(model, params, real)
        self.feature_fn = lambda images: model.apply({"params": params}, images)[1]
        self.attribute_fn = functools.partial(fc.binary_attributes, model, params)
        self.eval_metric = "frechet_distance"
        floor = self.scores.frechet_distance_of(test)
        test_accuracy = accuracy["test"]
        self.description += (f"; scored by our factor classifier ({path}; test accuracy: count "
                             f"{test_accuracy['count']:.3f}, main shape {test_accuracy['shape']:.3f}, main colour "
                             f"{test_accuracy['colour']:.3f}; not Inception): Frechet distance of the real test "
                             f"scenes {floor:.3f}")

    def train_batch(self, seed: int, step: int, count: int):
        return image_data.image_batch(self.images, self.labels, seed, step, count)

    def eval_sums(self, samples, weight, labels):
        if self.scores is None:
            return {"count": jnp.sum(weight)}
        return self.scores.sums((samples + 1.0) / 2.0, weight, labels)

    def summarize_eval(self, sums: dict) -> dict:
        return self.scores.metrics(sums) if self.scores is not None else {}

    def save_preview(self, samples: np.ndarray, path: str) -> None:
        """A PNG grid; for a class-conditional model (latents labelled i mod K) one column per class."""
        columns = self.num_classes if (self.conditional and samples.shape[0] % self.num_classes == 0) else 0
        save_image_grid((samples + 1.0) / 2.0, path, columns=columns, scale=max(1, 64 // samples.shape[1]))


def class_attributes(model, params, images: np.ndarray):
    """One binary attribute per class ("class_k": the classifier's p(k | x) > 1/2). The confidence of
    every attribute is the classifier's confidence in the sample, max_k p(k | x), so linear
    separability keeps the same confident half of the samples for all of them (a per-attribute
    max(p, 1 - p) would keep mostly the 90% negatives of each one-vs-rest attribute)."""
    from aigc_jax.metrics.classifier import classify
    logits, _ = classify(model, params, images)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    confidence = probs.max(-1)
    labels = {f"class_{k}": probs[:, k] > 0.5 for k in range(probs.shape[1])}
    return labels, {name: confidence for name in labels}
