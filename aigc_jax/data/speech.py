"""A speech corpus made offline: English sentences said by eSpeak NG (aigc_jax/data/espeak.py)
in several voices, speaking rates and pitches (the speaker ids), resampled to a chosen rate.

  sentences   plain English sentences from the docstrings of the Python standard library's own
              sources (4-16 words of letters and light punctuation; code-like text is left
              out), or from a text file of yours (`text_path`, e.g. tiny Shakespeare);
  splits      by sentence (crc32 of the text): 80% train, 10% validation, 10% test, so no test
              sentence is ever heard in training, by any speaker;
  items       item i of a split draws its sentence and speaker from the seed (seed, split, i):
              deterministic, and the same at any corpus size; each carries its text, eSpeak's
              IPA phonemes, the speaker id and the waveform (float32 in [-1, 1], leading and
              trailing silence trimmed to 50 ms);
  cache       the synthesised split is kept as an NPZ under ~/.cache/aigc_jax/speech (a hash of
              everything that shapes it), written through a rename; a corrupt file is made again.

Your own recordings: `load_wav_folder(DIR)` reads DIR/transcript.tsv (file, text[, speaker id]
per line, tab-separated) or an LJSpeech-style DIR/metadata.csv (id|text[|normalised text], WAVs
in DIR/wavs/) and resamples every file. `tones` makes pure tones and chords for tests.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import os
import re
import sysconfig
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from aigc_jax.audio.resample import resample
from aigc_jax.files import write_text
from aigc_jax.data.text import DataError, read_text_file, stdlib_source_files

CACHE_VERSION = 1
SPLITS = ("train", "validation", "test")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


@dataclass(frozen=True)
class Speaker:
    voice: str  # eSpeak voice name + variant
    rate: int  # words per minute
    pitch: int  # 0-100


# Eight speakers: three accents of English (US, British RP, Caribbean), eSpeak's voice variants
# at pitches 35-70 and 150-185 words a minute. Only variants whose output is a pure function of
# the text are used: others (e.g. +m3, +f3, the Scottish voice) add flutter from state that
# carries over between utterances, so the same item would sound different run to run.
SPEAKERS = (
    Speaker("en-us+shelby", 170, 70), Speaker("en-us+adam", 160, 40), Speaker("en-gb-x-rp+david", 170, 45),
    Speaker("en-gb-x-rp+Storm", 180, 60), Speaker("en-029+shelby", 160, 65), Speaker("en-us+Diogo", 185, 35),
    Speaker("en+benjamin", 150, 50), Speaker("en-gb-x-rp+shelby", 175, 60),
)

_PLAIN = re.compile(r"^[A-Z][A-Za-z ,;'-]*[a-z][.?!]$")


@dataclass
class SpeechSet:
    """One split: waveforms (float32 [-1, 1] at sample_rate, one per item), their texts, phonemes
    and speaker ids."""
    waveforms: list
    texts: list
    phonemes: list
    speakers: np.ndarray
    sample_rate: int
    description: str = ""

    def __len__(self) -> int:
        return len(self.waveforms)

    def total_seconds(self) -> float:
        return sum(len(w) for w in self.waveforms) / self.sample_rate


def split_of(sentence: str, validation: float = 0.1, test: float = 0.1) -> str:
    bucket = zlib.crc32(sentence.encode()) % 1000
    if bucket < round(test * 1000):
        return "test"
    return "validation" if bucket < round((test + validation) * 1000) else "train"


def plain_sentences(text: str) -> list[str]:
    """The plain English sentences of a text: runs of words ending in . ? or !, 4-16 words,
    letters and light punctuation only."""
    found = []
    for sentence in re.split(r"(?<=[.?!])\s+", " ".join(text.split())):
        if _PLAIN.match(sentence) and 4 <= len(sentence.split()) <= 16:
            found.append(sentence)
    return found


def docstring_sentences() -> list[str]:
    """Plain sentences of every docstring in the standard library's top-level sources, deduplicated,
    in a fixed order."""
    seen = set()
    for path in stdlib_source_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    seen.update(plain_sentences(doc))
    return sorted(seen)


def cached_docstring_sentences(cache_dir: str = "") -> list[str]:
    """`docstring_sentences()`, kept in a text file per Python version (parsing the library takes
    seconds)."""
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, f"docstring_sentences_py{sysconfig.get_python_version()}_v{CACHE_VERSION}.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            cached = f.read().split("\n")
        if len(cached) >= 10:
            return cached
    pool = docstring_sentences()
    os.makedirs(cache_dir, exist_ok=True)
    write_text(path, "\n".join(pool), "the docstring sentence cache")
    return pool


def sentences(text_path: str = "", cache_dir: str = "") -> list[str]:
    """The sentence pool: the docstrings' (default) or those of your text file."""
    pool = plain_sentences(read_text_file(text_path)) if text_path else cached_docstring_sentences(cache_dir)
    pool = sorted(set(pool))
    if len(pool) < 10:
        raise DataError(f"only {len(pool)} plain sentences (4-16 words of letters ending in . ? or !) in "
                        f"{text_path or 'the standard library docstrings'}; a speech corpus needs at least 10")
    return pool


