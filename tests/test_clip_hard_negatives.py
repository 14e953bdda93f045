"""Shape-swapped hard negatives: the swap changes exactly one shape and never makes a held-out
pair, the training batch carries them, and the losses treat them as texts matching no image."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.config import ConfigError, load_config
from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.families.clip import hard_negatives, losses
from aigc_jax.families.clip import data as clip_data
from tests.conftest import config_path


def unit(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_swap_changes_one_shape_keeps_the_rest_and_never_makes_a_held_out_pair():
    world = shapes.ShapesWorld()
    factors = shapes.sample_factors(world, 7, range(200), "heldout")
    heldout = {(shapes.SHAPES.index(s), shapes.COLOURS.index(c)) for s, c in world.heldout_pairs}
    rng = np.random.default_rng(0)
    for n in range(200):
        scene = shapes.scene_of(factors, n)
        swapped = hard_negatives.swap_shape(scene, rng, world.heldout_pairs)
        count = int(scene["count"])
        changed = [k for k in range(count) if swapped["shape"][k] != scene["shape"][k]]
        assert len(changed) == 1
        for key in ("colour", "size", "x", "y", "background", "count"):
            np.testing.assert_array_equal(swapped[key], scene[key])
        k = changed[0]
        assert (int(swapped["shape"][k]), int(scene["colour"][k])) not in heldout
        for template in range(shapes.NUM_TEMPLATES):  # the swapped caption does not describe the image
            text = shapes.caption(swapped, template)
            assert not shapes.caption_agrees(shapes.parse_caption(text), scene)
            assert shapes.caption_agrees(shapes.parse_caption(text), swapped)
    assert np.array_equal(factors["shape"], shapes.sample_factors(world, 7, range(200), "heldout")["shape"])


def test_several_negatives_of_one_scene_are_different_swaps():
    world = shapes.ShapesWorld(min_objects=1, max_objects=1, heldout_pairs=())
    factors = shapes.sample_factors(world, 3, range(5), "train")
    texts = hard_negatives.negative_captions(factors, 0, 0, np.random.default_rng(0), (), 3)
    assert len(set(texts)) == 3 and shapes.caption(shapes.scene_of(factors, 0), 0) not in texts
    with pytest.raises(ValueError, match="no shape swap"):
        hard_negatives.swap_shape(shapes.scene_of(factors, 0), np.random.default_rng(0), (),
                                  avoid={(0, s) for s in range(4)})


def test_the_losses_count_negatives_as_texts_of_no_image():
    rng = np.random.default_rng(2)
    u, v, w = unit(rng, (4, 3)), unit(rng, (4, 3)), unit(rng, (4, 3))
    log_scale, s = 1.1, math.exp(1.1)
    loss, logits = losses.info_nce(jnp.asarray(u), jnp.asarray(v), log_scale, jnp.asarray(w))
    hand_i2t = hand_t2i = 0.0
    for i in range(4):
        row = [s * float(u[i] @ t) for t in np.concatenate([v, w])]
        col = [s * float(u[j] @ v[i]) for j in range(4)]
        hand_i2t += -(row[i] - math.log(sum(math.exp(r) for r in row)))
        hand_t2i += -(col[i] - math.log(sum(math.exp(c) for c in col)))
    np.testing.assert_allclose(float(loss), 0.5 * (hand_i2t + hand_t2i) / 4, rtol=1e-6)
    assert logits.shape == (4, 4)
    bias = -2.0
    sig, _ = losses.sigmoid_loss(jnp.asarray(u), jnp.asarray(v), log_scale, bias, jnp.asarray(w))
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    hand = sum(log_sigmoid((1 if i == j else -1) * (s * float(u[i] @ v[j]) + bias)) for i in range(4) for j in range(4))
    hand += sum(log_sigmoid(-(s * float(u[i] @ w[j]) + bias)) for i in range(4) for j in range(4))
    np.testing.assert_allclose(float(sig), -hand / 4, rtol=1e-5)
    # Own-negative accuracy: image i against rows k * N + i.
    image = jnp.eye(3)
    text = jnp.eye(3)
    negatives = jnp.concatenate([-jnp.eye(3), jnp.asarray([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])])
    assert float(losses.own_negative_accuracy(image, text, negatives)) == pytest.approx(2 / 3)


def test_the_training_batch_carries_negatives_of_its_own_images():
    data = clip_data.load_caption_data(load_config(config_path("clip.py:tiny"), ["data.paraphrase=0"]))
    batch = data.train_batch(0, 5, 8, 32, hard_negatives=2)
    assert batch["negative_tokens"].shape == (16, 32)
    again = data.train_batch(0, 5, 8, 32, hard_negatives=2)
    np.testing.assert_array_equal(batch["negative_tokens"], again["negative_tokens"])
    np.testing.assert_array_equal(batch["tokens"], again["tokens"])
    assert "negative_tokens" not in data.train_batch(0, 5, 8, 32)
    held = {(s, c) for s, c in data.heldout_pairs}
    for row, image in zip(batch["negative_tokens"], np.tile(np.arange(8), 2)):
        stated = shapes.parse_caption(data.vocab.decode(row))["objects"]
        assert not {(o["shape"], o["colour"]) for o in stated} & held
        true = shapes.parse_caption(data.vocab.decode(batch["tokens"][image]))["objects"]
        assert len(stated) == len(true) and stated != true  # its own image's caption, one shape changed
        assert sum(a != b for a, b in zip(stated, true)) == 1


def test_hard_negatives_need_the_shapes_world():
    config = load_config(config_path("clip.py:digits,tiny"))
    config.loss.hard_negatives = 1
    from aigc_jax.families.clip import task
    with pytest.raises(ConfigError, match="hard_negatives"):
        task.check_config(config)
    config.loss.hard_negatives = 4
    with pytest.raises(ConfigError, match="hard_negatives"):
        task.check_config(config)
    digits = clip_data.CaptionData("digits", "", np.zeros((2, 8, 8, 1), np.float32), None, [],
                                   train_labels=np.zeros(2, np.int64))
    with pytest.raises(DataError, match="shape-swapped"):
        digits.train_batch(0, 0, 2, 8, hard_negatives=1)


def test_the_swap_evaluation_pairs_a_true_caption_with_a_false_one_of_the_same_template():
    world = shapes.ShapesWorld()
    factors = shapes.sample_factors(world, 1, range(30), "test")
    true, swapped = hard_negatives.swap_pairs(factors, 5, world.heldout_pairs)
    assert (true, swapped) == hard_negatives.swap_pairs(factors, 5, world.heldout_pairs)
    for n, (a, b) in enumerate(zip(true, swapped)):
        scene = shapes.scene_of(factors, n)
        assert shapes.caption_agrees(shapes.parse_caption(a), scene)
        assert not shapes.caption_agrees(shapes.parse_caption(b), scene)
        assert len(a.split()) == len(b.split())
    images = np.eye(3, dtype=np.float32)
    assert hard_negatives.swap_accuracy(images, images, -images) == 1.0
    assert hard_negatives.swap_accuracy(images, -images, images) == 0.0
