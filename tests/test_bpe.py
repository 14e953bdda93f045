"""Byte-level BPE (data.tokenizer=bpe): lossless on any text, saved and reloaded with the run,
and the LM family trains, resumes and samples with it."""
import numpy as np
import pytest

from aigc_jax import families
from aigc_jax.config import ConfigError, apply_overrides
from aigc_jax.data import tokenizers
from aigc_jax.data.bpe import BPETokenizer

HOSTILE = ["emoji 👩‍👩‍👧‍👦 and a flag 🏳️‍🌈", "e\u0301 and \u0065\u0308 combining marks", "a NUL \x00 byte",
           "中文 العربية עברית", "  runs of  spaces\n\n\ttabs \r\n", "", "\uffff\U0010ffff private \ue000",
           "never seen in training: ʃ ŋ ð ∮ ⅞"]


@pytest.fixture(scope="module")
def bpe(small_text_file):
    return BPETokenizer.train(open(small_text_file, encoding="utf-8").read(), 300)


def test_bpe_is_lossless_on_hostile_text_and_refuses_lone_surrogates(bpe):
    assert bpe.vocab_size == 300
    for text in HOSTILE:
        ids = bpe.encode(text)
        assert ids.dtype == np.int32 and (ids < bpe.vocab_size).all()
        assert bpe.decode(ids) == text, text
    with pytest.raises(tokenizers.UnknownCharactersError, match="lone surrogate U\\+DCC5 at character 2"):
        bpe.encode("ab\udcc5")


def test_bpe_merges_compress_the_text_it_learnt_from(bpe, small_text_file):
    text = open(small_text_file, encoding="utf-8").read()
    assert len(bpe.encode(text)) < 0.6 * len(text.encode("utf-8"))  # merges learnt, not bytes alone


def test_bpe_is_saved_with_the_run_and_reloaded_identically(bpe, tmp_path):
    tokenizers.save_tokenizer(bpe, str(tmp_path))
    again = tokenizers.load_tokenizer(str(tmp_path))
    assert again.kind == "bpe" and again.vocab_size == bpe.vocab_size
    for text in HOSTILE:
        np.testing.assert_array_equal(again.encode(text), bpe.encode(text))


def test_bpe_needs_more_entries_than_bytes(tiny_lm_config):
    config = apply_overrides(tiny_lm_config, ["data.tokenizer=bpe", "data.vocab_size=256"])
    with pytest.raises(ConfigError, match=r"^config field data.vocab_size=256 is too small for data.tokenizer='bpe'"):
        families.check_config(config)


def test_lm_trains_resumes_and_samples_with_bpe(tiny_lm_config, tmp_path):
    from aigc_jax.decoding.sampling import SamplingSettings
    from aigc_jax.families.lm import inference
    workdir = str(tmp_path / "run")
    config = apply_overrides(tiny_lm_config, ["data.tokenizer=bpe", "data.vocab_size=300", "train.num_steps=10"])
    families.train(config, workdir, echo=lambda *_: None)
    messages = []
    summary = families.train(apply_overrides(config.copy_and_resolve_references(), ["train.num_steps=20"]), workdir,
                             echo=messages.append)
    assert "resumed from the checkpoint at step 10" in messages and summary["final_step"] == 20
    lm = inference.load_language_model(workdir)
    assert lm.tokenizer.kind == "bpe" and lm.model.vocab_size == 300
    texts = inference.sample_text(lm, "the model", num_samples=2, seed=0,
                                  settings=SamplingSettings(max_new_tokens=8, temperature=1.0))
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)


@pytest.mark.parametrize("kind, extra", [("byte", []), ("char", []), ("bpe", ["data.vocab_size=300"])])
def test_bits_per_byte_compare_tokenizers_on_the_same_text(tiny_lm_config, kind, extra):
    """bits per byte = total nats / ln 2 / the UTF-8 bytes of the evaluated targets: bits per token
    for bytes (and for the characters of ASCII text); for BPE, bits per token / bytes per token."""
    import jax
    from aigc_jax.data import text as text_data
    from aigc_jax.train.loop import evaluate
    config = apply_overrides(tiny_lm_config, [f"data.tokenizer={kind}", *extra])
    task = families.build_task(config, "")
    state = jax.jit(task.init)(jax.random.key(0))
    result = evaluate(jax.jit(task.eval_step), state, task.eval_batches(), task.summarize_eval)
    targets = np.concatenate([b["tokens"][b["weight"] > 0] for b in task.eval_batches()])[:, 1:]
    if kind in ("byte", "char"):  # the small text is ASCII: one byte per token
        assert result["bits_per_byte"] == pytest.approx(result["bits_per_token"], rel=1e-6)
        return
    splits = text_data.load_text_splits(config.data)
    tokenizer = tokenizers.build_tokenizer("bpe", splits.train, 300)  # the run's: training is deterministic
    text_bytes = sum(len(tokenizer.decode(row).encode("utf-8")) for row in targets)
    assert text_bytes > 1.5 * targets.size
    assert result["bits_per_byte"] == pytest.approx(result["bits_per_token"] * targets.size / text_bytes, rel=1e-6)
