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
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sip"))

from amd_corpus import Sample, build

from dialer.amd import (
    FRAME_BYTES,
    MACHINE,
    PEOPLE_TAKEN_FOR_MACHINES,
    PERSON,
    UNSURE,
    Detector,
    classify_pcm,
    run_detector,
)
from dialer.amd.accuracy import Outcome, all_times, score, wilson
from dialer.amd.baseline import FirstBurstDetector, classify_pcm_baseline
from dialer.sip.config import AmdConfig


@pytest.fixture(scope="module")
def held() -> list[Sample]:
    return build("held", sample_every=3)


def _beep(seconds: float, hz: float = 1000.0) -> bytes:
    n = int(8000 * seconds)
    return b"".join(
        int(8000 * math.sin(2 * math.pi * hz * i / 8000)).to_bytes(2, "little", signed=True) for i in range(n)
    )


def _outcomes(samples: list[Sample], baseline: bool = False) -> list[Outcome]:
    out = []
    for s in samples:
        detector = FirstBurstDetector() if baseline else Detector.from_config(AmdConfig())
        verdict, seconds = run_detector(detector, s.pcm)
        out.append(Outcome(s.label, s.category, verdict, seconds))
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
    est = PEOPLE_TAKEN_FOR_MACHINES
    assert est.people >= 200
    hits = round(est.point * est.people)
    assert est.upper95 == pytest.approx(wilson(hits, est.people)[1], abs=1e-4)
