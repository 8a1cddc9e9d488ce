"""Voicemail phrases as a cue: pocketsphinx keyphrase spotting over the call's first seconds, streaming.

A receptionist's "Good morning, Acme Plumbing, how can I help?" and a voicemail's "Hi, you have reached John
Smith" have the same timing: unbroken talk for seconds (docs/amd.md). Their words differ. A
:class:`KeywordSpotter` is fed the same 20-ms frames as :class:`dialer.amd.Detector`, upsamples them to the 16 kHz
the pocketsphinx en-us model was trained on, and runs pocketsphinx's keyphrase search (``kws``), which reports a
phrase from :data:`PHRASES` as soon as its last word ends. The detector counts a phrase as a machine only once the
talk it has heard is longer than a person's short answer (``keyword_min_span``), so a stray match on "Hello?"
cannot hang up on anyone.

pocketsphinx is optional (``pip install pocketsphinx``; the wheel ships the en-us model): :func:`available` says
whether it can be imported, and without it the detector runs on its timing cues alone. It loads on the first
spotter, never on ``import dialer``. A decoder loads only the acoustic model and the phrases' words (no language
model, not the 130,000-word dictionary): about 15 ms (plus 20 ms to import pocketsphinx, once per process), against
0.5 s for pocketsphinx's default, which holds the GIL throughout: in the live SIP test that stalled the worker
until the detection budget ran out. Decoders are
pooled per process: a spotter takes one when built (the worker builds the detector when the call's media starts)
and gives it back when it is closed (the detector closes it at its verdict); one dropped unclosed is garbage.

Cost, measured by ``python -m benchmarks.amd_accuracy`` (docs/amd.md): about 6% of real time per call on one core
of this project's machine (around 1 ms per 20-ms frame, upsampling included), spent as the frames come.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from dialer.amd._common import FRAME_BYTES, FRAME_SECONDS
from dialer.errors import ConfigError

PHRASES: tuple[str, ...] = (
    # the list
    "you have reached",
    "you've reached",
    "not available",
    "leave a message",
    "after the tone",
    "after the beep",
    "voicemail",
    "unable to take your call",
    "please leave",
    # from the development part's voicemail texts (chosen from those and the list only; the held-out texts
    # were not used, though they are in the same source file)
    "leave your message",
    "leave your name",
    "record your message",
    "can't come to the phone",
    "call you back",
    "missed your call",
    "the person you are calling",
    "thank you for calling",
)
"""What voicemail greetings say and people answering a call do not. Fixed before the held-out part was first scored
with the cue, and not changed after."""

SENSITIVITY = 1.5
"""Spotting threshold per phone of the phrase, as a power of ten: a phrase of ``n`` phones is reported when its
score beats ``10 ** -(SENSITIVITY * n)``. Higher is more eager (more machines, and more false matches). Chosen on
the development part (docs/amd.md): 1.0-4.0 were tried, and from 2.0 up a person's "Hello, who is this?" was heard
as "you've reached"; at 1.5 nothing any person said there matched a phrase."""

INITIAL_CMN = "45.41,19.16,-36.38,42.04,-37.06,19.99,-6.79,-9.08,10.38,-14.49,12.33,-9.94,2.78"
"""The cepstral mean each call starts from: pocketsphinx's own (40,3,-1,0,...) is for wide-band speech, and with it
the first seconds of 8-kHz line audio, upsampled, are heard poorly (on the development part the spotter then found a
phrase in 9 of 84 machines' first 5 s, against 35 from this one). This is where pocketsphinx's live mean settles
over the development part's calls (the first 4 s of each, iterated from the model's mean until it stopped moving);
it goes on adapting within each call. Fixed rather than carried from call to call, so a verdict never depends on
which call the pooled decoder heard before."""

RATE = 16000
"""The en-us model's sample rate; the 8-kHz line audio is upsampled to it."""

_HALF_BAND: list[float] = []


_AVAILABLE: list[bool] = []


def available() -> bool:
    """Whether pocketsphinx imports (the keyword cue's only dependency beyond NumPy); tried once per process, so a
    broken install (a missing shared library) turns the cue off instead of failing every detector."""
    if not _AVAILABLE:
        try:
            import pocketsphinx  # noqa: F401
        except Exception:  # ImportError, or OSError from a broken wheel
            _AVAILABLE.append(False)
        else:
            _AVAILABLE.append(True)
    return _AVAILABLE[0]


