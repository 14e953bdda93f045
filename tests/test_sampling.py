"""Decoding (aigc_jax/decoding/), loading a run for inference and the sample command.

Tolerance: float32 logits of cached decoding agree with a fresh forward pass to 1e-5
(absolute and relative); greedy tokens are identical.
"""
import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax.families.lm import inference
from aigc_jax.decoding import sampling
from aigc_jax.config import load_config
from aigc_jax.data.tokenizers import CharTokenizer, UnknownCharactersError
from aigc_jax.nn.transformer import TransformerLM
from aigc_jax.decoding import samplers
from aigc_jax.decoding.samplers import SamplingSettings
from tests.conftest import REPO, config_path

ATOL = RTOL = 1e-5
VOCAB = 23


def default_gpt(**overrides) -> TransformerLM:
    """configs/gpt_char.py's default model (4 layers x 128, context 64, learned positions)."""
    config = load_config(config_path("gpt_char.py"), [f"model.{k}={v}" for k, v in overrides.items()])
    return TransformerLM.from_config(config.model, VOCAB)


MODELS = {
    "gpt_default": {},
    "rope_multiquery_parallel": dict(positions="rope", num_kv_heads=1, parallel_block=True),
}


def init_params(model, seed=0):
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, model.context_length), jnp.int32))["params"]


def full_forward(model, params, tokens) -> np.ndarray:
    """The reference: the plain forward pass (no cache), logits [B, T, V]."""
    return np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(tokens, jnp.int32)))


@pytest.fixture(scope="module")
def tiny():
    """A 2-layer, context-16 model: windows overflow after a few tokens."""
    model = TransformerLM(vocab_size=VOCAB, num_layers=2, num_heads=2, embed_dim=32, context_length=16)
    return model, init_params(model, seed=3)


def window_logits(model, params, sequence, windows) -> np.ndarray:
    """Plain forward passes over sequence[start:end] for each (start, end): the logits of
    each window's last token [len(windows), V]. Windows are right-padded to the context in
    one batch; causality makes the padding irrelevant to the positions before it."""
    batch = np.zeros((len(windows), model.context_length), np.int32)
    for i, (start, end) in enumerate(windows):
        batch[i, :end - start] = sequence[start:end]
    logits = full_forward(model, params, batch)
    return logits[np.arange(len(windows)), [end - start - 1 for start, end in windows]]


def policy_windows(prompt_length, steps, context, shift):
    """The documented sliding-window rule, written out independently: (start, end) of the
    window that predicts each new token."""
    start, end, windows = max(0, prompt_length - context), prompt_length, []
    for _ in range(steps):
        windows.append((start, end))
        end += 1
        if end - start > context:
            start += shift
    return windows


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_cached_logits_equal_full_forward_at_every_step(variant):
    model = default_gpt(**MODELS[variant])
    params = init_params(model)
    prompts = [[5, 1, 7], [2, 9, 4, 4, 11, 0, 8, 3, 1, 6]]
    steps = 12
    out = sampling.generate(model, params, prompts, jax.random.key(0),
                            SamplingSettings(max_new_tokens=steps, temperature=0.0), return_logits=True)
    for row, prompt in enumerate(prompts):
        sequence = np.concatenate([prompt, out.tokens[row]])
        full = full_forward(model, params, sequence[None, :-1])[0]
        expected = full[len(prompt) - 1:]  # the logits that predict each new token
        np.testing.assert_allclose(out.logits[row], expected, atol=ATOL, rtol=RTOL)
        np.testing.assert_array_equal(out.tokens[row], expected.argmax(-1))  # greedy, token for token


@pytest.fixture(scope="module")
def greedy_windows(tiny):
    """Greedy decoding past the context (16) with window_shift 5; one prompt longer than the context."""
    model, params = tiny
    prompts = [list(np.random.default_rng(1).integers(0, VOCAB, 20)), [4, 2, 8]]
    settings = SamplingSettings(max_new_tokens=24, temperature=0.0, window_shift=5)
    run = lambda method: sampling.generate(model, params, prompts, jax.random.key(0), settings, method=method,
                                           return_logits=True)
    return prompts, settings, run("cached"), run("naive")


