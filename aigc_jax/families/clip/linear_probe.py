"""Linear probes (CLIP sec. 3.2): a multinomial logistic regression per shapes-world factor on
frozen image features (the encoder's pooled output, before the projection), fit on one-object
scenes of the train stream and scored on one-object scenes of the test stream (seen (shape,
colour) pairs) and of the held-out stream (pairs never seen in training).

The same probe on the same architecture at its initialisation is the control: what a linear
read-out gets from random features.
"""
from __future__ import annotations

import jax
import numpy as np

from aigc_jax.data import images as image_data
from aigc_jax.data import shapes
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip.zero_shot import SHAPE_FACTORS, single_object_labels

PROBE_SEED = 0x9B0


def probe_sets(config, train_count: int, test_count: int) -> dict:
    """{"train", "seen", "heldout"}: (images in [-1, 1], factors) of one-object scenes."""
    world = clip_data.single_object_world(image_data.shapes_world(config.data))
    out = {}
    for name, split, count in (("train", "train", train_count), ("seen", "test", test_count),
                               ("heldout", "heldout", test_count)):
        pixels, factors = shapes.make_dataset(world, PROBE_SEED, count, split)
        out[name] = (clip_data.to_model_range(pixels / 255.0), factors)
    return out


def load_image_encoder(workdir: str) -> tuple:
    """(model, params, config, step) of a contrastive ("clip") or supervised ("clip_supervised") run;
    either model has `image_features`."""
    from aigc_jax.families.clip import supervised_task, task as clip_task
    from aigc_jax.train.restore import restore_params
    restored = restore_params(workdir)
    config = restored.config
    if config.task == "clip":
        model, _ = clip_task.model_of_run(config, workdir)
    elif config.task == "clip_supervised":
        model = supervised_task.build_model(config)
    else:
        raise ValueError(f"{workdir!r} holds a {config.task!r} run; probes read 'clip' or 'clip_supervised' runs")
    return model, restored.params, config, restored.step


def init_params(model, config, image: np.ndarray):
    """The model's parameters at initialisation (seed 0): the probes' control."""
    if hasattr(model, "max_text_length"):
        return model.init(jax.random.key(0), image, np.zeros((1, model.max_text_length), np.int32))["params"]
    return model.init(jax.random.key(0), image)["params"]


def features_of(model, params, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x, method="image_features")[0])
    return np.concatenate([np.asarray(apply(params, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, tests: dict, c: float = 1.0) -> dict:
    """Standardised features, L2-regularised logistic regression (scikit-learn, lbfgs)."""
    from sklearn.linear_model import LogisticRegression
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    probe = LogisticRegression(C=c, max_iter=2000)
    probe.fit((train_x - mean) / std, train_y)
    return {name: float(np.mean(probe.predict((x - mean) / std) == y)) for name, (x, y) in tests.items()}


def probe_accuracies(model, params, sets: dict) -> dict:
    """{"probe_{seen|heldout}_{factor}": accuracy} for every factor of zero_shot.SHAPE_FACTORS (pair: seen only)."""
    feats = {name: features_of(model, params, images) for name, (images, _) in sets.items()}
    labels = {name: single_object_labels(factors) for name, (_, factors) in sets.items()}
    out = {}
    for factor in SHAPE_FACTORS:
        # A held-out pair is a class the probe never saw: its pair accuracy there is 0 by construction.
        names = ("seen",) if factor == "pair" else ("seen", "heldout")
        tests = {name: (feats[name], labels[name][factor]) for name in names}
        for name, accuracy in fit_and_score(feats["train"], labels["train"][factor], tests).items():
            out[f"probe_{name}_{factor}"] = accuracy
    return out
