"""The UK abandonment rate counts the people answering-machine detection took for machines (an estimate).

Ofcom counts a person the detector judged a machine and hung up on as an abandoned call, with a reasoned estimate
of how many there were. With ``p`` the share of people the detector takes for machines, the ``L`` live answers
that went through detection are the ``1 - p`` it let through, so ``p/(1-p) x L`` people (at most the machine
verdicts) are added to the UK numerator, and so to its denominator. The US and Canadian rates are unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dialer.amd import PEOPLE_TAKEN_FOR_MACHINES, FalseMachineEstimate
from dialer.cli import main
from dialer.compliance import ledger
from dialer.store import AttemptRow, Store, StoredLead

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Europe/London")).timestamp()
P = PEOPLE_TAKEN_FOR_MACHINES


def _a(n: int, outcome: str, verdict: str | None) -> AttemptRow:
    abandoned = outcome == "abandoned"
    return AttemptRow(
        "c",
        f"L{n}",
        1,
        f"+44207946{n:04d}",
        "done",
        T0 + n,
        outcome=outcome,
        ended_at=T0 + n + 60,
        answered_at=T0 + n + 10,
        message_at=T0 + n + 12 if abandoned else None,
        wait=2.0 if abandoned else 0.5,
        abandoned=abandoned,
        amd_verdict=verdict,
        amd_seconds=None if verdict is None else 1.2,
    )


def _day(handled: int, abandoned: int, machines: int, *, verdict: str | None = "person") -> list[AttemptRow]:
    rows = [_a(i, "connected", verdict) for i in range(handled)]
    rows += [_a(1000 + i, "abandoned", verdict) for i in range(abandoned)]
    rows += [_a(2000 + i, "machine", "machine" if verdict else None) for i in range(machines)]
    return rows


def test_estimate_formula() -> None:
    assert ledger.false_machines(96, 40, 0.04) == pytest.approx(0.04 / 0.96 * 96)  # 4 people behind 40 verdicts
    assert ledger.false_machines(1000, 3, 0.04) == 3.0  # never more people than machine verdicts
    assert ledger.false_machines(100, 0, 0.04) == 0.0 and ledger.false_machines(100, 5, 0.0) == 0.0


def test_uk_rate_adds_people_taken_for_machines_and_keeps_its_bound() -> None:
    rows = _day(97, 1, 40)
    (uk,) = ledger.uk_windows(rows)
    live = 98  # 97 handled + 1 abandoned, all through detection
    people = P.point / (1 - P.point) * live
    upper = P.upper95 / (1 - P.upper95) * live
    assert (uk.amd_machines, uk.amd_live) == (40, live)
    assert uk.amd_people == pytest.approx(people) and uk.amd_people_upper == pytest.approx(upper)
    assert uk.rate == pytest.approx((1 + people) / (97 + 1 + people))
    assert uk.rate_amd_upper == pytest.approx((1 + upper) / (97 + 1 + upper))
    assert uk.rate > 0.03 > 1 / 98  # the estimate alone takes this day over the cap
    (us,) = ledger.us_windows(rows)
    (ca,) = ledger.ca_windows(rows)
    assert us.rate == pytest.approx(1 / 98) and ca.rate == pytest.approx(1 / len(rows))  # not theirs to add


def test_no_detection_adds_nothing() -> None:
    (uk,) = ledger.uk_windows(_day(97, 1, 40, verdict=None))  # machines an agent or the network reported
    assert uk.amd_machines == 0 and uk.amd_people == 0.0 and uk.rate == pytest.approx(1 / 98)


def test_configured_rate() -> None:
    mine = FalseMachineEstimate(point=0.01, upper95=0.01, people=0, source="test")
    (uk,) = ledger.uk_windows(_day(99, 0, 10), amd=mine)
    assert uk.amd_people == pytest.approx(0.01 / 0.99 * 99) and uk.amd_people == uk.amd_people_upper
    assert uk.rate == pytest.approx(1.0 / 100)


def _store(path: Path, rows: list[AttemptRow]) -> None:
    with Store(path) as store:
        store.ensure_campaign("spring")
        for r in rows:
            store.insert_lead(StoredLead("spring", r.lead_id, r.phone))
            store.claim("spring", r.lead_id, r.dialed_at)
            fields = ("outcome", "ended_at", "answered_at", "message_at", "wait", "abandoned", "amd_verdict")
            result = {k: getattr(r, k) for k in (*fields, "amd_seconds")}
            store.complete("spring", r.lead_id, 1, result, {"status": "done"})


def test_report_shows_the_estimate_apart_and_in_the_uk_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite"
    _store(path, _day(97, 1, 40))
    out_csv, calls_csv = tmp_path / "w.csv", tmp_path / "calls.csv"
    assert main(["report", "compliance", str(path), "--csv", str(out_csv), "--calls", str(calls_csv)]) == 1
    text = capsys.readouterr().out
    people = P.point / (1 - P.point) * 98
    upper = P.upper95 / (1 - P.upper95) * 98
    rate = (1 + people) / (98 + people)
    # The existing line keeps its words; its UK rate includes the estimate, shown on a line of its own.
    assert f"138 placed, 98 live, 40 machine, 1 abandoned (1 with message): {rate:.2%}  OVER CAP" in text, text
    assert f"AMD estimate: +{people:.1f} people taken for machines (upper 95%: {upper:.1f};" in text, text
    assert "an estimate, included in the rate" in text
    assert text.count("AMD estimate") == 1  # UK only
    with open(out_csv, newline="") as fh:
        uk = next(w for w in csv.DictReader(fh) if w["regime"] == "uk")
    assert uk["amd_machine_verdicts"] == "40" and float(uk["amd_people_estimate"]) == pytest.approx(people, abs=1e-3)
    assert float(uk["rate"]) == pytest.approx(rate, abs=1e-6)
    with open(calls_csv, newline="") as fh:
        calls = list(csv.DictReader(fh))
    assert sum(c["amd_verdict"] == "machine" for c in calls) == 40 and calls[0]["amd_seconds"] == "1.200"

    # A rate measured on the deployment's own calls overrides the built-in one.
    assert main(["report", "compliance", str(path), "--regime", "uk", "--amd-false-positive-rate", "0.001"]) == 0
    text = capsys.readouterr().out
    small = 0.001 / 0.999 * 98
    assert f"AMD estimate: +{small:.1f} people" in text and "as configured" in text, text
    assert f"{(1 + small) / (98 + small):.2%}" in text
    assert main(["report", "compliance", str(path), "--amd-false-positive-rate", "1.5"]) == 2
    assert "--amd-false-positive-rate" in capsys.readouterr().err