def check_follows_window_policy(model, params, prompts, out, shift):
    for row, prompt in enumerate(prompts):
        sequence = np.concatenate([prompt, out.tokens[row]])
        windows = policy_windows(len(prompt), out.tokens.shape[1], model.context_length, shift)
        assert all(model.context_length + 1 - shift <= end - start <= model.context_length or start == 0
                   for start, end in windows)
        np.testing.assert_allclose(out.logits[row], window_logits(model, params, sequence, windows),
                                   atol=ATOL, rtol=RTOL)


def test_sliding_window_recomputes_exactly_the_documented_window(tiny, greedy_windows):
    model, params = tiny
    prompts, settings, cached, naive = greedy_windows
    check_follows_window_policy(model, params, prompts, cached, shift=5)
    # the naive method (a forward pass over the window at every step) agrees token for token
    np.testing.assert_array_equal(cached.tokens, naive.tokens)
    np.testing.assert_allclose(cached.logits, naive.logits, atol=ATOL, rtol=RTOL)


def test_window_shift_one_always_conditions_on_the_last_context_tokens(tiny):
    model, params = tiny
    prompts = [[4, 2, 8], [1]]
    out = sampling.generate(model, params, prompts, jax.random.key(0),
                            SamplingSettings(max_new_tokens=22, temperature=0.0, window_shift=1), return_logits=True)
    check_follows_window_policy(model, params, prompts, out, shift=1)


@pytest.fixture(scope="module")
def sampled_batch(tiny):
    """Rows of different lengths (two with the same prompt), sampled past the context."""
    model, params = tiny
    prompts = [[3], list(range(9)), [3]]
    keys = jax.random.split(jax.random.key(42), len(prompts))
    settings = SamplingSettings(max_new_tokens=20, temperature=0.9, top_k=6, window_shift=3)
    run = lambda prompts, keys: sampling.generate(model, params, prompts, keys, settings, return_logits=True)
    return {"prompts": prompts, "settings": settings, "batched": run(prompts, keys),
            "again": run(prompts, keys), "other_seed": run(prompts, jax.random.split(jax.random.key(43), 3)),
            "alone": [run([prompt], keys[row:row + 1]) for row, prompt in enumerate(prompts)]}


def test_batched_prompts_of_different_lengths_equal_each_alone(sampled_batch):
    for row, alone in enumerate(sampled_batch["alone"]):
        np.testing.assert_array_equal(alone.tokens[0], sampled_batch["batched"].tokens[row])
        np.testing.assert_allclose(alone.logits[0], sampled_batch["batched"].logits[row], atol=ATOL, rtol=RTOL)


def test_same_seed_same_tokens_and_each_row_draws_its_own(sampled_batch):
    batched = sampled_batch["batched"]
    np.testing.assert_array_equal(batched.tokens, sampled_batch["again"].tokens)
    assert not np.array_equal(batched.tokens, sampled_batch["other_seed"].tokens)
    assert not np.array_equal(batched.tokens[0], batched.tokens[2])  # same prompt, own key


def test_top_k_holds_at_every_decoding_step(sampled_batch):
    out = sampled_batch["batched"]
    top6 = np.argsort(-out.logits, axis=-1)[..., :6]
    assert np.all(np.any(top6 == out.tokens[..., None], axis=-1))
    assert np.any(top6[..., 0] != out.tokens)  # it samples, not just the argmax


def test_top_k_never_emits_outside_the_k_most_likely():
    logits = jax.random.normal(jax.random.key(0), (40,)) * 2.0
    keys = jax.random.split(jax.random.key(1), 4000)
    draws = np.asarray(samplers.choose_tokens(keys, jnp.broadcast_to(logits, (4000, 40)),
                                              SamplingSettings(max_new_tokens=1, temperature=1.0, top_k=5)))
    top5 = set(np.argsort(-np.asarray(logits))[:5].tolist())
    assert set(draws.tolist()) == top5  # never outside, and every one of the five is reachable


def test_top_p_never_emits_outside_the_nucleus():
    probs = np.array([0.05, 0.4, 0.04, 0.25, 0.15, 0.1, 0.01])
    # Hand-checked nucleus for p = 0.75: 0.4 + 0.25 = 0.65 < 0.75, adding 0.15 reaches 0.8.
    keys = jax.random.split(jax.random.key(2), 20000)
    draws = np.asarray(samplers.choose_tokens(keys, jnp.broadcast_to(jnp.log(probs), (20000, 7)),
                                              SamplingSettings(max_new_tokens=1, temperature=1.0, top_p=0.75)))
    assert set(draws.tolist()) == {1, 3, 4}
    frequencies = np.bincount(draws, minlength=7)[[1, 3, 4]] / len(draws)
    np.testing.assert_allclose(frequencies, np.array([0.4, 0.25, 0.15]) / 0.8, atol=0.015)


