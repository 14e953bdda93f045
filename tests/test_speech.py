"""The offline speech corpus (eSpeak NG) and your own recordings."""
import os
import warnings

import numpy as np
import pytest

from aigc_jax.audio.wav import write_wav
from aigc_jax.data import espeak, speech
from aigc_jax.data.text import DataError

TEXT = " ".join([
    "The cat sat on the warm mat today.", "A small boat drifts across the quiet lake.",
    "Every morning the baker opens the shop early.", "Rain falls softly on the green hills.",
    "She reads a long book by the window.", "The old clock in the hall stopped at noon.",
    "Birds sing loudly before the sun comes up.", "He painted the fence a bright shade of blue.",
    "Children play football in the park after school.", "The river runs fast after the spring storms.",
    "Our train leaves the station in ten minutes.", "Fresh bread smells wonderful in the kitchen.",
    "Is this the road that leads to the sea?", "The garden was full of yellow flowers!",
])


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "sentences.txt"
    path.write_text(TEXT + " This line has code_like tokens (x) = 3.", encoding="utf-8")
    return str(path)


def test_plain_sentences_filter():
    found = speech.plain_sentences("Return the given value. See foo_bar() for details. Hi there. "
                                   "Compute the sum of all the numbers given here!")
    assert found == ["Return the given value.", "Compute the sum of all the numbers given here!"]


def test_corpus_is_deterministic_cached_and_split_by_sentence(text_file, tmp_path):
    first = speech.make_corpus("train", 4, seed=3, text_path=text_file, cache_dir=str(tmp_path / "a"),
                               progress=False)
    again = speech.make_corpus("train", 4, seed=3, text_path=text_file, cache_dir=str(tmp_path / "b"),
                               progress=False)  # synthesised afresh elsewhere
    cached = speech.make_corpus("train", 4, seed=3, text_path=text_file, cache_dir=str(tmp_path / "a"),
                                progress=False)
    longer = speech.make_corpus("train", 6, seed=3, text_path=text_file, cache_dir=str(tmp_path / "a"),
                                progress=False)
    for other in (again, cached):
        assert other.texts == first.texts and list(other.speakers) == list(first.speakers)
        for a, b in zip(first.waveforms, other.waveforms):
            np.testing.assert_allclose(a, b, atol=1.0 / 16000)  # int16 storage in the cache
    assert longer.texts[:4] == first.texts  # item i does not depend on the corpus size
    assert first.sample_rate == 16000 and all(0 <= s < len(speech.SPEAKERS) for s in first.speakers)
    for wave, text, phonemes in zip(first.waveforms, first.texts, first.phonemes):
        seconds = len(wave) / 16000
        assert 0.15 * len(text.split()) < seconds < 0.8 * len(text.split())  # speech-like speaking rates
        assert np.abs(wave).max() > 0.05 and phonemes and phonemes != text
    test = speech.make_corpus("test", 3, seed=3, text_path=text_file, cache_dir=str(tmp_path / "a"), progress=False)
    assert not set(test.texts) & set(longer.texts)
    assert all(speech.split_of(t) == "test" for t in test.texts)


def test_corrupt_cache_is_made_again(text_file, tmp_path):
    items = speech.make_corpus("train", 2, text_path=text_file, cache_dir=str(tmp_path), progress=False)
    [name] = [n for n in os.listdir(tmp_path) if n.startswith("speech_")]
    (tmp_path / name).write_bytes(b"broken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = speech.make_corpus("train", 2, text_path=text_file, cache_dir=str(tmp_path), progress=False)
    assert any("unreadable" in str(w.message) for w in caught)
    assert again.texts == items.texts


def test_bad_inputs_name_the_problem(text_file, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown speech split"):
        speech.make_corpus("dev", 2, text_path=text_file, cache_dir=str(tmp_path))
    few = tmp_path / "few.txt"
    few.write_text("One two three four. Five six seven eight.", encoding="utf-8")
    with pytest.raises(DataError, match="at least 10"):
        speech.make_corpus("train", 2, text_path=str(few), cache_dir=str(tmp_path))
    monkeypatch.setenv(espeak.LIBRARY_ENV, str(tmp_path / "nowhere.so"))
    monkeypatch.setenv(espeak.DATA_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install espeakng-loader"):
        espeak.ESpeak()


def test_wav_folder(tmp_path):
    tone = speech.tones(440.0, 0.5, 22050)
    write_wav(str(tmp_path / "a.wav"), tone, 22050)
    write_wav(str(tmp_path / "b.wav"), speech.tones([440.0, 660.0], 0.25, 22050), 22050)
    (tmp_path / "transcript.tsv").write_text("a.wav\tan a\t2\nb.wav\ta chord\n", encoding="utf-8")
    items = speech.load_wav_folder(str(tmp_path), 16000)
    assert items.texts == ["an a", "a chord"] and list(items.speakers) == [2, 0]
    assert len(items.waveforms[0]) == 8000
    assert np.argmax(np.abs(np.fft.rfft(items.waveforms[0]))) == 220  # 440 Hz in 2 Hz bins
    with pytest.raises(DataError, match="neither transcript.tsv nor metadata.csv"):
        speech.load_wav_folder(str(tmp_path / ".."), 16000)
    with pytest.raises(DataError, match="does not exist"):
        speech.load_wav_folder(str(tmp_path / "missing"), 16000)
