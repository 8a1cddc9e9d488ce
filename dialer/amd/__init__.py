"""Answering-machine detection: is the voice that answered a person saying "Hello?" or a recorded greeting?

Everything here must decide within ``budget`` seconds of the answer (1.5 s by default), because detection time
counts against the 2-s connect limit and the bridge to an agent needs the rest. Three cues, all read from 20-ms
PCM frames (8 kHz, mono, 16-bit):

* **Voice**: a frame is voice when webrtcvad says so *and* its energy stands ``margin_db`` above the line's noise
  floor (the quietest 60 ms heard so far). webrtcvad alone calls steady hiss or hum speech, and a person waiting
  on a noisy line would then look like a machine talking on.
* **Burst timing** (Asterisk ``app_amd`` in spirit): a person says something short and waits for us; a machine
  talks on. Voice spanning ``greeting`` seconds (pauses up to ``word_gap`` bridged) is a machine;
  ``after_greeting_silence`` of quiet after at most ``max_person`` seconds of voice is a person.
* **The beep**: a steady single tone (300-3,000 Hz) for ``beep`` seconds is a voicemail's record tone. A person's
  line does not beep, so this cue costs people nothing.
* **Voicemail phrases** (optional, :mod:`dialer.amd.keywords`): pocketsphinx keyphrase spotting, streaming, for
  "you have reached", "leave a message", "not available" and the like; a phrase heard once the talk spans
  ``keyword_min_span`` is a machine. On whenever pocketsphinx is installed; without it the detector runs on the
  cues above alone, exactly as before.

Everything else is ``unsure``, which the runtime treats as a person (it goes to an agent). Failing closed is the
design: a person taken for a machine is hung up on, an abandoned call nobody counted, while a machine taken for
"unsure" costs an agent a few seconds. Silence until the budget, talk that pauses after a long sentence (a
receptionist's "Good morning, Acme Plumbing, how can I help?"), and anything still undecided at the budget are
all ``unsure``.

What this can and cannot do, measured on the held-out corpus (``python -m benchmarks.amd_accuracy``, docs/amd.md):
within 1.5 s of the answer a one-sentence or business answer and the start of a voicemail greeting have the same
timing, so the detector leaves most long greetings ``unsure`` rather than hang up on receptionists.
:data:`PEOPLE_TAKEN_FOR_MACHINES` is the share of people it takes for machines, for the compliance report.

Where the connect clock starts decides how long it may listen. After a verdict, :attr:`Detector.speech_start` and
:attr:`Detector.greeting_end` say when the first word began and when the voice last stopped (both err early, so a
clock started there never starts late). :data:`PRESETS` holds the settings for each clock: ``answer`` and
``speech_start`` decide by 1.5 s after the answer; ``greeting_end`` (the US rule: the clock starts when the
person's greeting ends) listens up to 5 s and catches most machines, deciding people within 0.82 s of their
greeting's end. :data:`PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK` gives each preset's figure.

The detector is Python over PCM frames, so it is tested on a corpus without SIP, and the worker runs it on
pjmedia's clock thread. webrtcvad, NumPy and pocketsphinx load when the first detector is built, not on
``import dialer``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from dialer.amd._common import FRAME_BYTES, FRAME_SECONDS, MACHINE, PERSON, SAMPLE_RATE, UNSURE
from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.sip.config import AmdConfig


@dataclass(frozen=True, slots=True)
class FalseMachineEstimate:
    """The measured share of people the default detector takes for machines, for the abandonment rate (Ofcom).

    ``point`` is the held-out share, ``upper95`` its 95% Wilson upper bound (the figure to add when the estimate
    must not flatter the campaign), ``people`` how many held-out people calls it rests on.
    """

    point: float
    upper95: float
    people: int
    source: str


# Measured by ``python -m benchmarks.amd_accuracy`` on the held-out corpus, one per connect clock's preset
# (PRESETS below), with the keyword cue on (the worker's detector uses it whenever pocketsphinx is installed); without
# it each figure is the same or lower (greeting_end: 4 of 225), so these hold either way. Re-run and update them
# whenever the detector, the keyword cue or a preset changes (tests/test_amd_accuracy.py checks each is consistent
# with its counts, and the greeting_end one against a held-out sample).
PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK: dict[str, FalseMachineEstimate] = {
    "answer": FalseMachineEstimate(
        point=8 / 225,
        upper95=0.0686,
        people=225,
        source="benchmarks/amd_accuracy.py, held-out corpus, 'answer' preset (budget 1.5 s), keyword cue on or off: "
        "8 of 225 people",
    ),
    "speech_start": FalseMachineEstimate(
        point=8 / 225,
        upper95=0.0686,
        people=225,
        source="benchmarks/amd_accuracy.py, held-out corpus, 'speech_start' preset (= 'answer'), keyword cue on or "
        "off: 8 of 225 people",
    ),
    "greeting_end": FalseMachineEstimate(
        point=5 / 225,
        upper95=0.0510,
        people=225,
        source="benchmarks/amd_accuracy.py, held-out corpus, 'greeting_end' preset (budget 5.0 s), keyword cue on: "
        "5 of 225 people (4 without the cue)",
    ),
}
"""The share of people each connect clock's preset takes for machines: the figure the compliance report adds to
the abandonment rate depends on which detector settings the campaign ran with."""

PEOPLE_TAKEN_FOR_MACHINES = PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK["answer"]
"""The default AmdConfig's (the ``answer`` preset's) figure; kept under its old name for existing callers."""


ONSET_CHAIN_GAP = 0.6
"""Voiced bits (each too short to be a word) closer than this to the next are taken as the first word's start."""
ONSET_DB = 3.0
"""How far above the noise floor a frame before the first voiced one must be to count as the word's onset."""
ONSET_LOOKBACK = 0.3
"""The furthest :attr:`Detector.speech_start` walks back over such frames, so steady noise cannot drag it far."""
ONSET_MARGIN = 0.1
"""Taken off the onset found so that ``speech_start`` is never late. On the development corpus, against the true
onset (the clean recording's first sample above 1% of the voice's peak), the estimate is 0.027-0.35 s early with
0.1 s taken off; with 0.06 s it was late on 3 of 213 calls (by up to 13 ms)."""


