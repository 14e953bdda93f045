"""The encoder-decoder Transformer: masks, causality, cached decoding, greedy and beam search."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.seq2seq import decoding
from aigc_jax.families.seq2seq.data import BOS, EOS, NUM_SPECIAL, PAD
from aigc_jax.families.seq2seq.model import Seq2SeqTransformer, sinusoidal_positions

VOCAB = NUM_SPECIAL + 6


def tiny_model(**overrides):
    fields = dict(vocab_size=VOCAB, max_source_length=10, max_target_length=8, num_encoder_layers=2,
                  num_decoder_layers=2, num_heads=2, embed_dim=16)
    fields.update(overrides)
    return Seq2SeqTransformer(**fields)


def init(model, seed=0):
    source = jnp.zeros((1, model.max_source_length), jnp.int32)
    inputs = jnp.zeros((1, model.max_target_length), jnp.int32)
    return model.init(jax.random.key(seed), source, inputs)["params"]


def jitted(model, method=None):
    """model.apply(params, *args) compiled (eager flax dispatch is slow on a loaded CPU)."""
    fn = model.apply if method is None else functools.partial(model.apply, method=method)
    return jax.jit(lambda params, *args, **kwargs: fn({"params": params}, *args, **kwargs))


def random_tokens(seed, shape):
    return jax.random.randint(jax.random.key(seed), shape, NUM_SPECIAL, VOCAB)


def padded(rows, width):
    out = np.full((len(rows), width), PAD, np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return jnp.asarray(out)


MODEL_VARIANTS = {
    "sinusoidal_shared": {},
    "learned_separate": dict(positions="learned", share_embeddings=False, mlp="swiglu", norm="rmsnorm"),
}


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_positions(7, 6)
    p, i = 5, 2  # channel pair (4, 5): rate 10000^(-4/6)
    assert table[p, 2 * i] == pytest.approx(np.sin(p / 10000 ** (2 * i / 6)), abs=1e-6)
    assert table[p, 2 * i + 1] == pytest.approx(np.cos(p / 10000 ** (2 * i / 6)), abs=1e-6)


@pytest.mark.parametrize("variant", ["learned_separate"])
def test_padding_does_not_change_any_non_padding_output(variant):
    """The same rows, padded to different widths and batched with different neighbours:
    encoder outputs at real tokens and all decoder logits at real positions are unchanged."""
    model = tiny_model(**MODEL_VARIANTS[variant])
    params = init(model)
    rows = [[3, 4, 5], [8, 7, 6, 5, 4, 3, 8]]
    narrow = padded(rows, 7)
    wide = padded(rows + [[5] * 10], 10)  # a third, longer row; more padding for the first two
    targets = [[4, 5, 1], [6, 6]]
    inputs_narrow = padded([[BOS] + t for t in targets], 4)
    inputs_wide = padded([[BOS] + t for t in targets] + [[BOS, 3]], 8)

    forward = jax.jit(lambda p, source, inputs: (model.apply({"params": p}, source, method=model.encode),
                                                 model.apply({"params": p}, source, inputs)))
    enc_narrow, logits_narrow = forward(params, narrow, inputs_narrow)
    enc_wide, logits_wide = forward(params, wide, inputs_wide)
    for i, (row, target) in enumerate(zip(rows, targets)):
        np.testing.assert_allclose(enc_narrow[i, :len(row)], enc_wide[i, :len(row)], atol=1e-5)
        np.testing.assert_allclose(logits_narrow[i, :len(target) + 1], logits_wide[i, :len(target) + 1], atol=1e-5)
    # The mask matters: the same tokens without padding masks (a non-PAD filler) change the outputs.
    _, changed = forward(params, jnp.where(narrow == PAD, 3, narrow), inputs_narrow)
    assert np.max(np.abs(changed[0, :4] - logits_narrow[0, :4])) > 1e-4  # 10x the tolerance above


@pytest.mark.parametrize("variant", ["sinusoidal_shared"])
def test_decoder_outputs_are_causal(variant):
    model = tiny_model(**MODEL_VARIANTS[variant])
    params = init(model)
    source = random_tokens(1, (2, 10))
    inputs = random_tokens(2, (2, 8))
    forward = jitted(model)
    logits = forward(params, source, inputs)
    for t in (0, 3, 6):
        changed = inputs.at[:, t + 1:].set(NUM_SPECIAL + (inputs[:, t + 1:] - NUM_SPECIAL + 1) % 6)
        other = forward(params, source, changed)
        np.testing.assert_array_equal(other[:, :t + 1], logits[:, :t + 1])
        assert not np.allclose(other[:, t + 1:], logits[:, t + 1:])
    # ... while every position sees the whole source (bidirectional encoder, cross-attention).
    other = forward(params, source.at[:, -1].set(NUM_SPECIAL + (source[:, -1] - 2) % 6), inputs)
    assert not np.allclose(other[:, 0], logits[:, 0])


@pytest.mark.parametrize("variant", sorted(MODEL_VARIANTS))
def test_cached_decoding_equals_the_uncached_forward_pass(variant):
    """One token at a time through the self-attention cache and precomputed cross keys/values
    gives the logits of the full teacher-forced forward pass."""
    model = tiny_model(**MODEL_VARIANTS[variant])
    params = init(model)
    source = padded([[3, 4, 5, 6], [8, 7, 6, 5, 4, 3, 8, 8]], 10)
    inputs = random_tokens(4, (2, 8)).at[:, 0].set(BOS)
    full = jitted(model)(params, source, inputs)
    encoded = jitted(model, model.encode)(params, source)
    cache = jax.jit(lambda p, e: model.apply({"params": p}, e, 8, method=model.init_cache))(params, encoded)
    # The precomputed cross keys are the cross-attention projection of the encoder output.
    kv = params["decoder_1"]["cross_attn"]["kv"]
    keys = (encoded @ kv["kernel"] + kv["bias"])[..., :16].reshape(2, 10, 2, 8)
    np.testing.assert_allclose(cache[1]["cross"]["k"], keys, atol=1e-5)
    step = jax.jit(lambda p, tokens, cache, t: model.apply({"params": p}, tokens, encoded, source != PAD, cache=cache,
                                                           cache_index=t, method=model.decode))
    steps = []
    for t in range(8):
        logits, cache = step(params, inputs[:, t:t + 1], cache, jnp.int32(t))
        steps.append(logits[:, 0])
    np.testing.assert_allclose(jnp.stack(steps, axis=1), full, atol=2e-5)


# ------------------------------------------------------------------ greedy and beam search

SOURCES = [[3, 4, 5], [8, 7, 6, 5, 4, 3, 8], [5, 5], [6]]


def test_beam_width_one_equals_greedy():
    model = tiny_model()
    params = init(model, seed=3)
    source = padded(SOURCES, 10)
    tokens, logp = decoding.greedy_decode(params, source, model=model)
    beam_tokens, beam_scores, beam_logp = decoding.beam_search(params, source, model=model, beam_width=1)
    np.testing.assert_array_equal(beam_tokens[:, 0], tokens)
    np.testing.assert_allclose(beam_logp[:, 0], logp, atol=1e-5)
    np.testing.assert_allclose(beam_scores[:, 0], logp, atol=1e-5)  # alpha = 0: score = log-probability
    # The greedy log-probability is the teacher-forced score of the greedy output.
    inputs = jnp.concatenate([jnp.full((len(SOURCES), 1), BOS), tokens[:, :-1]], axis=1)
    inputs = jnp.where(inputs == EOS, PAD, inputs)
    np.testing.assert_allclose(decoding.score_sequences(params, source, inputs, tokens, model=model), logp, atol=1e-4)


def all_outputs(symbols, max_tokens):
    """Every output of at most max_tokens tokens that ends with EOS (the EOS counted)."""
    return [list(body) + [EOS] for n in range(max_tokens) for body in itertools.product(symbols, repeat=n)]


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_finds_the_brute_force_best(alpha):
    """With 2 symbols and 4 steps there are 15 outputs that end with EOS; a beam wide enough
    to keep every prefix and every ending (32) returns all 15 ranked by log p / lp(|y|),
    exactly as scoring every one of them does (the early stop must not cut any off)."""
    model = tiny_model(vocab_size=NUM_SPECIAL + 2, max_target_length=4, embed_dim=8)
    params = init(model, seed=5)
    params = jax.tree_util.tree_map(lambda x: 3.0 * x, params)  # sharper, less uniform distributions
    source = padded([[3, 4, 4], [4, 3, 3, 3, 4]], 10)
    outputs = all_outputs([3, 4], 4)
    targets = padded(outputs, 4)
    inputs = padded([[BOS] + out[:-1] for out in outputs], 4)
    lengths = np.array([len(out) for out in outputs])
    tokens, scores, logps = decoding.beam_search(params, source, model=model, beam_width=32,
                                                 length_penalty_alpha=alpha)
    for row in range(2):
        logp = decoding.score_sequences(params, jnp.repeat(source[row:row + 1], len(outputs), 0), inputs, targets,
                                        model=model)
        brute = np.asarray(logp) / ((5.0 + lengths) / 6.0) ** alpha
        order = np.argsort(-brute)
        np.testing.assert_allclose(scores[row, :15], brute[order], atol=1e-4)
        np.testing.assert_allclose(logps[row, :15], np.asarray(logp)[order], atol=1e-4)
        assert [decoding.strip(t) for t in tokens[row, :3]] == [outputs[i][:-1] for i in order[:3]]
        assert np.all(np.asarray(scores[row, 15:]) < -1e6)  # nothing else ends within 4 tokens


# ------------------------------------------------------------------ the task on the one loop

def test_eval_counts_exact_matches_of_greedy_decoding():
    """Targets set to the model's own greedy outputs are all matched exactly, and every
    teacher-forced argmax agrees with them; changing one target token breaks that row only."""
    from aigc_jax.families.seq2seq import task as task_lib
    from aigc_jax.train.state import TrainState
    model = tiny_model()
    params = init(model, seed=2)
    source = padded(SOURCES, 10)  # as in the test above: the compiled greedy search is reused
    targets = np.array(decoding.greedy_decode(params, source, model=model)[0])
    inputs = np.concatenate([np.full((4, 1), BOS), np.where(targets[:, :-1] == EOS, PAD, targets[:, :-1])], 1)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(), extra={})
    eval_step = jax.jit(functools.partial(task_lib.eval_step, model=model))
    rows = dict(source=source, inputs=jnp.asarray(inputs), weight=np.array([1, 1, 1, 0], np.float32),
                unseen=np.array([0, 1, 0, 0], np.float32))
    right = task_lib.summarize_eval(jax.device_get(eval_step(state, {**rows, "targets": jnp.asarray(targets)})))
    assert right["exact_match"] == 1.0 and right["token_accuracy"] == 1.0
    wrong = targets.copy()
    wrong[1, 0] = NUM_SPECIAL + (wrong[1, 0] - NUM_SPECIAL + 1) % 6
    sums = jax.device_get(eval_step(state, {**rows, "targets": jnp.asarray(wrong)}))
    assert float(sums["exact"]) == 2.0 and float(sums["examples"]) == 3.0  # row 3 weighs nothing
    assert task_lib.summarize_eval(sums)["exact_match_unseen_lengths"] == 0.0


@pytest.mark.slow
def test_training_run_resumes_and_translates(tmp_path):
    """A tiny addition run through the one loop writes the seq2seq metrics; the restored
    checkpoint decodes with translate() exactly as greedy search on the final parameters."""
    from aigc_jax.config import load_config
    from aigc_jax.families.seq2seq import task as task_lib
    from aigc_jax import families
    from aigc_jax.train.metrics import read_metrics
    from tests.conftest import config_path

    config = load_config(config_path("seq2seq.py:add,tiny"), ["train.progress_bar=false", "train.num_steps=20",
                                                               "train.eval_every=10", "train.checkpoint_every=10"])
    workdir = str(tmp_path / "run")
    summary = families.train(config, workdir, echo=lambda *_: None)
    evals = read_metrics(workdir, "eval")
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert set(evals[-1]) >= {"loss", "token_accuracy", "exact_match"}
    assert evals[-1]["loss"] < evals[0]["loss"]
    assert summary["final_step"] == 20
    trained = task_lib.load_trained(workdir)
    assert trained.step == 20
    (text, score, logp), = task_lib.translate(trained, "12+3")  # greedy; '=' appended
    vocab, length = trained.vocab, trained.model.max_target_length
    ids = list(vocab.encode(text))
    targets = padded([ids + [EOS] if len(ids) < length else ids], length)  # EOS unless cut off
    inputs = padded([[BOS] + ids[:length - 1]], length)
    source = jnp.asarray(task_lib.data_lib.encode_source(vocab, "12+3="))
    expected = decoding.score_sequences(trained.params, source, inputs, targets, model=trained.model)
    assert logp == pytest.approx(float(expected[0]), abs=1e-4) and score == pytest.approx(logp)
    # Resuming with a model field changed is refused, naming the field.
    from aigc_jax.config import ConfigError, apply_overrides
    with pytest.raises(ConfigError, match="model.embed_dim"):
        families.train(apply_overrides(config, ["model.embed_dim=16"]), workdir, echo=lambda *_: None)
