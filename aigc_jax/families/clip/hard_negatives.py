"""Shape-swapped captions: hard negatives for training and a two-way compositional test.

A scene's caption with one object's shape changed to another shape (same template, every other
word the same) describes a different scene. A batch's own captions can nearly all be told apart
by colours, sizes and backgrounds, without shape (the shapes world's first runs left shape at
chance after 77k pairs); a swapped caption among the negatives is told apart only by shape. This
is NegCLIP's remedy (Yuksekgonul et al. 2023, "When and why vision-language models behave like
bags-of-words": perturbed captions of the batch's own images as extra negatives), with the
perturbation a factor swap the shapes world can state exactly. Its effect here at equal budget:
experiments/results/multimodal.md.

Swaps never create a held-out (shape, colour) pair: a held-out pair's words must not reach the
text encoder in training, not even as a negative (that would teach "a green circle" matches no
image, and bias the held-out evaluation against it).

Evaluation (`swap_accuracy`): for each image of a set, is its own caption scored above the
shape-swapped one? Chance is 0.5; the held-out set asks it of scenes holding a never-seen pair.
"""
from __future__ import annotations

import numpy as np

from aigc_jax.data import shapes


def swap_shape(scene: dict, rng: np.random.Generator, heldout_pairs: tuple, avoid=()) -> dict:
    """A copy of scene (shapes.scene_of) with one object's shape replaced by a different shape,
    drawn with rng among the (object, shape) swaps that make no held-out pair and are not in
    `avoid` (already drawn). Raises ValueError when no swap is left."""
    heldout = {shapes.pair_index(shapes.SHAPES.index(s), shapes.COLOURS.index(c)) for s, c in heldout_pairs}
    count = int(scene["count"])
    options = [(slot, shape) for slot in range(count) for shape in range(len(shapes.SHAPES))
               if shape != scene["shape"][slot] and (slot, shape) not in avoid
               and int(shapes.pair_index(shape, int(scene["colour"][slot]))) not in heldout]
    if not options:
        raise ValueError("no shape swap is left for this scene")
    slot, shape = options[int(rng.integers(len(options)))]
    swapped = dict(scene)
    swapped["shape"] = np.array(scene["shape"], copy=True)
    swapped["shape"][slot] = shape
    swapped["swap"] = (slot, shape)
    return swapped


def negative_captions(factors: dict, n: int, template: int, rng: np.random.Generator, heldout_pairs: tuple,
                      count: int) -> list:
    """`count` captions of scene n with template `template`, each with a different one-shape swap
    (a scene with fewer swaps than `count` repeats its last)."""
    scene = shapes.scene_of(factors, n)
    out, drawn = [], set()
    for _ in range(count):
        try:
            swapped = swap_shape(scene, rng, heldout_pairs, drawn)
            drawn.add(swapped["swap"])
            out.append(shapes.caption(swapped, template))
        except ValueError:
            if not out:
                raise
            out.append(out[-1])
    return out


def swap_pairs(factors: dict, seed: int, heldout_pairs: tuple) -> tuple:
    """(true captions, shape-swapped captions) of every scene, canonical words, each pair with one
    template drawn from a generator seeded by `seed` (fixed evaluation texts)."""
    rng = np.random.default_rng(seed)
    true, swapped = [], []
    for n in range(len(factors["count"])):
        template = int(rng.integers(shapes.NUM_TEMPLATES))
        true.append(shapes.caption(shapes.scene_of(factors, n), template))
        swapped.append(negative_captions(factors, n, template, rng, heldout_pairs, 1)[0])
    return true, swapped


def swap_accuracy(image_embeddings: np.ndarray, true_embeddings: np.ndarray, swapped_embeddings: np.ndarray) -> float:
    """Fraction of images whose own caption's embedding is more similar than the swapped one's."""
    true = np.sum(image_embeddings * true_embeddings, axis=1)
    swapped = np.sum(image_embeddings * swapped_embeddings, axis=1)
    return float(np.mean(true > swapped))