def trim_silence(waveform: np.ndarray, sample_rate: int, threshold: float = 0.01, margin_s: float = 0.05):
    """Cuts leading and trailing samples quieter than threshold, keeping margin_s of each."""
    loud = np.flatnonzero(np.abs(waveform) > threshold)
    if loud.size == 0:
        return waveform
    margin = int(margin_s * sample_rate)
    return waveform[max(loud[0] - margin, 0):loud[-1] + margin + 1]


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "aigc_jax", "speech")


def corpus_key(split: str, count: int, seed: int, sample_rate: int, speakers, pool: list) -> str:
    text = (f"v{CACHE_VERSION}|{split}|{count}|{seed}|{sample_rate}|{speakers}|"
            f"{hashlib.sha256(chr(10).join(pool).encode()).hexdigest()}")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _save(path: str, items: SpeechSet) -> None:
    lengths = np.array([len(w) for w in items.waveforms], np.int64)
    audio = np.concatenate(items.waveforms) if items.waveforms else np.zeros(0, np.float32)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, audio=np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16), lengths=lengths,
                            texts=np.array(items.texts), phonemes=np.array(items.phonemes), speakers=items.speakers)
    os.replace(tmp, path)


def _load(path: str, count: int, sample_rate: int):
    try:
        with np.load(path) as archive:
            audio, lengths = archive["audio"], archive["lengths"]
            texts, phonemes, speakers = list(archive["texts"]), list(archive["phonemes"]), archive["speakers"]
        if len(lengths) != count or lengths.sum() != len(audio) or len(texts) != count:
            raise ValueError(f"{len(lengths)} items in the file, {count} expected")
    except Exception as e:  # a corrupt zip raises several kinds
        warnings.warn(f"speech cache file {path!r} is unreadable ({type(e).__name__}: {e}); synthesising it again")
        return None
    waveforms = np.split(audio.astype(np.float32) / 32767.0, np.cumsum(lengths)[:-1])
    return SpeechSet(waveforms, [str(t) for t in texts], [str(p) for p in phonemes], speakers.astype(np.int32),
                     sample_rate)


