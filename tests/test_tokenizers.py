import json

import numpy as np
import pytest

from aigc_jax.data import tokenizers


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_round_trip_and_reload(kind, tmp_path):
    text = "To be, or not to be: that is the question.\nÆsop's ∀x ✓"
    tok = tokenizers.build_tokenizer(kind, text)
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    tokenizers.save_tokenizer(tok, str(tmp_path))
    again = tokenizers.load_tokenizer(str(tmp_path))
    assert again.vocab_size == tok.vocab_size
    np.testing.assert_array_equal(again.encode(text), ids)


def test_char_ids_follow_sorted_characters():
    tok = tokenizers.CharTokenizer.from_text("cab")
    assert tok.chars == ["a", "b", "c"]
    np.testing.assert_array_equal(tok.encode("abcca"), [0, 1, 2, 2, 0])


def test_unknown_characters_are_named():
    tok = tokenizers.CharTokenizer.from_text("hello")
    with pytest.raises(tokenizers.UnknownCharactersError, match="'xz'"):
        tok.encode("hexzoo")


def test_missing_and_corrupt_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        tokenizers.load_tokenizer(str(tmp_path))
    (tmp_path / tokenizers.TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt tokenizer file"):
        tokenizers.load_tokenizer(str(tmp_path))
    (tmp_path / tokenizers.TOKENIZER_FILE).write_text(json.dumps({"kind": "wordpiece"}))
    with pytest.raises(ValueError, match="wordpiece"):
        tokenizers.load_tokenizer(str(tmp_path))
