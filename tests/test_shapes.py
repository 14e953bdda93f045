import math
import os

import numpy as np
import pytest

from aigc_jax.data import shapes
from aigc_jax.data.text import DataError

WORLD = shapes.ShapesWorld()


def one_object(world, shape, radius, x, y, rotation=0.0, colour="white", background="black"):
    """Factors of a single scene holding one object, built by hand."""
    m = world.max_objects
    factors = {"background": np.array([shapes.BACKGROUNDS.index(background)], np.int32),
               "count": np.array([1], np.int32)}
    for key in ("shape", "colour", "size"):
        factors[key] = np.full((1, m), -1, np.int32)
    for key in ("radius", "area", "x", "y", "rotation"):
        factors[key] = np.zeros((1, m), np.float32)
    factors["mask"] = np.zeros((1, m), bool)
    for key, value in (("shape", shapes.SHAPES.index(shape)), ("colour", shapes.COLOURS.index(colour)),
                       ("size", 1), ("radius", radius), ("x", x), ("y", y), ("rotation", rotation),
                       ("mask", True), ("area", shapes.AREA_FACTOR[shape] * radius ** 2)):
        factors[key][0, 0] = value
    return factors


def test_a_scene_is_the_same_whatever_batch_it_is_drawn_in():
    alone = shapes.sample_factors(WORLD, 7, [5], "all")
    among = shapes.sample_factors(WORLD, 7, [11, 5, 0, 3], "all")
    for key in alone:
        np.testing.assert_array_equal(alone[key][0], among[key][1])
    pixels_alone = shapes.render(WORLD, alone)[0]
    pixels_among = shapes.render(WORLD, among, chunk=3)[1]
    np.testing.assert_array_equal(pixels_alone, pixels_among)  # bit-identical
    other_seed = shapes.sample_factors(WORLD, 8, [5], "all")
    assert not np.array_equal(shapes.render(WORLD, other_seed)[0], pixels_alone)


def test_train_and_test_streams_differ():
    train = shapes.sample_factors(WORLD, 0, range(50), "train")
    test = shapes.sample_factors(WORLD, 0, range(50), "test")
    assert not np.array_equal(train["x"], test["x"])


@pytest.mark.parametrize("shape,area_over_r2", [
    ("circle", math.pi), ("square", 2.0), ("triangle", 3 * math.sqrt(3) / 4),
    ("star", 5 * shapes.STAR_INNER_RATIO * math.sin(math.pi / 5))])  # 2n triangles (r, r_in, pi/n)
def test_rendered_area_matches_the_closed_form(shape, area_over_r2):
    radius = 7.3
    factors = one_object(WORLD, shape, radius, 15.6, 16.2, rotation=0.3)
    image = shapes.render(WORLD, factors)[0]  # white on black: intensity = covered fraction
    area = float(image[..., 0].sum())
    assert area == pytest.approx(area_over_r2 * radius ** 2, rel=0.02)


def test_anti_aliasing_gives_intermediate_edge_values():
    factors = one_object(WORLD, "circle", 6.3, 15.6, 16.2)
    smooth = shapes.render(WORLD, factors)[0, ..., 0]
    partial = (smooth > 0.02) & (smooth < 0.98)
    assert partial.sum() > 20  # the circle's edge: about its circumference in pixels
    hard = shapes.render(shapes.ShapesWorld(supersample=1), factors)[0, ..., 0]
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert abs(smooth.sum() - hard.sum()) < 0.05 * smooth.sum()


def test_rotation_turns_the_shape_and_a_symmetry_period_does_not():
    base = shapes.render(WORLD, one_object(WORLD, "triangle", 8.0, 16, 16, rotation=0.2))
    turned = shapes.render(WORLD, one_object(WORLD, "triangle", 8.0, 16, 16, rotation=0.2 + math.pi / 3))
    full = shapes.render(WORLD, one_object(WORLD, "triangle", 8.0, 16, 16, rotation=0.2 + 2 * math.pi / 3))
    assert np.abs(base - turned).max() > 0.5
    np.testing.assert_allclose(base, full, atol=0.07)  # equal up to sub-pixel rounding of angles


