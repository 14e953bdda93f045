"""The image captioner: cached decoding against the full forward pass, beam and sampling through
the shared decoders, a model that memorises a few captions writes them back, the global image
vector reaching every position, scoring captions by parsing them, and the command line on a
trained run."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from aigc_jax.config import SAVED_CONFIG_FILE, ConfigError, load_config

from aigc_jax.data import captions
from aigc_jax.data import shapes
from aigc_jax.families.clip import captioner_decoding, captioner_task
from aigc_jax.families.clip.captioner_model import Captioner, from_config
from aigc_jax.families.clip.captioner_task import caption_scores
from aigc_jax.train.restore import restore_params
from tests.conftest import train_tiny_run

TEXTS = ["a small red circle", "a large blue square on a grey background", "a medium white star",
         "two objects on a navy background: a small cyan triangle above a large orange circle"]


@pytest.fixture(scope="module")
def memorised():
    """A tiny captioner trained to map 4 fixed images to 4 captions (Adam, full batch)."""
    vocab = captions.CaptionVocab.from_texts(TEXTS)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32))
    tokens = jnp.asarray(vocab.encode_batch(TEXTS, 20))
    model = Captioner(image_encoder="vit", vocab_size=vocab.size, max_length=20, width=32, vision_depth=1,
                      decoder_depth=2, num_heads=2, patch_size=4)
    params = model.init(jax.random.key(0), images, tokens[:, :-1])["params"]
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt):
        def loss(p):
            logits = model.apply({"params": p}, images, tokens[:, :-1])
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
            return jnp.sum(nll * (tokens[:, 1:] != captions.PAD)) / jnp.sum(tokens[:, 1:] != captions.PAD)
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    for _ in range(300):
        params, opt, value = step(params, opt)
    assert float(value) < 0.1  # nats per token: each caption far more likely than any other
    return model, params, vocab, images


def test_cached_decoding_gives_the_full_forward_pass_logits(memorised):
    model, params, vocab, images = memorised
    settings = captioner_decoding.sampling_settings(model, temperature=1.0, max_length=12)
    keys = jax.random.split(jax.random.key(3), 4)
    tokens, lengths, logprobs = captioner_decoding.sample(params, images, keys, model=model, settings=settings)
    inputs = jnp.concatenate([jnp.full((4, 1), captions.BOS), tokens[:, :-1]], axis=1)
    # PAD and BOS are never generated: the decoder renormalises over the other tokens.
    full = jax.nn.log_softmax(captioner_decoding._banned(model.apply({"params": params}, images, inputs)), axis=-1)
    want = jnp.take_along_axis(full, tokens[..., None], axis=-1)[..., 0]
    for row in range(4):
        n = int(lengths[row])
        np.testing.assert_allclose(np.asarray(logprobs[row, :n]), np.asarray(want[row, :n]), rtol=1e-4, atol=1e-5)


def test_a_memorised_captioner_writes_its_captions_back_by_beam_greedy_and_cold_sampling(memorised):
    model, params, vocab, images = memorised
    tokens, scores, logprobs = captioner_decoding.beam_search(params, images, model=model, beam_width=3)
    assert [vocab.decode(t) for t in np.asarray(tokens[:, 0])] == TEXTS
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # best first
    greedy = captioner_decoding.beam_search(params, images, model=model, beam_width=1)[0]
    assert [vocab.decode(t) for t in np.asarray(greedy[:, 0])] == TEXTS
    cold = captioner_decoding.sampling_settings(model, temperature=1e-4)
    sampled = captioner_decoding.sample(params, images, jax.random.split(jax.random.key(1), 4), model=model,
                                        settings=cold)[0]
    assert [vocab.decode(t) for t in np.asarray(sampled)] == TEXTS
    with pytest.raises(ValueError, match="max_length 40 must be in 1..19"):
        captioner_decoding.sampling_settings(model, max_length=40)


@pytest.mark.parametrize("encoder", ["cnn", "vit"])
def test_the_global_image_reaches_every_position_without_cross_attention(encoder):
    """With the cross-attention outputs zeroed, only the injected pooled vector carries the image:
    two images then give different logits at every position with global_image, the same without."""
    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32))
    inputs = jnp.asarray([[captions.BOS, 4, 5, 6]] * 2)
    for global_image in (True, False):
        model = Captioner(image_encoder=encoder, vocab_size=10, max_length=8, width=16, vision_depth=1,
                          decoder_depth=2, num_heads=2, cnn_widths=(8, 16), global_image=global_image)
        params = model.init(jax.random.key(0), images, inputs)["params"]
        for i in range(2):
            params[f"decoder_{i}"]["cross_attn"]["out"] = jax.tree_util.tree_map(
                jnp.zeros_like, params[f"decoder_{i}"]["cross_attn"]["out"])
        logits = np.asarray(model.apply({"params": params}, images, inputs))
        differs = np.abs(logits[0] - logits[1]).max(axis=-1)  # per position
        if global_image:
            assert np.all(differs > 1e-3), differs
        else:
            np.testing.assert_array_equal(differs, 0.0)


def test_runs_saved_before_the_global_image_field_load_as_cross_attention_only():
    config = load_config("configs/caption.py", [])
    assert from_config(config.model, 10).global_image
    old = config.model.to_dict()
    del old["global_image"]
    assert not from_config(ml_collections.ConfigDict(old), 10).global_image


def test_caption_scores_parse_captions_back_to_the_scene():
    world = shapes.ShapesWorld(min_objects=1, max_objects=1)
    factors = shapes.sample_factors(world, 0, range(3), "test")
    right = [shapes.caption(shapes.scene_of(factors, n), 1) for n in range(3)]
    scores = caption_scores(right, factors, "single_seen")
    assert scores["single_seen_exact"] == 1.0 and scores["single_seen_pair"] == 1.0
    assert scores["single_seen_background"] == 1.0
    scene = shapes.scene_of(factors, 0)
    other = shapes.COLOURS[(scene["colour"][0] + 1) % len(shapes.COLOURS)]
    wrong = right[0].replace(f" {shapes.COLOURS[scene['colour'][0]]} ", f" {other} ")
    scores = caption_scores([wrong, "red red red", right[2]], factors, "single_seen")
    assert scores["single_seen_parsed"] == pytest.approx(2 / 3) and scores["single_seen_exact"] == pytest.approx(1 / 3)
    assert scores["single_seen_colour"] == pytest.approx(1 / 3) and scores["single_seen_shape"] == pytest.approx(2 / 3)


def same_arrays(a, b) -> bool:
    same = jax.tree_util.tree_map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b)
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(jax.tree_util.tree_leaves(same))


@pytest.mark.xdist_group("tiny_clip_run")
def test_a_captioner_starts_from_a_contrastive_runs_image_encoder_and_refuses_one_that_differs(tiny_clip_run, tmp_path):
    theirs = restore_params(tiny_clip_run, task="clip").params["vision"]
    config = load_config("configs/caption.py:tiny", ["train.progress_bar=false", f"model.vision_from={tiny_clip_run}"])
    start = captioner_task.build(config, str(tmp_path)).init(jax.random.key(0)).params
    assert same_arrays(start["vision"], theirs)
    # Frozen (ClipCap): after training the encoder is still the contrastive run's (no update, no
    # weight decay), while the decoder moved.
    train_tiny_run("caption.py:tiny", str(tmp_path / "frozen"), f"model.vision_from={tiny_clip_run}",
                   "model.freeze_vision=true", "eval.caption_images=0")  # no beam search to compile
    trained = restore_params(str(tmp_path / "frozen"), task="caption").params
    assert same_arrays(trained["vision"], theirs) and not same_arrays(trained["bridge"], start["bridge"])
    for override, message in (("model.cnn_widths=(8, 8)", r"has another image encoder \(cnn, cnn_widths \(8, 16\).*conv1"),
                              ("data.image_size=24", r"was trained on \(16, 16, 3\) images, this run has \(24, 24, 3\)")):
        bad = load_config("configs/caption.py:tiny", [f"model.vision_from={tiny_clip_run}", override])
        with pytest.raises(ConfigError, match=message):
            captioner_task.build(bad, str(tmp_path))


@pytest.mark.xdist_group("tiny_clip_run")
def test_a_captioner_starts_from_a_supervised_runs_encoder_and_refuses_other_tasks(tiny_supervised_run, tmp_path):
    theirs = restore_params(tiny_supervised_run, task="clip_supervised").params["vision"]
    config = load_config("configs/caption.py:tiny", [f"model.vision_from={tiny_supervised_run}"])
    assert same_arrays(captioner_task.build(config, str(tmp_path)).init(jax.random.key(0)).params["vision"], theirs)
    other = tmp_path / "lm_run"
    other.mkdir()
    (other / SAVED_CONFIG_FILE).write_text(json.dumps({"task": "lm"}))
    bad = load_config("configs/caption.py:tiny", [f"model.vision_from={other}"])
    with pytest.raises(ConfigError, match=r"holds a 'lm' run; the captioner's encoder starts from one of \('clip', "
                                          r"'clip_supervised'\)"):
        captioner_task.build(bad, str(tmp_path))


@pytest.mark.xdist_group("tiny_clip_run")
def test_a_trained_run_captions_any_image_from_the_command_line(tiny_clip_run, tmp_path):
    from aigc_jax.families.clip.captioning import caption_image
    workdir, clip_run = str(tmp_path / "run"), tiny_clip_run
    summary = train_tiny_run("caption.py:tiny", workdir, f"eval.clip_workdir={clip_run}")
    assert summary["item_name"] == "captions"
    scores = summary["final_eval"]  # the captions' CLIP score beside the data's own captions'
    assert -100 <= scores["seen_clip_score"] <= 100 and -100 <= scores["seen_clip_score_reference"] <= 100
    assert scores["seen_clip_score"] != scores["seen_clip_score_reference"]
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "any.png")
    beams = caption_image(workdir, str(tmp_path / "any.png"), beam=3)
    assert len(beams) == 3 and beams[0][0] >= beams[1][0] >= beams[2][0]
    drawn = caption_image(workdir, str(tmp_path / "any.png"), temperature=1.0, samples=2, seed=4)
    assert drawn == caption_image(workdir, str(tmp_path / "any.png"), temperature=1.0, samples=2, seed=4)
    from aigc_jax.families.clip.captioning import grounding
    tables = grounding(workdir, batch_size=32)  # the run's own seen and held-out test pairs
    assert set(tables) == {"seen", "heldout"} and tables["heldout"]["colour"]["tokens"] >= 64
    assert tables["seen"]["colour"]["chance"] == pytest.approx(np.log(8))


def test_the_clip_score_cuts_a_caption_longer_than_the_clip_context():
    from types import SimpleNamespace
    from aigc_jax.families.clip.captioner_task import clip_score
    seen = []
    embedder = SimpleNamespace(length=5, images=lambda params, x: np.ones((len(x), 2)) / np.sqrt(2),
                               texts=lambda params, t: seen.extend(t) or np.ones((len(t), 2)) / np.sqrt(2))
    score = clip_score(SimpleNamespace(embedder=embedder, params=None), np.zeros((2, 4, 4, 3)),
                       ["on on on on on on", "a red circle"])
    assert seen == ["on on on", "a red circle"] and score == pytest.approx(100.0)