def _half_band() -> Any:
    """A 2x interpolation filter for zero-stuffed samples (windowed sinc, 47 taps, cut-off at the old Nyquist)."""
    import numpy as np

    if not _HALF_BAND:
        n = np.arange(-23, 24)
        taps = np.sinc(n / 2.0) * np.kaiser(len(n), 6.0)
        taps[n % 2 == 1] /= taps[n % 2 == 1].sum()  # unit gain for the interpolated phase (the other is 1 already)
        _HALF_BAND.extend(taps.tolist())
    return np.asarray(_HALF_BAND)


class _Pool:
    """Idle decoders, one model and dictionary load each, shared by the spotters of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[tuple[str, ...], float], list[Any]] = {}

    def take(self, phrases: tuple[str, ...], sensitivity: float) -> Any:
        with self._lock:
            idle = self._idle.get((phrases, sensitivity))
            if idle:
                return idle.pop()
        return _decoder(phrases, sensitivity)

    def give(self, phrases: tuple[str, ...], sensitivity: float, decoder: Any) -> None:
        with self._lock:
            idle = self._idle.setdefault((phrases, sensitivity), [])
            if len(idle) < 16:
                idle.append(decoder)


_POOL = _Pool()


_EN_US: dict[str, tuple[str, ...]] = {
    "a": (
        "a AH",
        "a(2) EY",
    ),
    "after": ("after AE F T ER",),
    "are": (
        "are AA R",
        "are(2) ER",
    ),
    "available": ("available AH V EY L AH B AH L",),
    "back": ("back B AE K",),
    "beep": ("beep B IY P",),
    "call": ("call K AO L",),
    "calling": ("calling K AO L IH NG",),
    "can't": ("can't K AE N T",),
    "come": ("come K AH M",),
    "for": (
        "for F AO R",
        "for(2) F ER",
        "for(3) F R ER",
    ),
    "have": ("have HH AE V",),
    "leave": ("leave L IY V",),
    "message": (
        "message M EH S AH JH",
        "message(2) M EH S IH JH",
    ),
    "missed": ("missed M IH S T",),
    "name": ("name N EY M",),
    "not": ("not N AA T",),
    "person": ("person P ER S AH N",),
    "phone": ("phone F OW N",),
    "please": ("please P L IY Z",),
    "reached": ("reached R IY CH T",),
    "record": (
        "record R AH K AO R D",
        "record(2) R EH K ER D",
        "record(3) R IH K AO R D",
    ),
    "take": ("take T EY K",),
    "thank": ("thank TH AE NG K",),
    "the": (
        "the DH AH",
        "the(2) DH IY",
    ),
    "to": (
        "to T UW",
        "to(2) T IH",
        "to(3) T AH",
    ),
    "tone": ("tone T OW N",),
    "unable": ("unable AH N EY B AH L",),
    "voicemail": ("voicemail V OY S M EY L",),
    "you": ("you Y UW",),
    "you've": ("you've Y UW V",),
    "your": (
        "your Y AO R",
        "your(2) Y UH R",
    ),
}
"""The lines of the wheel's en-us dictionary (cmudict-en-us.dict) for the words of :data:`PHRASES`, so the first
decoder of a process need not read its 130,000 lines (60 ms); other phrases' words are looked up there."""

_DICTIONARY: dict[str, list[str]] = {w: [line + "\n" for line in lines] for w, lines in _EN_US.items()}
_DICTIONARY_LOCK = threading.Lock()


