"""Does a captioner read its image? Per word kind, the teacher-forced loss of the test captions
with their own images beside the same captions with the images of other test items.

A word the image determines (a colour, a shape, a background) can only be predicted better than
the language prior from the pixels. So for each kind of target word (shapes world: colour,
shape, size, background, count, relation, and every other word of the templates):

  own       mean -log p(word | caption so far, its own image), nats;
  shuffled  the same with the images rolled by one item, so each caption meets another scene;
  chance    log of the number of words of that kind (the loss of a uniform guess among them);
  accuracy  how often the arg-max next word is the target, own images.

own close to chance and to shuffled: the model predicts that kind of word from the text alone.
"""
from __future__ import annotations

import math

import numpy as np
import optax

from aigc_jax.data import captions as caption_lib
from aigc_jax.data import shapes

WORD_KINDS = {
    "colour": set(shapes.COLOURS),
    "shape": set(shapes.SHAPES),
    "size": set(shapes.SIZES),
    "background": set(shapes.BACKGROUNDS),
    "count": set(shapes.NUMBER_WORDS[1:4]),  # the default world's 1-3 objects
    "relation": {phrase.split()[0] for phrase in shapes.RELATIONS},  # "left" of "left of"
}
KINDS = (*WORD_KINDS, "other")


def word_kind(word: str) -> str:
    for kind, words in WORD_KINDS.items():
        if word in words:
            return kind
    return "other"


def grounding_table(logits_of, vocab: caption_lib.CaptionVocab, batches: list) -> dict:
    """{kind: {"tokens", "own", "shuffled", "chance", "accuracy"}} over evaluation batches of
    {"images", "tokens"} (BOS ... EOS PAD ...); logits_of(images, inputs) -> next-word logits
    [B, T, V] (a captioner's forward pass); kinds with no target tokens are left out."""
    kind_of_id = np.array([KINDS.index(word_kind(w)) for w in vocab.words])
    sums = {name: np.zeros(len(KINDS)) for name in ("own", "shuffled", "hits", "tokens")}
    for batch in batches:
        images, tokens = np.asarray(batch["images"]), np.asarray(batch["tokens"])
        targets = tokens[:, 1:]
        real = targets != caption_lib.PAD
        kinds = kind_of_id[targets]
        for name, pixels in (("own", images), ("shuffled", np.roll(images, 1, axis=0))):
            logits = np.asarray(logits_of(pixels, tokens[:, :-1]))
            nll = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
            np.add.at(sums[name], kinds[real], nll[real])
            if name == "own":
                np.add.at(sums["hits"], kinds[real], (logits.argmax(-1) == targets)[real])
        np.add.at(sums["tokens"], kinds[real], 1)
    table = {}
    for i, kind in enumerate(KINDS):
        count = sums["tokens"][i]
        if not count:
            continue
        choices = len(WORD_KINDS[kind]) if kind in WORD_KINDS else None
        table[kind] = {"tokens": int(count), "own": sums["own"][i] / count, "shuffled": sums["shuffled"][i] / count,
                       "chance": math.log(choices) if choices else float("nan"), "accuracy": sums["hits"][i] / count}
    return table


def format_table(table: dict, markdown: bool = False) -> str:
    header = ["word kind", "tokens", "own image (nats)", "shuffled images", "uniform guess", "arg-max accuracy"]
    rows = [[kind, str(r["tokens"]), f"{r['own']:.3f}", f"{r['shuffled']:.3f}",
             "-" if math.isnan(r["chance"]) else f"{r['chance']:.3f}", f"{r['accuracy']:.3f}"]
            for kind, r in table.items()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header] + rows)
