import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.metrics import factor_classifier as fc

pytestmark = pytest.mark.xdist_group("factor_classifier")  # one worker shares the trained module fixture

WORLD = shapes.ShapesWorld(image_size=16)
TINY = fc.FactorSettings(width=8, feature_dim=16, steps=200, batch_size=32, learning_rate=3e-3,
                         train_scenes=400, test_scenes=200)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("classifiers")
    data = tmp_path_factory.mktemp("shapes")
    model, params, accuracies, path = fc.load_or_train_factor_classifier(
        WORLD, TINY, cache_dir=str(cache), data_cache_dir=str(data), progress=False)
    return model, params, accuracies, path, str(cache), str(data)


def test_training_lowers_the_loss_and_beats_chance(trained):
    _, _, accuracies, _, _, _ = trained
    assert accuracies["last_loss"] < 0.8 * accuracies["first_loss"]  # measured: 36.0 -> 22.6
    # The background is one flat colour filling most of the image: the easiest head (chance 1/4).
    assert accuracies["test"]["background"] > 0.5  # measured 0.74
    assert set(accuracies) == {"test", "heldout", "train_seconds", "first_loss", "last_loss"}
    for name in fc.CATEGORICAL_HEADS:
        assert 0.0 <= accuracies["heldout"][name] <= 1.0


def test_initial_loss_is_the_closed_form():
    """At initialisation with zero heads the loss is sum_k ln K_k + ln 2 * (labels of the multi-label heads)."""
    model = TINY.model(WORLD)
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if "head_" in jax.tree_util.keystr(path) else x, params)
    factors = shapes.sample_factors(WORLD, 0, range(8), "all")
    images, targets = shapes.render(WORLD, factors), shapes.targets(WORLD, factors)
    outputs, _ = model.apply({"params": params}, images)
    loss, _ = fc.factor_loss(outputs, targets)
    sizes = fc.head_sizes(WORLD)
    expected = sum(np.log(sizes[h]) for h in fc.CATEGORICAL_HEADS) + np.log(2) * sum(
        sizes[h] for h in fc.MULTI_LABEL_HEADS)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_cache_hit_returns_the_same_params_without_training(trained, monkeypatch):
    model, params, accuracies, path, cache, data = trained

    def no_training(*args, **kwargs):
        raise AssertionError("trained again despite a cached classifier")

    monkeypatch.setattr(fc, "train_factor_classifier", no_training)
    _, again, accuracies_again, path_again = fc.load_or_train_factor_classifier(
        WORLD, TINY, cache_dir=cache, data_cache_dir=data, progress=False)
    assert path_again == path and accuracies_again == accuracies
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def real_images(count=96, seed=5):
    return shapes.render(WORLD, shapes.sample_factors(WORLD, seed, range(count), "train"))


def test_scores_of_the_real_images_against_themselves(trained):
    model, params, _, _, _, _ = trained
    images = real_images()
    scores = fc.FactorScores(model, params, images)
    sums = jax.jit(scores.sums)(jnp.asarray(images), jnp.ones(len(images)))
    metrics = scores.metrics(sums)
    assert abs(metrics["frechet_distance"]) < 1e-3
    assert scores.frechet_distance_of(images) == pytest.approx(metrics["frechet_distance"], abs=1e-3)
    assert metrics["factor_match"] < 1e-5
    assert 1.0 <= metrics["classifier_score"] <= 32.0 + 1e-6
    assert 0.0 <= metrics["heldout_pair_rate"] <= 1.0
    # Others' images are further away and their marginals differ.
    other = shapes.render(WORLD, shapes.sample_factors(shapes.ShapesWorld(image_size=16, min_objects=3),
                                                       9, range(96), "heldout"))
    other_metrics = scores.metrics(jax.jit(scores.sums)(jnp.asarray(other), jnp.ones(96)))
    assert other_metrics["frechet_distance"] > 10 * abs(metrics["frechet_distance"]) + 1e-3
    assert other_metrics["factor_match"] > 0.01


def test_sums_add_across_batches_and_padding_weighs_nothing(trained):
    model, params, _, _, _, _ = trained
    images = real_images()
    scores = fc.FactorScores(model, params, images)
    labels = jnp.asarray(np.arange(96) % 4)
    sums = jax.jit(scores.sums)
    first = sums(jnp.asarray(images[:40]), jnp.ones(40), labels[:40])
    padded = np.concatenate([images[40:], np.zeros((8,) + images.shape[1:], np.float32)])
    second = sums(jnp.asarray(padded), jnp.concatenate([jnp.ones(56), jnp.zeros(8)]),
                  jnp.concatenate([labels[40:], jnp.zeros(8, jnp.int32)]))
    whole = sums(jnp.asarray(images), jnp.ones(96), labels)
    assert set(whole) == set(first)
    for key in whole:
        np.testing.assert_allclose(np.asarray(first[key]) + np.asarray(second[key]), np.asarray(whole[key]),
                                   rtol=1e-4, atol=1e-3)
    together = scores.metrics(jax.tree_util.tree_map(lambda a, b: a + b, first, second))
    assert together["frechet_distance"] == pytest.approx(scores.metrics(whole)["frechet_distance"], abs=1e-2)
    assert "label_accuracy" in together


def test_binary_attributes_and_features(trained):
    model, params, _, _, _, _ = trained
    images = real_images(40)
    attributes, confidence = fc.binary_attributes(model, params, images)
    assert 15 <= len(attributes) <= 20 and set(attributes) == set(confidence)
    for name in attributes:
        assert attributes[name].shape == (40,) and attributes[name].dtype == bool
        assert np.all((confidence[name] >= 0.5) & (confidence[name] <= 1.0))
    feats = fc.features(model, params, images, batch_size=16)  # padded last batch
    assert feats.shape == (40, TINY.feature_dim)
    np.testing.assert_allclose(feats[:16], fc.features(model, params, images[:16]), rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="images of shape"):
        fc.features(model, params, np.zeros((2, 32, 32, 3), np.float32))


def test_accuracies_by_hand():
    probs = {name: np.eye(k)[[0, 1]] for name, k in fc.head_sizes(WORLD).items() if name in fc.CATEGORICAL_HEADS}
    probs.update({name: np.array([[0.9] + [0.1] * (k - 1), [0.1] * k]) for name, k in fc.head_sizes(WORLD).items()
                  if name in fc.MULTI_LABEL_HEADS})
    targets = {name: np.array([0, 0]) for name in fc.CATEGORICAL_HEADS}
    targets.update({name: np.array([[1.0] + [0.0] * (k - 1), [1.0] + [0.0] * (k - 1)])
                    for name, k in fc.head_sizes(WORLD).items() if name in fc.MULTI_LABEL_HEADS})
    acc = fc.accuracies(probs, targets)
    assert acc["count"] == 0.5 and acc["main_pair"] == 0.5
    assert acc["shape_present_exact"] == 0.5 and acc["shape_present_label"] == pytest.approx(7 / 8)


def test_bad_settings_are_named():
    with pytest.raises(DataError, match="steps must be positive"):
        fc.FactorSettings(steps=0)
    with pytest.raises(DataError, match="learning_rate"):
        fc.FactorSettings(learning_rate=0.0)
