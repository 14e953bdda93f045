"""The captioner's grounding table: per word kind, the loss with own images beside other items'
images, on stand-in models whose dependence on the image is known exactly."""
import math

import numpy as np
import pytest

from aigc_jax.data import captions
from aigc_jax.families.clip import caption_grounding

TEXTS = ["a small red circle on a grey background", "two objects: a large blue star above a medium white square",
         "there is one object: a small cyan triangle", "a medium green square left of a large red star"]


def reads_its_image(tokens, vocab_size, peak=8.0):
    """Logits peaked on the caption of the item whose index the image carries."""
    def logits_of(images, inputs):
        item = np.asarray(images)[:, 0, 0, 0].astype(int)
        return peak * np.eye(vocab_size)[tokens[item, 1:inputs.shape[1] + 1]]
    return logits_of


def blind(vocab_size):
    return lambda images, inputs: np.zeros(inputs.shape + (vocab_size,))


@pytest.fixture
def batch():
    vocab = captions.CaptionVocab.from_texts(TEXTS)
    tokens = vocab.encode_batch(TEXTS, 16)
    images = np.arange(len(TEXTS), dtype=np.float32)[:, None, None, None]
    return vocab, tokens, {"images": images, "tokens": tokens}


def test_word_kinds():
    assert [caption_grounding.word_kind(w) for w in "red star grey large two left of a".split()] == [
        "colour", "shape", "background", "size", "count", "relation", "other", "other"]


def test_a_model_that_reads_its_image_loses_only_with_other_images(batch):
    vocab, tokens, b = batch
    table = caption_grounding.grounding_table(reads_its_image(tokens, vocab.size), vocab, [b])
    sure = -math.log(math.exp(8.0) / (math.exp(8.0) + vocab.size - 1))  # -log p of the peaked word
    for kind, row in table.items():
        assert row["own"] == pytest.approx(sure, abs=1e-5) and row["accuracy"] == 1.0, kind
    assert table["colour"]["shuffled"] > 5.0 and table["colour"]["chance"] == pytest.approx(math.log(8))
    real = tokens[:, 1:] != captions.PAD
    assert sum(r["tokens"] for r in table.values()) == int(real.sum())
    counted = {k: sum(caption_grounding.word_kind(vocab.words[t]) == k for t in tokens[:, 1:][real]) for k in table}
    assert {k: r["tokens"] for k, r in table.items()} == counted and table["colour"]["tokens"] == 6


def test_a_blind_model_scores_the_same_with_any_image(batch):
    vocab, tokens, b = batch
    table = caption_grounding.grounding_table(blind(vocab.size), vocab, [b, b])
    for row in table.values():
        assert row["own"] == pytest.approx(math.log(vocab.size)) == pytest.approx(row["shuffled"])
    text = caption_grounding.format_table(table, markdown=True)
    assert text.splitlines()[0].startswith("| word kind") and "| colour | 12 |" in text