def test_nucleus_mask_matches_its_definition_on_random_logits():
    logits = np.asarray(jax.random.normal(jax.random.key(5), (50, 30)) * 1.5)
    for top_p in (0.1, 0.5, 0.9, 0.99):
        mask = np.asarray(samplers.nucleus_mask(jnp.asarray(logits), top_p))
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for row in range(len(logits)):
            order = np.argsort(-probs[row])
            size = int(np.searchsorted(np.cumsum(probs[row, order]), top_p) + 1)  # smallest set reaching p
            assert set(np.flatnonzero(mask[row])) == set(order[:size].tolist())


def test_temperature_sampling_follows_the_tempered_softmax_and_zero_is_greedy():
    logits = jnp.array([1.0, 0.0, -0.5, 0.7])
    keys = jax.random.split(jax.random.key(9), 20000)
    draws = np.asarray(samplers.choose_tokens(keys, jnp.broadcast_to(logits, (20000, 4)),
                                              SamplingSettings(max_new_tokens=1, temperature=0.5)))
    expected = np.asarray(jax.nn.softmax(logits / 0.5))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=0.015)
    greedy = samplers.choose_tokens(keys[:3], jnp.broadcast_to(logits, (3, 4)), SamplingSettings(1, temperature=0.0))
    assert np.asarray(greedy).tolist() == [0, 0, 0]


def test_stop_token_ends_a_row_and_keeps_what_came_before(tiny, greedy_windows):
    model, params = tiny
    prompts, settings, free, _ = greedy_windows
    stop = int(free.tokens[1, 3])
    stopped = sampling.generate(model, params, prompts, jax.random.key(0),
                                dataclasses.replace(settings, stop_tokens=(stop,)))
    steps = settings.max_new_tokens
    for row in range(len(prompts)):
        hits = np.flatnonzero(free.tokens[row] == stop)
        length = int(hits[0]) + 1 if len(hits) else steps
        assert stopped.lengths[row] == length
        np.testing.assert_array_equal(stopped.tokens[row, :length], free.tokens[row, :length])
        assert np.all(stopped.tokens[row, length:] == sampling.PAD_ID)
        assert np.all(stopped.logprobs[row, length:] == 0.0)
    assert stopped.lengths[1] <= 4


def test_scores_are_normalised_over_all_continuations():
    """Chain rule: sum over every x_2..x_4 of P(x_2..x_4 | x_1) = 1."""
    model = TransformerLM(vocab_size=4, num_layers=2, num_heads=2, embed_dim=16, context_length=8)
    params = init_params(model)
    rest = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    tokens = np.concatenate([np.full((64, 1), 2), rest], axis=1)
    total = jax.nn.logsumexp(jnp.asarray(sampling.log_likelihood(model, params, tokens)))
    assert float(total) == pytest.approx(0.0, abs=1e-5)


def test_scores_of_a_sample_equal_its_generation_logprobs_and_the_window_policy(tiny, sampled_batch):
    """Row 1: 9 prompt + 20 sampled tokens, longer than the context: scored by forced decoding."""
    model, params = tiny
    out = sampled_batch["batched"]
    text = np.concatenate([sampled_batch["prompts"][1], out.tokens[1]])
    shift = sampled_batch["settings"].window_shift
    scores = sampling.score_tokens(model, params, text[None], window_shift=shift)[0]
    np.testing.assert_allclose(scores[8:], out.logprobs[1], atol=ATOL)
    windows = policy_windows(1, len(text) - 1, model.context_length, shift)
    expected = np.asarray(jax.nn.log_softmax(window_logits(model, params, text, windows)))
    np.testing.assert_allclose(scores, expected[np.arange(len(windows)), text[1:]], atol=ATOL)


def test_short_texts_score_alike_by_forward_pass_and_by_decoding(tiny):
    model, params = tiny
    text = np.random.default_rng(2).integers(0, VOCAB, (2, 12))
    forward = sampling.score_tokens(model, params, text)
    np.testing.assert_allclose(np.asarray(sampling._score_by_decoding(model, params, jnp.asarray(text))), forward,
                               atol=ATOL)
    padded = sampling.score_tokens(model, params, text, lengths=np.array([12, 5]))
    np.testing.assert_array_equal(padded[1, 4:], 0.0)
    np.testing.assert_array_equal(padded[1, :4], forward[1, :4])
    assert sampling.log_likelihood(model, params, text).tolist() == pytest.approx(forward.sum(1).tolist(), abs=1e-6)