class AmdPreset(TypedDict):
    """The :class:`Detector` keyword arguments (and ``AmdConfig`` fields) one connect clock needs."""

    budget: float
    initial_silence: float
    greeting: float
    after_greeting_silence: float
    max_person: float
    waiting: float
    max_words: int


CLOCKS = ("answer", "speech_start", "greeting_end")
"""Where the 2-s connect clock may start (docs/amd.md, "The clocks"): Canada's rule, the UK's, the US's."""

PRESETS: dict[str, AmdPreset] = {
    # The clock runs from the answer: a verdict by 1.5 s leaves 0.5 s for the bridge. These are AmdConfig's
    # defaults, tuned on the development part with the budget fixed at 1.5 s.
    "answer": {
        "budget": 1.5,
        "initial_silence": 1.5,
        "greeting": 1.2,
        "after_greeting_silence": 0.3,
        "max_person": 0.8,
        "waiting": 0.8,
        "max_words": 6,
    },
    # The clock runs from the first word. Deciding by 1.5 s after it is no better: at most 1.5 s of anyone's talk
    # is heard either way, and on the development part every setting tried that catches even 2 of 84 machines
    # takes 44 or more of 150 people for machines (a receptionist's first 1.5 s is a voicemail's). So this is
    # the "answer" preset; its verdict by 1.5 s after the answer is also by 1.5 s after the first word.
    "speech_start": {
        "budget": 1.5,
        "initial_silence": 1.5,
        "greeting": 1.2,
        "after_greeting_silence": 0.3,
        "max_person": 0.8,
        "waiting": 0.8,
        "max_words": 6,
    },
    # The clock runs from the end of the person's greeting, so listening longer costs them nothing as long as
    # the verdict follows the greeting quickly: a person's comes after_greeting_silence (0.5 s) after their last
    # word, an unsure one after waiting (0.8 s) of quiet, both well inside 2 s less the bridge. Silence is unsure
    # at 1.5 s (no greeting: the clock runs from the answer). Talk spanning 3.2 s is a machine (a receptionist's
    # greeting is shorter); 5 s leaves room for a 0.8-s lead, pauses and the beep after short greetings. The
    # word count is off (99): it added no machine on the development part and can only add people.
    "greeting_end": {
        "budget": 5.0,
        "initial_silence": 1.5,
        "greeting": 3.2,
        "after_greeting_silence": 0.5,
        "max_person": 0.8,
        "waiting": 0.8,
        "max_words": 99,
    },
}
"""Detector settings per connect clock, tuned on the development part of the corpus only (docs/amd.md)."""


