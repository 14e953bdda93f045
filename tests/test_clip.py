"""The contrastive image-text model: losses against hand computations, the temperature clamp,
the text encoder's pooling, zero-shot and retrieval on hand-made embeddings, caption tokens,
the data sources, and 8 simulated devices against one."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from aigc_jax.config import ConfigError, load_config
from aigc_jax.data import captions
from aigc_jax.data import shapes
from aigc_jax.data.text import DataError
from aigc_jax.families.clip import data as clip_data
from aigc_jax.families.clip import losses, model as clip_model, zero_shot
from tests.conftest import config_path
from tests.test_parallel import run_worker


def unit(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_info_nce_equals_the_hand_computation_and_is_symmetric_in_its_gradients():
    rng = np.random.default_rng(0)
    u, v = unit(rng, (5, 3)), unit(rng, (5, 3))
    log_scale = 1.3
    loss, logits = losses.info_nce(jnp.asarray(u), jnp.asarray(v), log_scale)
    s = math.exp(log_scale)
    hand_i2t = hand_t2i = 0.0
    for i in range(5):
        row = [s * float(u[i] @ v[j]) for j in range(5)]
        col = [s * float(u[j] @ v[i]) for j in range(5)]
        hand_i2t += -(row[i] - math.log(sum(math.exp(r) for r in row)))
        hand_t2i += -(col[i] - math.log(sum(math.exp(c) for c in col)))
    np.testing.assert_allclose(float(loss), 0.5 * (hand_i2t + hand_t2i) / 5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(logits), s * u @ v.T, rtol=1e-6)
    # Swapping the two modalities leaves the loss unchanged, so the gradient with respect to the
    # images at (u, v) is the gradient with respect to the texts at (v, u).
    grad_u, grad_v = jax.grad(lambda a, b: losses.info_nce(a, b, log_scale)[0], argnums=(0, 1))(u, v)
    swap_u, swap_v = jax.grad(lambda a, b: losses.info_nce(a, b, log_scale)[0], argnums=(0, 1))(v, u)
    np.testing.assert_allclose(float(losses.info_nce(v, u, log_scale)[0]), float(loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad_u), np.asarray(swap_v), atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad_v), np.asarray(swap_u), atol=1e-6)
    # Matched pairs far apart from the rest: the loss goes to zero as the scale grows.
    eye = jnp.eye(4)
    assert float(losses.info_nce(eye, eye, math.log(100.0))[0]) < 1e-6


def test_sigmoid_loss_equals_the_hand_computation():
    rng = np.random.default_rng(1)
    u, v = unit(rng, (4, 3)), unit(rng, (4, 3))
    log_scale, bias = math.log(10.0), -3.0
    loss, _ = losses.sigmoid_loss(jnp.asarray(u), jnp.asarray(v), log_scale, bias)
    hand = 0.0
    for i in range(4):
        for j in range(4):
            z = 1.0 if i == j else -1.0
            logit = 10.0 * float(u[i] @ v[j]) + bias
            hand += math.log(1.0 + math.exp(-z * logit))
    np.testing.assert_allclose(float(loss), hand / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown contrastive loss 'hinge'"):
        losses.contrastive_loss("hinge", u, v, 0.0, 0.0)


def test_the_logit_scale_stays_in_its_clamp_while_training_pushes_it():
    assert float(clip_model.clamp_log_scale(jnp.asarray(9.0))) == pytest.approx(math.log(100.0))
    assert float(clip_model.clamp_log_scale(jnp.asarray(-4.0))) == 0.0
    model = clip_model.CLIP(image_encoder="cnn", image_channels=3, vocab_size=10, max_text_length=6, embed_dim=4,
                            width=8, text_depth=1, num_heads=2, cnn_widths=(4,))
    images, tokens = jnp.ones((2, 8, 8, 3)), jnp.asarray([[1, 5, 2, 0, 0, 0], [1, 6, 7, 2, 0, 0]])
    params = model.init(jax.random.key(0), images, tokens)["params"]
    scale = lambda p: model.apply({"params": p}, method="scalars")[0]  # noqa: E731
    for _ in range(50):  # plain ascent on the scale with a huge step
        params = dict(params, log_scale=params["log_scale"] + 10.0 * jax.grad(lambda p: scale(p))(params)["log_scale"])
    assert math.exp(float(scale(params))) <= 100.0 + 1e-4
    assert float(params["log_scale"]) > math.log(100.0)  # the raw parameter moved past, the used scale did not


def test_text_embedding_pools_at_end_of_text_and_ignores_padding_and_causal_future():
    model = clip_model.TextEncoder(vocab_size=12, max_length=8, width=16, depth=2, num_heads=2, causal=True)
    a = jnp.asarray([[1, 5, 6, 2, 0, 0, 0, 0]])
    params = model.init(jax.random.key(0), a)["params"]
    pooled, outputs = model.apply({"params": params}, a)
    b = a.at[0, 5].set(7)  # a word after EOS (where padding would be): no effect on the EOS output
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, b)[0]), np.asarray(pooled), atol=1e-6)
    np.testing.assert_allclose(np.asarray(pooled), np.asarray(outputs[0, 3][None]), atol=1e-6)
    c = a.at[0, 2].set(8)  # a word before EOS changes it
    assert np.abs(np.asarray(model.apply({"params": params}, c)[0]) - np.asarray(pooled)).max() > 1e-4
    bidirectional = clip_model.TextEncoder(12, 8, 16, 2, 2, causal=False)
    params = bidirectional.init(jax.random.key(1), a)["params"]
    pooled = bidirectional.apply({"params": params}, a)[0]
    d = jnp.asarray([[1, 5, 6, 2, 0, 0, 3, 3]])  # nothing after EOS is attended to
    np.testing.assert_allclose(np.asarray(bidirectional.apply({"params": params}, d)[0]), np.asarray(pooled),
                               atol=1e-6)


def test_the_cnn_extra_convolutions_are_residual_and_the_default_stacks_two_per_resolution():
    """With the extra convolutions' kernels at zero, GroupNorm gives its shift (0), GELU(0) = 0, and
    the two-convolution encoder computes exactly the one-convolution encoder with the same weights."""
    images = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    one, two = clip_model.CNNEncoder((4, 8), 1), clip_model.CNNEncoder((4, 8), 2)
    params = two.init(jax.random.key(0), images)["params"]
    assert sorted(params) == ["conv0", "conv0_1", "conv1", "conv1_1", "final_norm", "norm0", "norm0_1", "norm1", "norm1_1"]
    zeroed = {k: ({"kernel": jnp.zeros_like(v["kernel"])} if k.endswith("_1") and k.startswith("conv") else v)
              for k, v in params.items()}
    shared = {k: v for k, v in params.items() if not k.endswith("_1")}
    for got, want in zip(two.apply({"params": zeroed}, images), one.apply({"params": shared}, images)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(two.apply({"params": params}, images)[1], one.apply({"params": shared}, images)[1])
    assert load_config(config_path("clip.py")).model.cnn_convs_per_stage == 2


def test_zero_shot_on_a_linearly_separable_toy_is_perfect_and_chance_without_signal():
    rng = np.random.default_rng(2)
    directions = np.eye(6, dtype=np.float32)[:3]  # class k's prompts point along axis k
    prompts = np.concatenate([directions + 0.1 * rng.standard_normal((3, 6)) for _ in range(4)])
    prompt_classes = np.tile(np.arange(3), 4)
    classes = zero_shot.class_embeddings(zero_shot.normalize(prompts), prompt_classes, 3)
    labels = rng.integers(0, 3, 300)
    nuisance = np.concatenate([0.05 * rng.standard_normal((300, 3)), rng.standard_normal((300, 3))], axis=1)
    images = zero_shot.normalize(directions[labels] + nuisance.astype(np.float32))  # separable: a margin on axes 0-2
    assert np.mean(zero_shot.classify(images, classes) == labels) == 1.0
    noise = zero_shot.normalize(rng.standard_normal((3000, 6)).astype(np.float32))
    assert abs(np.mean(zero_shot.classify(noise, classes) == rng.integers(0, 3, 3000)) - 1 / 3) < 0.05
    with pytest.raises(ValueError, match="class 2 has no prompt"):
        zero_shot.class_embeddings(prompts[:2], np.arange(2), 3)


def test_recall_counts_identical_captions_as_hits():
    images = np.eye(4, dtype=np.float32)
    texts = np.eye(4, dtype=np.float32)[[1, 0, 2, 3]]  # image 0's nearest text is text 1, and vice versa
    distinct = zero_shot.recall_at_k(images, texts, ["a", "b", "c", "d"], ks=(1, 2))
    assert distinct["i2t_r@1"] == 0.5 and distinct["t2i_r@1"] == 0.5 and distinct["i2t_r@2"] == 1.0
    same = zero_shot.recall_at_k(images, texts, ["a", "a", "c", "d"], ks=(1,))
    assert same["i2t_r@1"] == 1.0 and same["t2i_r@1"] == 1.0


def test_shapes_prompts_cover_every_value_and_parse_to_their_factors():
    prompts = zero_shot.shapes_prompts()
    assert len(prompts) == 4 * 8 * 3 * 5
    for text, values in prompts[:40]:
        parsed = shapes.parse_caption(text)
        (obj,) = parsed["objects"]
        assert (obj["shape"], obj["colour"], obj["size"]) == (shapes.SHAPES[values["shape"]],
                                                              shapes.COLOURS[values["colour"]],
                                                              shapes.SIZES[values["size"]])
        if values["background"] is not None:
            assert parsed["background"] == shapes.BACKGROUNDS[values["background"]]


def test_caption_vocabulary_round_trip_unknown_words_and_paraphrases():
    vocab = captions.CaptionVocab.from_texts(["a small red circle, and a big box: two objects"])
    ids = vocab.encode("a small red circle, and a big box", length=16)
    assert ids[0] == captions.BOS and captions.EOS in ids and ids[-1] == captions.PAD
    assert vocab.decode(ids) == "a small red circle, and a big box"
    with pytest.raises(captions.UnknownWordError, match="purple, triangle"):
        vocab.encode("a purple triangle")
    with pytest.raises(ValueError, match="exceeds the context of 4"):
        vocab.encode("a small red circle", length=4)
    text = "a small red circle above a large blue square on a grey background"
    first = captions.paraphrase(text, np.random.default_rng(5), 1.0)
    assert first == captions.paraphrase(text, np.random.default_rng(5), 1.0) and first != text
    assert all(word not in first.split() for word in ("small", "large", "circle", "square", "above"))
    assert captions.paraphrase(text, np.random.default_rng(5), 0.0) == text


@pytest.fixture(scope="module")
def tiny_shapes():
    return clip_data.load_caption_data(load_config(config_path("clip.py:tiny"), []))


def test_shapes_pairs_hold_out_pairs_and_every_caption_fits_the_vocabulary(tiny_shapes):
    data = tiny_shapes
    assert data.image_shape == (16, 16, 3) and -1.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    batch = data.train_batch(0, 3, 64, 32)
    np.testing.assert_array_equal(batch["tokens"], data.train_batch(0, 3, 64, 32)["tokens"])
    texts = [data.vocab.decode(t) for t in batch["tokens"]]
    assert any(w in " ".join(texts).split() for w in ("little", "tiny", "big", "over", "under", "disc", "box"))
    held = {shapes.pair_index(shapes.SHAPES.index(s), shapes.COLOURS.index(c)) for s, c in shapes.DEFAULT_HELDOUT_PAIRS}
    f = data.train_factors
    pairs = shapes.pair_index(f["shape"][f["mask"]], f["colour"][f["mask"]])
    assert not held & set(pairs.tolist())
    heldout = {s.name: s for s in data.retrieval_sets}["heldout"]
    h = heldout.factors
    assert all(held & set(shapes.pair_index(h["shape"][n][h["mask"][n]], h["colour"][n][h["mask"][n]]).tolist())
               for n in range(len(heldout.captions)))
    # Every template and paraphrase of the longest scenes fits the default context.
    rng = np.random.default_rng(0)
    crowded = shapes.sample_factors(shapes.ShapesWorld(min_objects=3, max_objects=3), 0, range(100), "train")
    lengths = [len(data.vocab.encode(clip_data.shapes_caption(crowded, n, rng, 1.0))) for n in range(100)
               for _ in range(4)]
    assert max(lengths) <= load_config(config_path("clip.py"), []).model.max_text_length


def test_digit_captions_and_your_own_pairs_by_path(tmp_path):
    data = clip_data.load_caption_data(load_config(config_path("clip.py:digits"), []))
    assert data.source == "digits" and data.image_shape == (8, 8, 1)
    text = data.vocab.decode(data.train_batch(0, 0, 1, 12)["tokens"][0])
    assert text.split()[-1] in clip_data.DIGIT_WORDS
    for k in range(3):
        Image.fromarray(np.full((20, 20, 3), 60 * k, np.uint8)).save(tmp_path / f"im{k}.png")
    (tmp_path / "pairs.tsv").write_text("im0.png\ta dark square\nim1.png\ta grey square\nim2.png\ta light square\n")
    config = load_config(config_path("clip.py:tiny"), [f"data.pairs_path={tmp_path / 'pairs.tsv'}",
                                                      "data.test_fraction=0.34"])
    own = clip_data.load_caption_data(config)
    assert own.image_shape == (16, 16, 3) and len(own.train_images) == 2 and len(own.retrieval_sets[0].captions) == 1
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "missing.png", "caption": "x"}) + "\n")
    with pytest.raises(DataError, match="missing.png' does not exist"):
        clip_data.read_pairs_file(str(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.tsv").write_text("im0.png has no tab\n")
    with pytest.raises(DataError, match="bad.tsv:1: expected 'image<TAB>caption'"):
        clip_data.read_pairs_file(str(tmp_path / "bad.tsv"))


def test_config_errors_name_the_field():
    from aigc_jax import families
    for override, field in (("model.image_encoder=resnet", "model.image_encoder"), ("loss.name=hinge", "loss.name"),
                            ("model.num_heads=5", "model.num_heads")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            families.check_config(load_config(config_path("clip.py:tiny"), [override]))


def test_eight_devices_compute_the_single_device_steps_with_gathered_embeddings(tmp_path):
    out = tmp_path / "clip.json"
    run_worker(8, "clip", out)
    result = json.loads(out.read_text())
    assert result["devices"] == 8 and result["all_gather"]
    assert "data" in result["batch_sharding"]
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-5
    # Adam turns float reordering in near-zero gradients into visible steps; 3 steps at lr ~1e-3.
    assert result["max_diff"] < 1e-4, result


@pytest.mark.xdist_group("tiny_clip_run")
def test_a_trained_run_reports_its_table_and_ranks_texts_for_any_image(tiny_clip_run, tmp_path):
    from experiments import clip as clip_cli
    text = clip_cli.table([tiny_clip_run], markdown=True)
    assert "zs held-out pair" in text and "| 0.031 |" in text  # chance of the 32 pairs
    last = clip_cli.final_eval(tiny_clip_run)
    assert 0.0 <= last["seen_i2t_r@5"] <= 1.0 and last["step"] == 6
    twice = clip_cli.table([tiny_clip_run, tiny_clip_run], markdown=True, mean=True).splitlines()
    assert "swap held-out" in twice[0] and twice[-1].startswith("| mean +- sd (2 runs)")
    assert f"| {last['heldout_swap_shape']:.3f} +- 0.000 |" in twice[-1]
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(tmp_path / "any.png")
    texts = ["a small red circle", "a large blue star on a grey background", "two objects on a navy background"]
    ranked = clip_cli.rank_texts(tiny_clip_run, str(tmp_path / "any.png"), texts)
    assert sorted(t for _, t in ranked) == sorted(texts) and abs(sum(p for p, _ in ranked) - 1.0) < 1e-5
    assert [p for p, _ in ranked] == sorted((p for p, _ in ranked), reverse=True)
    with pytest.raises(captions.UnknownWordError, match="purple"):
        clip_cli.rank_texts(tiny_clip_run, str(tmp_path / "any.png"), ["a purple circle", "a red circle"])


@pytest.mark.xdist_group("tiny_clip_run")
def test_linear_probe_separates_separable_features_and_reports_every_factor(tiny_clip_run, tiny_supervised_run):
    from aigc_jax.families.clip import linear_probe
    from experiments import clip as clip_cli
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    x = np.eye(3)[y] * 5 + rng.standard_normal((300, 3)) * 0.3
    assert linear_probe.fit_and_score(x[:200], y[:200], {"test": (x[200:], y[200:])})["test"] == 1.0
    from aigc_jax.files import read_json
    from aigc_jax.train.loop import SUMMARY_FILE
    summary = read_json(f"{tiny_supervised_run}/{SUMMARY_FILE}", "run summary")
    assert summary["eval_metric"] == "mean_error" and 0.0 <= summary["final_eval"]["shape_acc"] <= 1.0
    text = clip_cli.probe_table([tiny_clip_run, tiny_supervised_run], train_count=96, test_count=32, markdown=True)
    rows = text.splitlines()
    assert len(rows) == 6 and "clip (step 6)" in rows[2] and "initialisation" in rows[3]
    assert "clip_supervised (step 6)" in rows[4]
    assert "heldout colour" in rows[0] and "heldout pair" not in rows[0]  # an unseen class cannot be probed