def _pronunciations(words: set[str]) -> dict[str, list[str]]:
    """Each word's lines of the en-us dictionary (alternates included), read once per process and kept."""
    import os

    from pocketsphinx import get_model_path

    with _DICTIONARY_LOCK:
        missing = words - _DICTIONARY.keys()
        if missing:
            found: dict[str, list[str]] = {w: [] for w in missing}
            with open(os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict"), encoding="utf-8") as f:
                for line in f:
                    head = line.split(" ", 1)[0].split("(", 1)[0]
                    if head in found:
                        found[head].append(line if line.endswith("\n") else line + "\n")
            _DICTIONARY.update(found)
        return {w: _DICTIONARY[w] for w in words}


def _decoder(phrases: tuple[str, ...], sensitivity: float) -> Any:
    """A decoder that searches for ``phrases`` only: no language model, a dictionary of their words (about 15 ms
    to build, against 0.5 s with the full dictionary and language model, which would stall the worker)."""
    import os
    import tempfile

    from pocketsphinx import Decoder

    pron = _pronunciations({w for p in phrases for w in p.split()})
    unknown = sorted(w for w, lines in pron.items() if not lines)
    if unknown:
        raise ConfigError("amd.keywords", f"not in the pocketsphinx dictionary: {', '.join(unknown)}")
    kws = []
    for phrase in phrases:
        phones = sum(len(pron[w][0].split()) - 1 for w in phrase.split())  # the first pronunciation's phones
        kws.append(f"{phrase} /{10.0 ** -(sensitivity * phones):.3e}/\n")
    paths = []
    try:
        for suffix, lines in ((".dict", [line for w in sorted(pron) for line in pron[w]]), (".kws", kws)):
            fd, path = tempfile.mkstemp(prefix="amd-", suffix=suffix)
            paths.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(lines)
        return Decoder(loglevel="FATAL", lm=None, dict=paths[0], kws=paths[1])  # both files are read here
    finally:
        for path in paths:
            os.remove(path)


def preload(decoders: int = 1) -> None:
    """Load ``decoders`` decoders for the default phrases into this process's pool now (about 15 ms each, and the
    pocketsphinx import): a worker can call it at start so that its first calls' detectors do not pay for it
    while the call's media waits. Results do not depend on it (every call starts from :data:`INITIAL_CMN`)."""
    spotters = [KeywordSpotter() for _ in range(decoders)]
    for spotter in spotters:
        spotter.close()


class KeywordSpotter:
    """Feed 20-ms frames of 8-kHz 16-bit audio; :meth:`feed` returns a phrase of ``phrases`` once it is heard.

    Streaming: each frame is upsampled and decoded as it comes (the search keeps its state between frames), so
    the cost is spread over the call instead of falling at the decision. ``elapsed`` counts the seconds fed;
    :attr:`heard` lists (seconds, phrase) for every phrase reported. :meth:`close` returns the decoder to the
    pool; feeding after it does nothing.
    """

    def __init__(self, phrases: Sequence[str] = PHRASES, *, sensitivity: float = SENSITIVITY) -> None:
        import numpy as np

        if not phrases:
            raise ConfigError("amd.keywords", "needs at least one phrase")
        if not sensitivity > 0 or not math.isfinite(sensitivity):
            raise ConfigError("amd.keyword_sensitivity", "must be a positive number")
        self._np: Any = np
        self.phrases = tuple(p.lower().strip() for p in phrases)
        self.sensitivity = float(sensitivity)
        self._decoder: Any = _POOL.take(self.phrases, self.sensitivity)
        # pocketsphinx carries its running cepstral mean from one utterance to the next: start every call from
        # the same one, so a verdict never depends on which call the pooled decoder heard before
        self._decoder.set_cmn(INITIAL_CMN)
        self._decoder.start_utt()
        self._taps: Any = _half_band()
        self._tail: Any = np.zeros(len(self._taps) - 1)  # the zero-stuffed samples the filter still needs
        self.elapsed = 0.0
        self.heard: list[tuple[float, str]] = []

    def feed(self, frame: bytes) -> str | None:
        """Decode one frame; the phrase heard by its end (the first if several), else ``None``."""
        if self._decoder is None:
            return None
        if len(frame) != FRAME_BYTES:
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        self.elapsed += FRAME_SECONDS
        self._decoder.process_raw(self._upsample(frame))
        hyp = self._decoder.hyp()
        if hyp is None:
            return None
        words = hyp.hypstr.split()
        phrase = next((p for p in self.phrases if words[: len(p.split())] == p.split()), " ".join(words))
        self.heard.append((self.elapsed, phrase))
        self._decoder.end_utt()  # reset the search so the next phrase is reported on its own
        self._decoder.start_utt()
        return phrase

    def _upsample(self, frame: bytes) -> bytes:
        np = self._np
        stuffed = np.zeros(len(self._tail) + FRAME_BYTES)  # 160 samples in, 320 out
        stuffed[len(self._tail) :: 2] = np.frombuffer(frame, dtype="<i2")
        stuffed[: len(self._tail)] = self._tail
        y = np.convolve(stuffed, self._taps, mode="valid")  # causal: 23 samples (1.4 ms) late, nothing cut
        self._tail = stuffed[-len(self._tail) :]
        out: bytes = np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()
        return out

    def close(self) -> None:
        """Give the decoder back to the pool (idempotent)."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.end_utt()
            _POOL.give(self.phrases, self.sensitivity, decoder)


__all__ = ["INITIAL_CMN", "PHRASES", "SENSITIVITY", "KeywordSpotter", "available", "preload"]