@pytest.mark.parametrize("settings, message", [
    (SamplingSettings(8, top_p=0.0), "top_p must be in (0, 1]"),
    (SamplingSettings(8, top_p=1.5), "top_p must be in (0, 1]"),
    (SamplingSettings(8, temperature=-0.1), "temperature must be >= 0"),
    (SamplingSettings(8, top_k=-1), "top_k must be >= 0"),
    (SamplingSettings(0), "max_new_tokens must be at least 1"),
    (SamplingSettings(8, stop_tokens=(VOCAB,)), "outside the vocabulary"),
])
def test_bad_settings_are_one_line_errors(tiny, settings, message):
    model, params = tiny
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")) as error:
        sampling.generate(model, params, [[1]], jax.random.key(0), settings)
    assert "\n" not in str(error.value)


def test_bad_prompts_are_one_line_errors(tiny):
    model, params = tiny
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        sampling.generate(model, params, [[1], []], jax.random.key(0), SamplingSettings(4))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sampling.generate(model, params, [[1, VOCAB]], jax.random.key(0), SamplingSettings(4))
    tokenizer = CharTokenizer.from_text("abc \nxyz")
    with pytest.raises(UnknownCharactersError, match="the prompt has 2 character.*'Qé'"):
        inference.encode_prompt(tokenizer, "abQé")
    assert inference.encode_prompt(tokenizer, "").tolist() == tokenizer.encode("\n").tolist()
    assert inference.start_token(CharTokenizer.from_text("ba")) == 0  # no newline: the first character


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, small_text_file):
    from aigc_jax import families
    config = load_config(config_path("gpt_char.py:tiny"), [
        f"data.path={small_text_file}", "train.progress_bar=false", "train.num_steps=4", "train.eval_every=4",
        "train.checkpoint_every=4", "optimizer.warmup_steps=1"])
    workdir = str(tmp_path_factory.mktemp("sampling") / "run")
    summary = families.train(config, workdir, echo=lambda *a: None)
    return config, workdir, summary


def test_loaded_model_is_the_final_trained_state(trained_workdir):
    from aigc_jax.families import build_task
    config, workdir, summary = trained_workdir
    lm = inference.load_language_model(workdir)
    assert lm.step == config.train.num_steps
    # Scoring the run's validation windows with the loaded parameters reproduces the run's
    # final validation loss: the newest checkpoint is restored, and scores are the task's nats.
    nats = tokens = 0.0
    for batch in build_task(config, workdir).eval_batches():
        nats -= float(np.sum(sampling.log_likelihood(lm.model, lm.params, batch["tokens"]) * batch["weight"]))
        tokens += float(np.sum(batch["weight"])) * (batch["tokens"].shape[1] - 1)
    assert nats / tokens == pytest.approx(summary["final_eval"]["loss"], rel=1e-5)


def test_sample_text_same_seed_same_text(trained_workdir):
    _, workdir, _ = trained_workdir
    lm = inference.load_language_model(workdir)
    settings = SamplingSettings(max_new_tokens=24, temperature=0.8, top_k=10)
    first = inference.sample_text(lm, "t", num_samples=2, seed=3, settings=settings)
    assert first == inference.sample_text(lm, "t", num_samples=2, seed=3, settings=settings)
    assert first != inference.sample_text(lm, "t", num_samples=2, seed=4, settings=settings)
    assert all(len(text) == 24 and set(text) <= set(lm.tokenizer.chars) for text in first)
    empty = inference.sample_text(lm, "", num_samples=2, seed=3, settings=settings)
    assert empty == inference.sample_text(lm, inference.START_TEXT, num_samples=2, seed=3, settings=settings)


def test_sample_command_without_checkpoint_is_a_one_line_error(trained_workdir, tmp_path):
    _, workdir, _ = trained_workdir
    empty = tmp_path / "no_checkpoints"
    empty.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(workdir, name), empty / name)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        inference.load_language_model(str(empty))
    result = subprocess.run([sys.executable, "-m", "experiments.sample", f"--workdir={empty}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no checkpoint in '{empty / 'checkpoints'}': "
                                                  "train this workdir first"]
    assert not (empty / "checkpoints").exists()  # nothing was created