def test_splits_obey_the_held_out_pairs():
    held = set(WORLD.heldout_pair_indices)
    train = shapes.sample_factors(WORLD, 1, range(400), "train")
    pairs = shapes.targets(WORLD, train)["pair_present"]
    assert pairs[:, sorted(held)].sum() == 0
    heldout = shapes.sample_factors(WORLD, 1, range(400), "heldout")
    pairs = shapes.targets(WORLD, heldout)["pair_present"]
    assert np.all(pairs[:, sorted(held)].sum(axis=1) >= 1)
    everything = shapes.targets(WORLD, shapes.sample_factors(WORLD, 1, range(400), "all"))["pair_present"]
    assert 0 < everything[:, sorted(held)].any(axis=1).mean() < 1


def test_objects_lie_inside_the_image_barely_overlap_and_differ_in_area():
    f = shapes.sample_factors(WORLD, 2, range(500), "all")
    s = WORLD.image_size
    overlapping = 0
    for n in range(500):
        k = f["count"][n]
        assert f["mask"][n, :k].all() and not f["mask"][n, k:].any()
        r, x, y = f["radius"][n, :k], f["x"][n, :k], f["y"][n, :k]
        assert np.all(x - r >= 0) and np.all(x + r <= s) and np.all(y - r >= 0) and np.all(y + r <= s)
        for i in range(k):
            for j in range(i):
                distance = math.hypot(x[i] - x[j], y[i] - y[j])
                overlapping += distance < r[i] + r[j]  # circumcircles: the fallback when nothing fits
                assert distance >= 0.65 * (r[i] + r[j])
                a, b = sorted([f["area"][n, i], f["area"][n, j]])
                assert b >= shapes.MIN_AREA_RATIO * a * (1 - 1e-5)
    assert overlapping <= 10  # measured: 42 pairs in 5,000 scenes
    sizes, mask = f["size"][f["mask"]], f["mask"]
    low = np.array([WORLD.radius_range(b)[0] for b in sizes]) - 1e-4
    high = np.array([WORLD.radius_range(b)[1] for b in sizes]) + 1e-4
    area_radius = np.sqrt(f["area"][mask] / np.pi)
    assert np.all((area_radius >= low) & (area_radius <= high))
    area_factor = np.array([shapes.AREA_FACTOR[shapes.SHAPES[k]] for k in f["shape"][mask]])
    np.testing.assert_allclose(f["area"][mask], area_factor * f["radius"][mask] ** 2, rtol=1e-5)


