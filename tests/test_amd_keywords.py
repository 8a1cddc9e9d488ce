"""The keyword cue (dialer/amd/keywords.py): what it adds to the detector, and that the detector works without it.

The combination rules are tested with a fake spotter (no pocketsphinx needed): a phrase makes a machine only once
talk spans ``keyword_min_span``, never on silence, and ``unsure`` stays ``unsure``. The real spotter (skipped when
pocketsphinx is not installed) is tested on espeak-ng speech from the development voices: it hears a voicemail's
"you have reached", not a person's "Hello?", the same way on every call whichever pooled decoder it gets, and its
streaming 2x upsampler does not depend on where the frames are cut. Accuracy on the held-out corpus is
tests/test_amd_accuracy.py's (the detector there uses the cue whenever pocketsphinx is installed).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sip"))

from amd_corpus import synth

import dialer.amd.keywords as kw
from dialer.amd import FRAME_BYTES, FRAME_SECONDS, MACHINE, PERSON, UNSURE, Detector, run_detector
from dialer.errors import ConfigError

VOICEMAIL = "Hi, you have reached John Smith. Please leave a message after the tone."


class FakeSpotter:
    """Reports ``phrase`` on the frame that ends at ``at`` seconds; remembers whether it was closed."""

    def __init__(self, phrase: str, at: float) -> None:
        self.phrase, self.at, self.elapsed, self.closed, self.frames = phrase, at, 0.0, False, 0

    def feed(self, frame: bytes) -> str | None:
        assert not self.closed, "fed after close"
        self.frames += 1
        self.elapsed += FRAME_SECONDS
        return self.phrase if abs(self.elapsed - self.at) < FRAME_SECONDS / 2 else None

    def close(self) -> None:
        self.closed = True


def _tone(seconds: float, hz: float = 220.0, amplitude: int = 6000) -> bytes:
    """A voiced-looking signal webrtcvad calls speech: a buzz with harmonics, as a vowel would have."""
    n = int(8000 * seconds)
    return b"".join(
        int(amplitude * sum(math.sin(2 * math.pi * hz * k * i / 8000) / k for k in range(1, 6))).to_bytes(
            2, "little", signed=True
        )
        for i in range(n)
    )


def _voice(text: str, lead: float = 0.3, voice: str = "en-us", speed: int = 160) -> bytes:
    import numpy as np

    x = np.frombuffer(synth(text, voice, speed), dtype="<i2")
    return bytes(int(8000 * lead) * 2) + (x // 4).astype("<i2").tobytes() + bytes(8000 * 2 * 2)


# --- the detector with a fake spotter ----------------------------------------------------------------------------


def test_a_phrase_during_long_talk_is_a_machine_before_the_burst_rule() -> None:
    spotter = FakeSpotter("you have reached", at=1.0)
    detector = Detector(budget=5.0, greeting=3.2, max_words=99, spotter=spotter)
    verdict, seconds = run_detector(detector, bytes(FRAME_BYTES * 10) + _tone(4.0))
    assert (verdict, detector.cue, detector.phrase) == (MACHINE, "keyword", "you have reached")
    assert seconds == pytest.approx(1.0)  # at the phrase, not when the talk spans 3.2 s
    assert spotter.closed  # the decoder goes back at the verdict


def test_without_the_phrase_the_same_talk_waits_for_the_burst_rule() -> None:
    detector = Detector(budget=5.0, greeting=3.2, max_words=99, keywords=False)
    verdict, seconds = run_detector(detector, bytes(FRAME_BYTES * 10) + _tone(4.0))
    assert (verdict, detector.cue, detector.phrase, detector.keywords) == (MACHINE, "burst", None, False)
    assert seconds > 3.2


def test_a_phrase_during_a_short_answer_is_not_a_machine() -> None:
    # "hello" (0.3 s of voice) misheard as a phrase: shorter than keyword_min_span, so the pause decides: a person
    detector = Detector(spotter=FakeSpotter("leave a message", at=0.5), keyword_min_span=0.5)
    verdict, _ = run_detector(detector, bytes(FRAME_BYTES * 10) + _tone(0.3))
    assert verdict == PERSON and detector.phrase == "leave a message"


def test_a_phrase_heard_in_silence_or_noise_is_never_a_machine() -> None:
    detector = Detector(spotter=FakeSpotter("voicemail", at=0.4))
    verdict, seconds = run_detector(detector, bytes(FRAME_BYTES * 100))
    assert verdict == UNSURE and seconds == pytest.approx(1.5)  # silence is unsure (an agent), as without the cue


def test_long_talk_left_unsure_stays_unsure_when_no_phrase_comes() -> None:
    # the answer preset: 1.0 s of unbroken talk, then quiet: not a person (too long), not a machine (no burst, no
    # phrase): unsure, which the worker sends to an agent
    spotter = FakeSpotter("voicemail", at=99.0)
    verdict, _ = run_detector(Detector(spotter=spotter), bytes(FRAME_BYTES * 10) + _tone(1.0))
    assert verdict == UNSURE and spotter.closed


class BrokenSpotter(FakeSpotter):
    def feed(self, frame: bytes) -> str | None:
        raise RuntimeError("decoder failed")


def test_a_failing_spotter_leaves_the_timing_cues_working() -> None:
    spotter = BrokenSpotter("voicemail", at=0.1)
    detector = Detector(spotter=spotter)
    verdict, _ = run_detector(detector, bytes(FRAME_BYTES * 10) + _tone(0.3))
    assert verdict == PERSON and spotter.closed and not detector.keywords


def test_without_pocketsphinx_the_detector_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kw, "available", lambda: False)
    detector = Detector()
    assert detector.keywords is False
    verdict, _ = run_detector(detector, bytes(FRAME_BYTES * 10) + _tone(0.3))
    assert verdict == PERSON
    with pytest.raises(ConfigError, match=r"amd\.keywords"):
        Detector(keywords=True)


def test_keyword_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        Detector(keyword_min_span=-1.0, keywords=False)


def test_import_dialer_does_not_load_pocketsphinx() -> None:
    code = "import sys, dialer, dialer.amd, dialer.amd.keywords; assert 'pocketsphinx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- the real spotter --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pocketsphinx() -> None:
    pytest.importorskip("pocketsphinx")


def _spot(pcm: bytes) -> list[tuple[float, str]]:
    spotter = kw.KeywordSpotter()
    try:
        for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            spotter.feed(pcm[i : i + FRAME_BYTES])
        return spotter.heard
    finally:
        spotter.close()


def test_the_spotter_hears_a_voicemail_not_a_hello(pocketsphinx: None) -> None:
    heard = _spot(_voice(VOICEMAIL))
    assert heard and heard[0][1] == "you have reached" and heard[0][0] < 2.0
    assert _spot(_voice("Hello?")) == []
    assert _spot(_voice("Hello, who is this?")) == []


def test_the_detector_uses_the_spotter_when_installed(pocketsphinx: None) -> None:
    detector = Detector(budget=5.0, greeting=99.0, max_words=99)  # timing alone would never say machine here
    assert detector.keywords
    verdict, seconds = run_detector(detector, _voice(VOICEMAIL))
    assert (verdict, detector.cue, detector.phrase) == (MACHINE, "keyword", "you have reached")
    assert seconds < 2.0
    assert not detector.keywords  # closed at the verdict


def test_a_pooled_decoder_hears_every_call_the_same(pocketsphinx: None) -> None:
    # the decoder's running cepstral mean would carry from one call to the next; each call starts from the same one
    first = _spot(_voice(VOICEMAIL))
    _spot(_voice("Good morning, Acme Plumbing, how can I help?", voice="en-gb+m3"))  # moves the decoder's mean
    assert _spot(_voice(VOICEMAIL)) == first


def test_upsampling_does_not_depend_on_frame_boundaries(pocketsphinx: None) -> None:
    import numpy as np

    spotter = kw.KeywordSpotter()
    try:
        pcm = _tone(0.4, hz=440.0)
        out = np.frombuffer(
            b"".join(spotter._upsample(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)), "<i2"
        ).astype(float)
    finally:
        spotter.close()
    x = np.frombuffer(pcm, "<i2").astype(float)
    assert len(out) == 2 * len(x)
    taps = kw._half_band()
    stuffed = np.zeros(2 * len(x))
    stuffed[::2] = x
    whole = np.convolve(stuffed, taps)[: len(out)]  # the same filter over the whole signal at once
    assert np.max(np.abs(out - whole)) <= 1.0  # rounding only
    # 23 samples (at 16 kHz) late: every odd output sample is an input sample, 11 input samples back
    assert np.max(np.abs(out[1::2][30:] - x[30 - 11 : len(x) - 11])) <= 1.0
