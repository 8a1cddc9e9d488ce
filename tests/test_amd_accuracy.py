"""Answering-machine detection on a sample of the held-out corpus: the regulator's figure, timing and fail-closed.

The sample is every third text/voice/speed combination of the held-out part (tests/sip/amd_corpus.py), about 120
calls; synthesis is cached on disk, so a rerun takes a few seconds. Margins follow the sample's size: the people
figure is checked with its 95% Wilson interval, not its point estimate, and must agree with the published
:data:`dialer.amd.PEOPLE_TAKEN_FOR_MACHINES` (measured on the whole held-out part: 3.6%, above the 2% target).
The same assertions are run on the old first-burst detector to prove they discriminate: it takes ~40% of
people for machines and fails them.

What this test does *not* assert is the issue's "machines caught >= 85%": within the 1.5-s budget no timing
feature tells a receptionist's greeting from a voicemail's (docs/amd.md), and this detector keeps people safe
instead. It only asserts that some machines are still caught.

The detector is the worker's: with the keyword cue (dialer/amd/keywords.py) when pocketsphinx is installed, on
timing alone when it is not; both must pass. With the cue, the ``answer`` preset must catch more of the sample's
machines than timing alone, and take no more people (tests/test_amd_keywords.py tests the cue itself).

The connect clocks: ``speech_start`` and ``greeting_end`` are checked against a recording whose true onset and end
are known, and the ``greeting_end`` preset (a 5-s budget, allowed because the US clock starts at the end of the
greeting) on the same held-out sample: people safe, most machines caught, and every person decided within 1.0 s
of the detector's ``greeting_end`` (the bridge needs the rest of the 2 s).
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sip"))

from amd_corpus import Sample, build, synth

from dialer.amd import (
    CLOCKS,
    FRAME_BYTES,
    FRAME_SECONDS,
    MACHINE,
    PEOPLE_TAKEN_FOR_MACHINES,
    PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK,
    PERSON,
    PRESETS,
    UNSURE,
    Detector,
    amd_preset,
    classify_pcm,
    run_detector,
)
from dialer.amd.accuracy import Outcome, all_times, clock_lags, score, wilson
from dialer.amd.baseline import FirstBurstDetector, classify_pcm_baseline
from dialer.errors import ConfigError
from dialer.sip.config import AmdConfig


@pytest.fixture(scope="module")
def held() -> list[Sample]:
    return build("held", sample_every=3)


def _beep(seconds: float, hz: float = 1000.0) -> bytes:
    n = int(8000 * seconds)
    return b"".join(
        int(8000 * math.sin(2 * math.pi * hz * i / 8000)).to_bytes(2, "little", signed=True) for i in range(n)
    )


def _outcomes(
    samples: list[Sample], baseline: bool = False, clock: str | None = None, keywords: bool | None = None
) -> list[Outcome]:
    out = []
    for s in samples:
        if baseline:
            verdict, seconds = run_detector(FirstBurstDetector(), s.pcm)
            out.append(Outcome(s.label, s.category, verdict, seconds))
            continue
        if clock:
            detector = Detector(**amd_preset(clock), keywords=keywords)
        else:
            detector = Detector.from_config(AmdConfig()) if keywords is None else Detector(keywords=keywords)
        verdict, seconds = run_detector(detector, s.pcm)
        out.append(Outcome(s.label, s.category, verdict, seconds, detector.speech_start, detector.greeting_end))
    return out


def _safe_for_people(outcomes: list[Outcome]) -> bool:
    """The regulator's figure: people taken for machines, 95% upper bound within 3x the 2% target on ~75 people
    (Wilson's bound for 1 of 75 is 7.2%; for 4 of 75, 13%), point estimate within 2% plus one call's share."""
    people = score(outcomes, PERSON)
    return people.interval[1] <= 0.075 and people.machine <= 0.02 * people.n + 1


def test_held_out_people_are_not_taken_for_machines(held: list[Sample]) -> None:
    outcomes = _outcomes(held)
    people, machines = score(outcomes, PERSON), score(outcomes, MACHINE)
    median, p90 = all_times(outcomes)
    print(
        f"\nheld-out sample: people -> machine {people.machine}/{people.n}, machines caught "
        f"{machines.machine}/{machines.n}, median {median:.2f} s, p90 {p90:.2f} s"
    )
    assert people.n >= 60 and machines.n >= 30
    assert _safe_for_people(outcomes)
    assert people.interval[0] <= PEOPLE_TAKEN_FOR_MACHINES.upper95  # the published estimate is not contradicted
    assert median <= 1.5 + 1e-9
    assert max(o.seconds for o in outcomes) <= AmdConfig().budget + 1e-9  # nothing is decided past the budget
    assert machines.machine >= 1  # not a detector that never says machine


def test_keyword_cue_catches_more_machines_in_the_answer_budget(held: list[Sample]) -> None:
    pytest.importorskip("pocketsphinx")
    timing = _outcomes(held, clock="answer", keywords=False)
    spotting = _outcomes(held, clock="answer", keywords=True)
    before, after = score(timing, MACHINE), score(spotting, MACHINE)
    print(f"\nanswer preset, held-out sample: machines caught {before.machine} -> {after.machine} of {after.n}")
    assert after.machine >= before.machine + 2  # held-out part: 11 -> 17 of 126
    assert score(spotting, PERSON).machine <= score(timing, PERSON).machine
    assert max(o.seconds for o in spotting) <= amd_preset("answer")["budget"] + 1e-9  # the cue waits for nothing


def test_old_detector_fails_the_same_assertions(held: list[Sample]) -> None:
    old = _outcomes(held, baseline=True)
    assert not _safe_for_people(old)
    assert max(o.seconds for o in old) > 1.5  # its 2.0-s budget does not leave the bridge its time


def test_budget_fits_the_connect_limit() -> None:
    assert AmdConfig().budget <= 1.5


def test_silence_is_unsure_at_the_budget_never_machine() -> None:
    verdict, seconds = classify_pcm(bytes(FRAME_BYTES * 10))
    assert verdict == UNSURE and seconds == pytest.approx(AmdConfig().budget)
    rng = random.Random(7)
    noisy = b"".join(rng.randint(-300, 300).to_bytes(2, "little", signed=True) for _ in range(8000 * 3))
    verdict, seconds = classify_pcm(noisy)  # steady hiss: webrtcvad calls it speech, the noise floor does not
    assert verdict == UNSURE and seconds == pytest.approx(AmdConfig().budget)


def test_a_beep_is_a_machine_as_soon_as_it_lasts() -> None:
    verdict, seconds = classify_pcm(bytes(FRAME_BYTES * 10) + _beep(0.5))
    assert verdict == MACHINE and seconds == pytest.approx(0.2 + AmdConfig().beep)


def test_baseline_is_the_old_detector() -> None:
    verdict, seconds = classify_pcm_baseline(bytes(FRAME_BYTES * 10))
    assert verdict == UNSURE and seconds == pytest.approx(2.0)


def test_published_estimate_matches_its_wilson_bound() -> None:
    assert PEOPLE_TAKEN_FOR_MACHINES is PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK["answer"]  # the old name: the default's
    assert set(PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK) == set(CLOCKS)
    for est in PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK.values():
        assert est.people >= 200
        hits = round(est.point * est.people)
        assert est.upper95 == pytest.approx(wilson(hits, est.people)[1], abs=1e-4)


# --- the connect clocks ------------------------------------------------------------------------------------------

LEAD = 0.5  # seconds of line silence before "hello"


@pytest.fixture(scope="module")
def hello() -> tuple[bytes, float]:
    """A clean "Hello?" after LEAD s of silence, then 3 s of silence, and where the voice truly ends (s)."""
    import numpy as np

    voice = np.frombuffer(synth("Hello?", "en-us", 160), dtype="<i2")
    loud = np.flatnonzero(np.abs(voice) > 300)  # espeak-ng pads with silence: keep the voice itself
    voice = voice[loud[0] : loud[-1] + 1]
    pcm = bytes(int(8000 * LEAD) * 2) + voice.tobytes() + bytes(8000 * 3 * 2)
    return pcm, LEAD + len(voice) / 8000


def test_clock_starts_are_none_until_a_word_is_heard() -> None:
    detector = Detector()
    assert detector.speech_start is None and detector.greeting_end is None
    verdict, _ = run_detector(detector, bytes(FRAME_BYTES * 100))
    assert verdict == UNSURE and detector.speech_start is None and detector.greeting_end is None


@pytest.mark.parametrize("clock", CLOCKS)
def test_hello_then_silence_gives_the_clock_starts(hello: tuple[bytes, float], clock: str) -> None:
    pcm, end = hello
    detector = Detector(**amd_preset(clock))
    verdict, seconds = run_detector(detector, pcm)
    assert verdict == PERSON
    assert detector.speech_start is not None and detector.greeting_end is not None
    # never late (the clock must not start after the truth), and not absurdly early either
    assert LEAD - 0.3 <= detector.speech_start <= LEAD
    assert end - 2 * FRAME_SECONDS <= detector.greeting_end <= end  # the voiced run's end, within one frame
    assert seconds - detector.greeting_end == pytest.approx(amd_preset(clock)["after_greeting_silence"], abs=0.03)


def test_presets_are_detector_and_config_settings() -> None:
    assert set(PRESETS) == set(CLOCKS)
    answer = AmdConfig(**amd_preset("answer"))
    assert answer == AmdConfig()  # the answer preset is the default configuration
    assert amd_preset("speech_start") == amd_preset("answer")  # nothing better fits the UK clock (docs/amd.md)
    ge = amd_preset("greeting_end")
    Detector.from_config(AmdConfig(**ge))
    assert ge["initial_silence"] <= 1.5  # no greeting: the clock runs from the answer
    assert max(ge["after_greeting_silence"], ge["waiting"]) + FRAME_SECONDS <= 1.0  # verdict soon after greeting
    amd_preset("answer")["budget"] = 99.0
    assert PRESETS["answer"]["budget"] == 1.5  # a copy
    with pytest.raises(ConfigError):
        amd_preset("ringing")


def test_greeting_end_preset_on_the_held_out_sample(held: list[Sample]) -> None:
    outcomes = _outcomes(held, clock="greeting_end")
    people, machines = score(outcomes, PERSON), score(outcomes, MACHINE)
    lag = clock_lags(outcomes, "greeting_end")
    print(
        f"\ngreeting_end preset, held-out sample: people -> machine {people.machine}/{people.n}, machines caught "
        f"{machines.machine}/{machines.n}; greeting_end -> verdict median {lag.median:.2f} s, p99 {lag.p99:.2f} s, "
        f"max {lag.max:.2f} s ({lag.n} people); silent people decided by {lag.silent_max:.2f} s"
    )
    # Within its bound: the point is within 2% plus two calls' share (this sample holds 2 of the 4 slow 9-word
    # receptionist greetings the whole held-out part loses and, when pocketsphinx is installed, the one person the
    # keyword cue mishears: 3 of 75), and the sample's interval agrees with the published estimate for this
    # preset (5 of 225 on the whole held-out part with the cue, 4 without).
    assert people.n >= 60 and people.machine <= 0.02 * people.n + 2
    estimate = PEOPLE_TAKEN_FOR_MACHINES_BY_CLOCK["greeting_end"]
    assert people.interval[0] <= estimate.upper95 and estimate.point <= people.interval[1]
    assert machines.rate >= 0.7  # the longer budget is what catches machines (answer preset: under 25%)
    assert lag.n >= 50 and lag.max <= 1.0  # every person heard speaking is decided within 1.0 s of greeting_end
    assert lag.silent >= 1 and lag.silent_max <= 1.5 + 1e-9  # silence: unsure by 1.5 s from the answer
    budget = amd_preset("greeting_end")["budget"]
    assert max(o.seconds for o in outcomes) <= budget + 1e-9
    for o in outcomes:  # the clock starts are in order and before the verdict
        if o.speech_start is not None and o.greeting_end is not None:
            assert 0.0 <= o.speech_start <= o.greeting_end <= o.seconds
