"""The detector this package shipped before its held-out corpus existed, kept only as the benchmark's baseline.

A first-speech-burst classifier (Asterisk ``app_amd`` style) with its old defaults: a 2.0-s budget, voice longer
than 1.2 s or more than four words is a machine, 0.4 s of silence after voice is a person. On the held-out corpus
it takes about a third of people for machines (one-sentence and business answers are long bursts too), which is
why it was replaced; ``benchmarks/amd_accuracy.py`` and ``tests/test_amd_accuracy.py`` measure it in the same run
as :class:`dialer.amd.Detector` so the comparison is like for like.
"""

from __future__ import annotations

from typing import Any

from dialer.amd._common import FRAME_BYTES, FRAME_SECONDS, MACHINE, PERSON, SAMPLE_RATE, UNSURE
from dialer.errors import ConfigError


class FirstBurstDetector:
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


def classify_pcm_baseline(pcm: bytes, **params: Any) -> tuple[str, float]:
    """:func:`dialer.amd.classify_pcm` for the old detector: verdict and seconds from answer."""
    from dialer.amd import run_detector

    return run_detector(FirstBurstDetector(**params), pcm)
