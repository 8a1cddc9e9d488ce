"""Answering-machine detection: is the voice that answered a person saying "Hello?" or a recorded greeting?

The algorithm follows Asterisk's ``app_amd`` in spirit: a voice-activity detector (webrtcvad) labels each 20-ms
frame, and a few timings decide. A person says something short and then waits for us (short greeting, then
silence); a machine talks on (long greeting, many words). Two deliberate departures, both to fail closed:

* Long initial silence is ``unsure``, not ``machine``: hanging up on a silent person would be an abandoned call
  nobody counted. ``unsure`` is treated as a person by the runtime.
* There is a hard ``budget`` (seconds after answer): past it the verdict is ``unsure``. Detection eats into the
  connect limit (the engine back-dates the answer), so the budget must leave time to reach an agent.

The detector is pure Python over PCM frames (8 kHz, mono, 16-bit), so it is tested on a corpus without SIP, and
the worker runs it on pjmedia's clock thread. webrtcvad loads when the first detector is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.sip.config import AmdConfig

PERSON = "person"
MACHINE = "machine"
UNSURE = "unsure"

SAMPLE_RATE = 8000
FRAME_SECONDS = 0.02
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECONDS) * 2


class Detector:
    """Feed 20-ms frames with :meth:`feed` until it returns a verdict.

    ``greeting``: voice longer than this (seconds, short gaps included) is a machine. ``after_greeting_silence``:
    this much silence after some voice is a person who is waiting. ``max_words``: more words than this is a
    machine. ``word_gap``: silence that separates words. ``min_word``: voice shorter than this is a click, not a
    word. ``vad_mode``: webrtcvad aggressiveness 0-3 (3 rejects the most noise).
    """

    def __init__(
        self,
        *,
        budget: float = 2.0,
        initial_silence: float = 2.0,
        greeting: float = 1.2,
        after_greeting_silence: float = 0.4,
        max_words: int = 4,
        word_gap: float = 0.1,
        min_word: float = 0.1,
        vad_mode: int = 3,
    ) -> None:
        if budget <= 0:
            raise ConfigError("amd.budget", "must be > 0")
        if not 0 <= vad_mode <= 3:
            raise ConfigError("amd.vad_mode", "must be 0, 1, 2 or 3")
        if greeting <= 0 or after_greeting_silence <= 0 or max_words < 1:
            raise ConfigError("amd", "greeting, after_greeting_silence and max_words must be positive")
        import webrtcvad

        self._vad: Any = webrtcvad.Vad(vad_mode)
        self.budget = budget
        self.initial_silence = initial_silence
        self.greeting = greeting
        self.after_greeting_silence = after_greeting_silence
        self.max_words = max_words
        self.word_gap = word_gap
        self.min_word = min_word
        self.elapsed = 0.0
        self.words = 0
        self.verdict: str | None = None
        self._voice_start: float | None = None
        self._voice_end = 0.0
        self._run = 0.0  # current voiced run
        self._silence = 0.0  # current silent run

    @classmethod
    def from_config(cls, cfg: AmdConfig) -> Detector:
        return cls(
            budget=cfg.budget,
            initial_silence=cfg.initial_silence,
            greeting=cfg.greeting,
            after_greeting_silence=cfg.after_greeting_silence,
            max_words=cfg.max_words,
            vad_mode=cfg.vad_mode,
        )

    def feed(self, frame: bytes) -> str | None:
        """Classify one 20-ms frame; returns the verdict once, when it is reached, else ``None``."""
        if self.verdict is not None:
            return None
        if len(frame) != FRAME_BYTES:
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")  # a short or odd frame counts as its time
        self.elapsed += FRAME_SECONDS
        voiced = bool(self._vad.is_speech(frame, SAMPLE_RATE))
        if voiced:
            if self._silence >= self.word_gap or self._run == 0.0:
                self._run = 0.0
            self._run += FRAME_SECONDS
            self._silence = 0.0
            if self._run >= self.min_word:
                if self._voice_start is None:
                    self._voice_start = self.elapsed - self._run
                if abs(self._run - self.min_word) < FRAME_SECONDS / 2:
                    self.words += 1  # this run just became a word
                self._voice_end = self.elapsed
        else:
            self._silence += FRAME_SECONDS
            if self._silence >= self.word_gap:
                self._run = 0.0
        self.verdict = self._decide()
        return self.verdict

    def _decide(self) -> str | None:
        if self._voice_start is None:
            if self.elapsed >= min(self.initial_silence, self.budget):
                return UNSURE
            return None
        if self._voice_end - self._voice_start > self.greeting or self.words > self.max_words:
            return MACHINE
        if self._silence >= self.after_greeting_silence:
            return PERSON
        if self.elapsed >= self.budget:
            return UNSURE
        return None


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
        import webrtcvad

        self._vad: Any = webrtcvad.Vad(vad_mode)
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


def classify_pcm(pcm: bytes, **params: Any) -> tuple[str, float]:
    """Run a detector over a whole recording (then silence, as a waiting person gives): verdict and seconds."""
    detector = Detector(**params)
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        verdict = detector.feed(pcm[i : i + FRAME_BYTES])
        if verdict is not None:
            return verdict, detector.elapsed
    silence = bytes(FRAME_BYTES)
    while True:
        verdict = detector.feed(silence)
        if verdict is not None:
            return verdict, detector.elapsed


__all__ = ["MACHINE", "PERSON", "READY", "TIMED_OUT", "UNSURE", "Detector", "GreetingEnd", "classify_pcm"]