def amd_preset(clock: str) -> AmdPreset:
    """The detector settings for ``clock`` (a copy): ``dataclasses.replace(amd_cfg, **amd_preset(clock))``."""
    if clock not in PRESETS:
        raise ConfigError("campaign.connect_clock", f"must be one of {', '.join(CLOCKS)}, not {clock!r}")
    return PRESETS[clock].copy()


KEYWORD_MIN_SPAN = 0.5
"""Talk spanning less than this is never a machine on a phrase alone: a person's "Hello?" cannot be hung up on
because the spotter misheard it. (On the development part no person's words matched a phrase at all; 0.5 s costs
2 of 84 machines there against no guard, under the ``answer`` preset.)"""


class Spotter(Protocol):
    """What :class:`Detector` needs of a keyword cue (:class:`dialer.amd.keywords.KeywordSpotter`, or a fake)."""

    def feed(self, frame: bytes) -> str | None: ...

    def close(self) -> None: ...


class _Vad(Protocol):
    def is_speech(self, buf: bytes, sample_rate: int) -> bool: ...


def _vad(mode: int) -> _Vad:
    import webrtcvad

    vad: _Vad = webrtcvad.Vad(mode)
    return vad


class Detector:
    """Feed 20-ms frames with :meth:`feed` until it returns a verdict (``person``, ``machine`` or ``unsure``).

    ``budget``: seconds after the answer by which a verdict is given (``unsure`` if nothing else); at most the
    connect limit minus the bridge. ``initial_silence``: no voice for this long is ``unsure`` early (capped by the
    budget). ``greeting``: voice spanning this long is a machine. ``after_greeting_silence``: quiet that ends a
    person's answer. ``max_person``: the longest voice span still called a person when it stops; longer talk goes
    on being heard (machines pause between sentences too) until it spans ``greeting`` (a machine) or ``waiting``
    seconds of quiet follow it (``unsure``: a receptionist waiting for us, decided early to leave the bridge
    time). ``max_words``: more words than this is a machine. ``word_gap``: quiet shorter than this does not
    split a burst. ``min_word``: voice shorter than this is a click, not a word. ``margin_db``: how far above
    the noise floor voice must be. ``beep``: seconds of steady tone that make a voicemail beep (0 turns the cue
    off). ``vad_mode``: webrtcvad aggressiveness 0-3 (3 rejects the most noise).

    ``keywords``: the voicemail-phrase cue (:mod:`dialer.amd.keywords`): ``None`` (the default) uses it when
    pocketsphinx is installed, ``True`` requires it (``ConfigError`` without pocketsphinx), ``False`` turns it off.
    A phrase heard once the voice spans ``keyword_min_span`` seconds is a machine (cue ``keyword``); a phrase on
    silence or on a short answer decides nothing. ``spotter``: any object with ``feed(frame) -> str | None`` and
    ``close()`` to use instead (tests). :attr:`phrase` is the first phrase heard; :meth:`close` frees the
    spotter's decoder (done at the verdict).

    :attr:`speech_start` and :attr:`greeting_end` (seconds after the answer, ``None`` before any word) are where a
    connect clock that starts at the first word or at the end of the greeting starts; read them after the verdict.
    """

    def __init__(
        self,
        *,
        budget: float = 1.5,
        initial_silence: float = 1.5,
        greeting: float = 1.2,
        after_greeting_silence: float = 0.3,
        max_person: float = 0.8,
        waiting: float = 0.8,
        max_words: int = 6,
        word_gap: float = 0.1,
        min_word: float = 0.1,
        margin_db: float = 12.0,
        beep: float = 0.3,
        vad_mode: int = 3,
        keywords: bool | None = None,
        keyword_min_span: float = KEYWORD_MIN_SPAN,
        spotter: Spotter | None = None,
    ) -> None:
        if budget <= 0:
            raise ConfigError("amd.budget", "must be > 0")
        if not 0 <= vad_mode <= 3:
            raise ConfigError("amd.vad_mode", "must be 0, 1, 2 or 3")
        if greeting <= 0 or after_greeting_silence <= 0 or max_words < 1 or max_person <= 0:
            raise ConfigError("amd", "greeting, after_greeting_silence, max_person and max_words must be positive")
        if margin_db < 0 or beep < 0 or word_gap < 0 or min_word < 0 or keyword_min_span < 0:
            raise ConfigError("amd", "margin_db, beep, word_gap, min_word and keyword_min_span must not be negative")
        if spotter is None and keywords is not False:
            from dialer.amd import keywords as kw

            if kw.available():
                spotter = kw.KeywordSpotter()
            elif keywords:
                raise ConfigError("amd.keywords", "needs pocketsphinx (pip install pocketsphinx)")
        import numpy as np

        self._np: Any = np
        self._window: Any = np.hanning(FRAME_BYTES // 2)
        self._vad = _vad(vad_mode)
        self.budget = budget
        self.initial_silence = initial_silence
        self.greeting = greeting
        self.after_greeting_silence = after_greeting_silence
        self.max_person = max_person
        self.waiting = waiting
        self.max_words = max_words
        self.word_gap = word_gap
        self.min_word = min_word
        self.margin_db = margin_db
        self.beep = beep
        self.keyword_min_span = keyword_min_span
        self._spotter = spotter
        self.phrase: str | None = None  # the first voicemail phrase the spotter heard, if any
        self.elapsed = 0.0
        self.words = 0
        self.verdict: str | None = None
        self.cue = ""  # what decided: "burst", "words", "beep", "keyword", "pause", "silence", "budget"
        self._voice_start: float | None = None
        self._voice_end = 0.0
        self._speech_start: float | None = None
        self._chain_start = -1  # frame index where the voiced frames leading to the first word began
        self._last_voiced = -1  # frame index of the latest voiced frame (any length, clicks included)
        self._run = 0.0  # current voiced run (gaps under word_gap bridged)
        self._silence = 0.0  # current silent run
        self._energies: list[float] = []
        self._floor = math.inf
        self._tone = 0.0  # current steady-tone run
        self._tone_bin = -10

    @classmethod
    def from_config(cls, cfg: AmdConfig) -> Detector:
        return cls(
            budget=cfg.budget,
            initial_silence=cfg.initial_silence,
            greeting=cfg.greeting,
            after_greeting_silence=cfg.after_greeting_silence,
            max_person=cfg.max_person,
            waiting=cfg.waiting,
            max_words=cfg.max_words,
            word_gap=cfg.word_gap,
            min_word=cfg.min_word,
            margin_db=cfg.margin_db,
            beep=cfg.beep,
            vad_mode=cfg.vad_mode,
            keywords=getattr(cfg, "keywords", None),  # an AmdConfig field if one is added; else: when installed
        )

    def feed(self, frame: bytes) -> str | None:
        """Classify one 20-ms frame; returns the verdict once, when it is reached, else ``None``."""
        if self.verdict is not None:
            return None
        if len(frame) != FRAME_BYTES:
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")  # a short or odd frame counts as its time
        self.elapsed += FRAME_SECONDS
        np = self._np
        x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        energy = 10.0 * math.log10(float(np.dot(x, x)) / len(x) + 1.0)
        self._energies.append(energy)
        recent = self._energies[-3:]
        self._floor = min(self._floor, sum(recent) / len(recent))
        loud = energy > self._floor + self.margin_db
        self._track_tone(x, loud)
        voiced = loud and bool(self._vad.is_speech(frame, SAMPLE_RATE))
        if self._spotter is not None:
            try:
                phrase = self._spotter.feed(frame)
            except Exception:  # a failing cue must not silence the detector: go on with the timing cues
                self.close()
                phrase = None
            if phrase is not None and self.phrase is None:
                self.phrase = phrase
        if voiced:
            index = len(self._energies) - 1
            if self._voice_start is None and (
                self._chain_start < 0 or (index - self._last_voiced - 1) * FRAME_SECONDS > ONSET_CHAIN_GAP + 1e-9
            ):
                self._chain_start = index  # voice after a long quiet: the first word may start here
            self._last_voiced = index
            if self._silence >= self.word_gap or self._run == 0.0:
                self._run = 0.0
            self._run += FRAME_SECONDS
            self._silence = 0.0
            if self._run >= self.min_word - 1e-9:
                if self._voice_start is None:
                    self._voice_start = self.elapsed - self._run
                    self._speech_start = self._onset()
                if abs(self._run - self.min_word) < FRAME_SECONDS / 2:
                    self.words += 1  # this run just became a word
                self._voice_end = self.elapsed
        else:
            self._silence += FRAME_SECONDS
            if self._silence >= self.word_gap:
                self._run = 0.0
        self.verdict = self._decide()
        if self.verdict is not None:
            self.close()
        return self.verdict

    @property
    def keywords(self) -> bool:
        """Whether the keyword cue is listening (pocketsphinx found, or a spotter given); ``False`` after
        :meth:`close`."""
        return self._spotter is not None

    def close(self) -> None:
        """Stop the keyword cue and give its decoder back (done at the verdict; call it if you drop a detector
        undecided, or let it be garbage)."""
        spotter, self._spotter = self._spotter, None
        if spotter is not None:
            spotter.close()

    @property
    def speech_start(self) -> float | None:
        """Seconds after the answer when the first word began, or ``None`` while no word has been heard.

        The UK's 2-s clock starts here, so the estimate must never be late: it goes back from the first voiced
        frame over the voiced bits (syllables too short to count as a word) that led to it, then over frames
        standing ``ONSET_DB`` above the noise floor (a quiet onset webrtcvad misses), then a further
        ``ONSET_MARGIN``. On the corpus it is 0.027-0.39 s early, never late (docs/amd.md). A click before the
        word can make it earlier still, which only starts the clock early. Set once, when the first word is
        heard; a verdict of ``unsure`` on silence leaves it ``None`` (the clock then runs from the answer).
        """
        return self._speech_start

    @property
    def greeting_end(self) -> float | None:
        """Seconds after the answer when the voice heard so far last stopped, or ``None`` while no word was heard.

        After a ``person`` verdict this is the end of their greeting, where the US 2-s clock starts; after an
        ``unsure`` one, the end of the talk heard so far (about now if they were still talking). It is the
        *start* of the last frame heard as voice, up to one frame before the voice really stopped, so the clock
        is never started late: speech can end anywhere inside that frame. Once a word has been heard, every voiced
        frame counts, even a run too short to be a word: the quiet that leads to a verdict is counted from the
        same frame, so a verdict comes at most ``max(after_greeting_silence, waiting)`` plus one frame after it.
        On the held-out corpus it is 0.001-0.82 s before the last sound of the clean recording heard by the
        verdict, never after it (docs/amd.md).
        """
        if self._voice_start is None:
            return None
        return max(self._last_voiced * FRAME_SECONDS, self._voice_start)

    def _onset(self) -> float:
        """Where the first word began: see :attr:`speech_start` for why each step errs early."""
        quiet_above = self._floor + ONSET_DB
        first = best = self._chain_start
        k, quiet = first, 0
        while k > 0 and (first - k) * FRAME_SECONDS < ONSET_LOOKBACK - 1e-9:
            k -= 1
            if self._energies[k] > quiet_above:
                best, quiet = k, 0
            else:
                quiet += 1
                if quiet >= 3:  # three quiet frames in a row: the word started after them (1-2 are a dip)
                    break
        return max(0.0, best * FRAME_SECONDS - ONSET_MARGIN)

    def _track_tone(self, x: Any, loud: bool) -> None:
        """Count consecutive frames whose power sits in one narrow band (the same bin, +-1): a beep."""
        if not self.beep or not loud:
            self._tone = 0.0
            return
        np = self._np
        spectrum = np.abs(np.fft.rfft(x * self._window)) ** 2
        k = int(np.argmax(spectrum))
        share = float(spectrum[max(k - 1, 0) : k + 2].sum() / max(float(spectrum.sum()), 1e-12))
        hz = k * SAMPLE_RATE / len(x)
        if share >= 0.8 and 300.0 <= hz <= 3000.0:
            self._tone = self._tone + FRAME_SECONDS if abs(k - self._tone_bin) <= 1 else FRAME_SECONDS
            self._tone_bin = k
        else:
            self._tone = 0.0

    def _decide(self) -> str | None:
        if self.beep and self._tone >= self.beep - 1e-9:
            return self._say(MACHINE, "beep")
        if self._voice_start is None:
            if self.elapsed >= min(self.initial_silence, self.budget) - 1e-9:
                return self._say(UNSURE, "silence")
            return None
        span = self._voice_end - self._voice_start
        if self.phrase is not None and span >= self.keyword_min_span - 1e-9:
            return self._say(MACHINE, "keyword")
        if span >= self.greeting - 1e-9:
            return self._say(MACHINE, "burst")
        if self.words > self.max_words:
            return self._say(MACHINE, "words")
        if self._silence >= self.after_greeting_silence - 1e-9 and span <= self.max_person + 1e-9:
            return self._say(PERSON, "pause")
        if self._silence >= self.waiting - 1e-9:
            return self._say(UNSURE, "pause")  # long talk, then a long wait: a receptionist more likely than a tape
        if self.elapsed >= self.budget - 1e-9:
            return self._say(UNSURE, "budget")
        return None

    def _say(self, verdict: str, cue: str) -> str:
        self.cue = cue
        return verdict


READY = "ready"
TIMED_OUT = "timeout"


class GreetingEnd:
    """Waits for a machine's greeting (and its beep) to finish, so a message we leave is recorded whole.

    Fed the same 20-ms frames as :class:`Detector` after a ``machine`` verdict. Returns ``ready`` once ``silence``
    seconds pass without voice (webrtcvad counts the beep as voice, so the wait also covers it), or ``timeout``
    at ``max_wait``: a greeting that never ends (music, a noisy line) still gets the message rather than an open
    line forever.
    """

    def __init__(self, *, silence: float = 0.8, max_wait: float = 20.0, vad_mode: int = 3) -> None:
        if silence <= 0 or max_wait <= 0:
            raise ConfigError("voicemail", "silence and max_wait must be > 0")
        if not 0 <= vad_mode <= 3:
            raise ConfigError("amd.vad_mode", "must be 0, 1, 2 or 3")
        self._vad = _vad(vad_mode)
        self.silence = silence
        self.max_wait = max_wait
        self.elapsed = 0.0
        self._quiet = 0.0
        self.verdict: str | None = None

    def feed(self, frame: bytes) -> str | None:
        if self.verdict is not None:
            return None
        if len(frame) != FRAME_BYTES:
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        self.elapsed += FRAME_SECONDS
        if self._vad.is_speech(frame, SAMPLE_RATE):
            self._quiet = 0.0
        else:
            self._quiet += FRAME_SECONDS
        if self._quiet >= self.silence - 1e-9:
            self.verdict = READY
        elif self.elapsed >= self.max_wait - 1e-9:
            self.verdict = TIMED_OUT
        return self.verdict


class _Feedable(Protocol):
    elapsed: float

    def feed(self, frame: bytes) -> str | None: ...


def run_detector(detector: _Feedable, pcm: bytes) -> tuple[str, float]:
    """Feed a whole recording, then silence (what a waiting person gives) until a verdict: verdict and seconds."""
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        verdict = detector.feed(pcm[i : i + FRAME_BYTES])
        if verdict is not None:
            return verdict, detector.elapsed
    silence = bytes(FRAME_BYTES)
    while True:
        verdict = detector.feed(silence)
        if verdict is not None:
            return verdict, detector.elapsed


def classify_pcm(pcm: bytes, **params: Any) -> tuple[str, float]:
    """Run a :class:`Detector` (``params`` are its keyword arguments) over a recording: verdict and seconds."""
    return run_detector(Detector(**params), pcm)


__all__ = [
    "CLOCKS",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "KEYWORD_MIN_SPAN",
    "MACHINE",
    "PEOPLE_TAKEN_FOR_MACHINES",
    "PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK",
    "PERSON",
    "PRESETS",
    "READY",
    "SAMPLE_RATE",
    "TIMED_OUT",
    "UNSURE",
    "AmdPreset",
    "Detector",
    "FalseMachineEstimate",
    "GreetingEnd",
    "Spotter",
    "amd_preset",
    "classify_pcm",
    "run_detector",
]