def test_targets_name_the_largest_object_and_every_pair():
    f = shapes.sample_factors(WORLD, 3, range(200), "all")
    t = shapes.targets(WORLD, f)
    for n in range(200):
        k = f["count"][n]
        main = int(np.argmax(f["area"][n, :k]))
        assert t["shape"][n] == f["shape"][n, main] and t["colour"][n] == f["colour"][n, main]
        assert t["size"][n] == f["size"][n, main] and t["count"][n] == k - WORLD.min_objects
        column, row = int(f["x"][n, main] * 3 / 32), int(f["y"][n, main] * 3 / 32)
        assert t["position"][n] == row * 3 + column
        pairs = {int(f["shape"][n, i]) * 8 + int(f["colour"][n, i]) for i in range(k)}
        assert set(np.nonzero(t["pair_present"][n])[0]) == pairs
        assert set(np.nonzero(t["shape_present"][n])[0]) == {p // 8 for p in pairs}
        assert set(np.nonzero(t["colour_present"][n])[0]) == {p % 8 for p in pairs}


@pytest.mark.parametrize("template", range(shapes.NUM_TEMPLATES))
def test_captions_parse_back_to_their_scene(template):
    f = shapes.sample_factors(WORLD, 4, range(300), "all")
    scenes = [shapes.scene_of(f, n) for n in range(300)]
    for n, scene in enumerate(scenes):
        parsed = shapes.parse_caption(shapes.caption(scene, template))
        assert shapes.caption_agrees(parsed, scene), shapes.caption(scene, template)
    # The check is not vacuous: a caption rarely fits another scene.
    wrong = sum(shapes.caption_agrees(shapes.parse_caption(shapes.caption(scenes[n], template)), scenes[n + 1])
                for n in range(299))
    assert wrong < 10


def test_caption_examples():
    f = one_object(WORLD, "star", 8.0, 10, 10, colour="green", background="grey")
    f["size"][0, 0] = 2
    scene = shapes.scene_of(f, 0)
    assert shapes.caption(scene, 0) == "a large green star"
    assert shapes.caption(scene, 1) == "a large green star on a grey background"
    assert shapes.caption(scene, 2) == "one object on a grey background: a large green star"
    two = shapes.scene_of(shapes.sample_factors(shapes.ShapesWorld(min_objects=2, max_objects=2), 0, [0]), 0)
    rel = shapes.relation(two, 0, 1)
    assert shapes.relation(two, 1, 0) == shapes.INVERSE_RELATION[rel]
    parsed = shapes.parse_caption(shapes.caption(two, 2))
    assert parsed["relation"] == (0, shapes.INVERSE_RELATION[rel], 1) and parsed["count"] == 2
    with pytest.raises(DataError, match="no object phrase"):
        shapes.parse_caption("a picture of nothing")
    with pytest.raises(DataError, match="template"):
        shapes.caption(scene, shapes.NUM_TEMPLATES)


def test_dataset_cache_round_trip_and_a_corrupt_file_is_rendered_again(tmp_path):
    world = shapes.ShapesWorld(image_size=16)
    images, factors = shapes.make_dataset(world, 0, 40, "train", cache_dir=str(tmp_path), progress=False)
    assert images.dtype == np.uint8 and images.shape == (40, 16, 16, 3)
    np.testing.assert_array_equal(images, shapes.to_uint8(shapes.render(world, factors)))
    (path,) = [p for p in os.listdir(tmp_path)]
    assert not path.endswith(".tmp")
    again, factors_again = shapes.make_dataset(world, 0, 40, "train", cache_dir=str(tmp_path), progress=False)
    np.testing.assert_array_equal(again, images)
    for key in factors:
        np.testing.assert_array_equal(factors_again[key], factors[key])
    (tmp_path / path).write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="unreadable"):
        rendered, _ = shapes.make_dataset(world, 0, 40, "train", cache_dir=str(tmp_path), progress=False)
    np.testing.assert_array_equal(rendered, images)
    other, _ = shapes.make_dataset(world, 1, 40, "train", cache_dir=str(tmp_path), progress=False)
    assert not np.array_equal(other, images) and len(os.listdir(tmp_path)) == 2


@pytest.mark.parametrize("settings,message", [
    ({"image_size": 8}, "at least 16"),
    ({"supersample": 0}, "supersample"),
    ({"min_objects": 3, "max_objects": 2}, "min_objects"),
    ({"max_objects": 9}, "max_objects"),
    ({"image_size": 32.0}, "integer"),
    ({"heldout_pairs": (("circle", "purple"),)}, "not a \\(shape, colour\\) pair"),
    ({"heldout_pairs": (("circle", "red"), ("circle", "red"))}, "repeats"),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(DataError, match=message):
        shapes.ShapesWorld(**settings)


def test_bad_requests_are_named(tmp_path):
    with pytest.raises(DataError, match="unknown shapes split 'valid'"):
        shapes.sample_factors(WORLD, 0, [0], "valid")
    with pytest.raises(DataError, match="holds none out"):
        shapes.sample_factors(shapes.ShapesWorld(heldout_pairs=()), 0, [0], "heldout")
    with pytest.raises(DataError, match="positive number"):
        shapes.make_dataset(WORLD, 0, 0, cache_dir=str(tmp_path))
