"""eSpeak NG, the formant speech synthesiser, driven through ctypes: text -> 22,050 Hz 16-bit
speech and its IPA phonemes, offline.

The library and its voice data come from the `espeakng-loader` wheel (installed with the
package); AIGC_JAX_ESPEAK_LIBRARY and AIGC_JAX_ESPEAK_DATA point at another build (e.g. the
system's libespeak-ng.so.1 and /usr/share/espeak-ng-data). eSpeak keeps global state, so one
synthesiser serves the whole process (`synthesizer()`); it runs about 400x faster than real
time on one core.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

LIBRARY_ENV = "AIGC_JAX_ESPEAK_LIBRARY"
DATA_ENV = "AIGC_JAX_ESPEAK_DATA"
_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEMES_IPA = 0x02
_RATE, _PITCH = 1, 3  # espeak_PARAMETER
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

MISSING = ("eSpeak NG is not available: `pip install espeakng-loader` installs its library and voices "
           "(it is a dependency of aigc_jax; wheels exist for Linux, macOS and Windows). Elsewhere, install "
           "espeak-ng with your package manager and set {lib}=/path/to/libespeak-ng.so and "
           "{data}=/path/to/espeak-ng-data.").format(lib=LIBRARY_ENV, data=DATA_ENV)


def _paths() -> tuple[str, str]:
    library, data = os.environ.get(LIBRARY_ENV), os.environ.get(DATA_ENV)
    if not (library and data):
        try:
            import espeakng_loader
        except ImportError as err:
            raise RuntimeError(MISSING) from err
        library = library or espeakng_loader.get_library_path()
        data = data or espeakng_loader.get_data_path()
    for path in (library, data):
        if not os.path.exists(path):
            raise RuntimeError(f"{path!r} does not exist. {MISSING}")
    return str(library), str(data)


class ESpeak:
    """One initialised eSpeak NG: `speak` and `phonemes`."""

    def __init__(self):
        library, data = _paths()
        try:
            self._lib = ctypes.CDLL(library)
        except OSError as err:
            raise RuntimeError(f"could not load eSpeak NG from {library!r}: {err}. {MISSING}") from err
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: eSpeak calls it during espeak_Synth
        self.sample_rate = int(self._lib.espeak_Initialize(_SYNCHRONOUS, 0, data.encode(), 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with the voice data at {data!r}. {MISSING}")
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
        """int16 waveform at `sample_rate` of `text` said by `voice` (an eSpeak voice name, optionally
        +variant: "en-us+f3"), `rate` words per minute (80-450), `pitch` 0-100."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice!r}")
        self._lib.espeak_SetParameter(_RATE, int(rate), 0)
        self._lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks = []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                        None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed (status {status}) on {text[:60]!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def phonemes(self, text: str, voice: str = "en-us") -> str:
        """The IPA phonemes eSpeak reads `text` as (clauses joined by spaces)."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice!r}")
        buffer = ctypes.c_char_p(text.encode("utf-8"))
        pointer = ctypes.cast(ctypes.pointer(buffer), ctypes.POINTER(ctypes.c_void_p))
        clauses = []
        while buffer.value:
            out = self._lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                clauses.append(out.decode("utf-8").strip())
        return " ".join(c for c in clauses if c)


@functools.lru_cache(maxsize=1)
def synthesizer() -> ESpeak:
    return ESpeak()
