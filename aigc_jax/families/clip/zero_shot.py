"""Zero-shot classification and retrieval from a contrastive model's unit embeddings (numpy).

Zero-shot (CLIP sec. 3.1): each class gets a text embedding, the normalised mean of its prompts'
embeddings (prompt ensembling, CLIP sec. 3.1.4); an image's predicted class is the one whose
embedding is most similar. On the shapes world a factor's prompts are every single-object
caption that states that factor's value, marginalising the others: "a {size} {colour} {shape}"
and "a {size} {colour} {shape} on a {background} background" -- the shape "circle" is the mean
of the 24 + 96 captions with a circle in them. Pairs (shape, colour) are a 32-way factor of
their own: on the held-out stream's images it asks for a combination never captioned in
training. Count uses the prefix "{n} objects on a {background} background".

Retrieval: recall@k from images to texts and texts to images. Captions can repeat (two
single-object scenes may both be "a small red circle"), so a retrieved item counts as a hit when
its caption is the same text as the query's own (with distinct captions this is the usual recall).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from aigc_jax.data import shapes

SHAPE_FACTORS = ("shape", "colour", "size", "background", "pair")
NUM_CLASSES = {"shape": len(shapes.SHAPES), "colour": len(shapes.COLOURS), "size": len(shapes.SIZES),
               "background": len(shapes.BACKGROUNDS), "pair": len(shapes.SHAPES) * len(shapes.COLOURS)}


def shapes_prompts() -> list:
    """[(prompt, {"shape", "colour", "size", "pair", "background" (None in template 0)})] for every
    single-object caption of templates 0 and 1."""
    out = []
    for shape in range(len(shapes.SHAPES)):
        for colour in range(len(shapes.COLOURS)):
            for size in range(len(shapes.SIZES)):
                phrase = f"a {shapes.SIZES[size]} {shapes.COLOURS[colour]} {shapes.SHAPES[shape]}"
                values = {"shape": shape, "colour": colour, "size": size,
                          "pair": shapes.pair_index(shape, colour)}
                out.append((phrase, dict(values, background=None)))
                for background, name in enumerate(shapes.BACKGROUNDS):
                    out.append((f"{phrase} on a {name} background", dict(values, background=background)))
    return out


def count_prompts(world: shapes.ShapesWorld) -> tuple:
    """(prompts, class of each prompt = count - min_objects)."""
    texts, classes = [], []
    for count in range(world.min_objects, world.max_objects + 1):
        noun = "object" if count == 1 else "objects"
        for name in shapes.BACKGROUNDS:
            texts.append(f"{shapes.NUMBER_WORDS[count]} {noun} on a {name} background")
            classes.append(count - world.min_objects)
    return texts, np.asarray(classes)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_embeddings(prompt_embeddings: np.ndarray, prompt_classes: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, D]: the normalised mean of each class's prompt embeddings (prompts of class < 0 are skipped)."""
    out = np.zeros((num_classes, prompt_embeddings.shape[1]), np.float32)
    for k in range(num_classes):
        members = prompt_embeddings[prompt_classes == k]
        if len(members) == 0:
            raise ValueError(f"class {k} has no prompt")
        out[k] = members.mean(axis=0)
    return normalize(out)


def classify(image_embeddings: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.argmax(image_embeddings @ classes.T, axis=1)


def single_object_labels(factors: dict) -> dict:
    """The factors of single-object scenes (slot 0) as class labels."""
    shape, colour = factors["shape"][:, 0], factors["colour"][:, 0]
    return {"shape": shape, "colour": colour, "size": factors["size"][:, 0], "background": factors["background"],
            "pair": shapes.pair_index(shape, colour)}


def shapes_zero_shot(embed_texts: Callable, image_sets: dict, world: shapes.ShapesWorld) -> dict:
    """Accuracy per factor and set. image_sets: name -> (image embeddings [N, D], factors); sets named
    single_* hold one object per scene (every factor), count_* several (count only).
    -> {"zs_{set}_{factor}": accuracy} (chance: 1 / NUM_CLASSES[factor])."""
    prompts = shapes_prompts()
    prompt_embeddings = embed_texts([p for p, _ in prompts])
    classes = {}
    for factor in SHAPE_FACTORS:
        labels = np.asarray([-1 if values[factor] is None else values[factor] for _, values in prompts])
        classes[factor] = class_embeddings(prompt_embeddings, labels, NUM_CLASSES[factor])
    count_texts, count_labels = count_prompts(world)
    count_classes = class_embeddings(embed_texts(count_texts), count_labels, world.max_objects - world.min_objects + 1)
    out = {}
    for name, (embeddings, factors) in image_sets.items():
        if name.startswith("single_"):
            truth = single_object_labels(factors)
            for factor in SHAPE_FACTORS:
                out[f"zs_{name[len('single_'):]}_{factor}"] = float(np.mean(classify(embeddings, classes[factor])
                                                                            == truth[factor]))
        else:
            out[f"zs_{name}"] = float(np.mean(classify(embeddings, count_classes) == factors["count"] - world.min_objects))
    return out


def labels_zero_shot(embed_texts: Callable, image_embeddings: np.ndarray, labels: np.ndarray, class_words,
                     templates) -> float:
    """Accuracy of zero-shot classification with prompts template.format(word) per class."""
    texts, classes = [], []
    for k, word in enumerate(class_words):
        for template in templates:
            texts.append(template.format(word))
            classes.append(k)
    class_emb = class_embeddings(embed_texts(texts), np.asarray(classes), len(class_words))
    return float(np.mean(classify(image_embeddings, class_emb) == labels))


def recall_at_k(image_embeddings: np.ndarray, text_embeddings: np.ndarray, captions, ks=(1, 5)) -> dict:
    """{"i2t_r@k", "t2i_r@k"}: pair n = (image n, caption n); hits by identical caption text."""
    ids = {}
    caption_ids = np.asarray([ids.setdefault(c, len(ids)) for c in captions])
    similarity = image_embeddings @ text_embeddings.T  # [images, texts]
    out = {}
    for k in ks:
        top_texts = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        out[f"i2t_r@{k}"] = float(np.mean((caption_ids[top_texts] == caption_ids[:, None]).any(axis=1)))
        top_images = np.argsort(-similarity.T, axis=1, kind="stable")[:, :k]
        out[f"t2i_r@{k}"] = float(np.mean((caption_ids[top_images] == caption_ids[:, None]).any(axis=1)))
    return out