def make_corpus(split: str, count: int, seed: int = 0, sample_rate: int = 16000, speakers=SPEAKERS,
                text_path: str = "", cache_dir: str = "", progress: bool = True) -> SpeechSet:
    """Items 0..count-1 of the split's stream (see the module docstring), synthesised once and cached."""
    if split not in SPLITS:
        raise DataError(f"unknown speech split {split!r}; expected one of {', '.join(SPLITS)}")
    if count < 1:
        raise DataError(f"a speech corpus needs at least one item, got count={count}")
    cache_dir = cache_dir or default_cache_dir()
    pool = [s for s in sentences(text_path, cache_dir) if split_of(s) == split]
    if not pool:
        raise DataError(f"no sentence of {text_path or 'the docstrings'} falls in the {split} split")
    path = os.path.join(cache_dir, f"speech_{corpus_key(split, count, seed, sample_rate, speakers, pool)}.npz")
    source = os.path.basename(text_path) if text_path else "standard-library docstrings"
    description = (f"eSpeak NG speech, {split}: {count} utterances of {len(pool)} {source} sentences, "
                   f"{len(speakers)} speakers, {sample_rate} Hz")
    if os.path.exists(path):
        cached = _load(path, count, sample_rate)
        if cached is not None:
            cached.description = description
            return cached
    from tqdm import tqdm

    from aigc_jax.data.espeak import synthesizer
    engine = synthesizer()
    waveforms, texts, phonemes, ids = [], [], [], []
    for i in tqdm(range(count), desc=f"synthesising {split} speech", unit="utterance", disable=not progress):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        sentence, speaker = pool[rng.integers(len(pool))], int(rng.integers(len(speakers)))
        voice = speakers[speaker]
        raw = engine.speak(sentence, voice.voice, voice.rate, voice.pitch).astype(np.float32) / 32768.0
        audio = resample(raw, engine.sample_rate, sample_rate)
        waveforms.append(trim_silence(audio, sample_rate))
        texts.append(sentence)
        phonemes.append(engine.phonemes(sentence, voice.voice))
        ids.append(speaker)
    items = SpeechSet(waveforms, texts, phonemes, np.array(ids, np.int32), sample_rate, description)
    os.makedirs(cache_dir, exist_ok=True)
    _save(path, items)
    return items


def load_wav_folder(path: str, sample_rate: int = 16000) -> SpeechSet:
    """Your recordings: DIR/transcript.tsv (file<TAB>text[<TAB>speaker id]) or LJSpeech's
    DIR/metadata.csv (id|text[|normalised text], audio in DIR/wavs/ID.wav); every file resampled."""
    from aigc_jax.audio.wav import read_wav
    if not os.path.isdir(path):
        raise DataError(f"speech folder {path!r} does not exist or is not a directory")
    rows = []
    tsv, lj = os.path.join(path, "transcript.tsv"), os.path.join(path, "metadata.csv")
    if os.path.exists(tsv):
        with open(tsv, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.rstrip("\n").split("\t")
                if not line.strip():
                    continue
                if len(fields) < 2:
                    raise DataError(f"{tsv}:{number}: expected 'file<TAB>text[<TAB>speaker]', got {line.strip()!r}")
                speaker = int(fields[2]) if len(fields) > 2 and fields[2].strip() else 0
                rows.append((os.path.join(path, fields[0]), fields[1], speaker))
    elif os.path.exists(lj):
        with open(lj, encoding="utf-8") as f:
            for fields in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
                if len(fields) >= 2:
                    rows.append((os.path.join(path, "wavs", fields[0] + ".wav"), fields[-1], 0))
    else:
        raise DataError(f"speech folder {path!r} has neither transcript.tsv nor metadata.csv")
    if not rows:
        raise DataError(f"the transcript in {path!r} lists no recordings")
    waveforms, texts, speakers = [], [], []
    for file, text, speaker in rows:
        audio, rate = read_wav(file)
        waveforms.append(resample(audio, rate, sample_rate))
        texts.append(text)
        speakers.append(speaker)
    return SpeechSet(waveforms, texts, [""] * len(texts), np.array(speakers, np.int32), sample_rate,
                     f"{len(rows)} recordings from {path}, {sample_rate} Hz")


def tones(frequencies, seconds: float, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A chord of equal-amplitude sines (one frequency: a pure tone), peak `amplitude`, float32."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    frequencies = np.atleast_1d(np.asarray(frequencies, np.float64))
    chord = np.sin(2 * np.pi * frequencies[:, None] * t[None, :]).sum(axis=0)
    return (amplitude * chord / max(len(frequencies), 1)).astype(np.float32)
