"""The abandonment ledger on each regime's window, and ``dialer report compliance``."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dialer.cli import main
from dialer.compliance import ledger
from dialer.store import AttemptRow, Store, StoredLead

DAY = 86400.0
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=ZoneInfo("Europe/London")).timestamp()


def _a(n: int, t: float, outcome: str, *, disposition: str | None = None, state: str = "done") -> AttemptRow:
    abandoned = outcome == "abandoned"
    return AttemptRow(
        "c",
        f"L{n}",
        1,
        f"+1202555{n:04d}",
        state,
        t,
        outcome=outcome if state == "done" else "interrupted",
        disposition=disposition,
        ended_at=t + 60,
        answered_at=t + 10,
        message_at=t + 12 if abandoned else None,
        wait=2.0 if abandoned else 0.5,
        abandoned=abandoned,
    )


def _day(t: float, handled: int, abandoned: int, agent_machines: int = 0, machines: int = 0) -> list[AttemptRow]:
    rows = [_a(i, t + i, "connected") for i in range(handled)]
    rows += [_a(1000 + i, t + i, "abandoned") for i in range(abandoned)]
    rows += [_a(2000 + i, t + i, "connected", disposition="machine") for i in range(agent_machines)]
    rows += [_a(3000 + i, t + i, "machine") for i in range(machines)]
    return rows


def test_uk_daily_with_ofcoms_machine_adjustment() -> None:
    rows = _day(T0, 97, 3, agent_machines=3) + _day(T0 + DAY, 50, 0)
    day1, day2 = ledger.uk_windows(rows)
    adjusted = 3 - 3 * 3 / (97 + 3)
    assert day1.rate == pytest.approx(adjusted / (97 + adjusted))
    assert (day1.handled, day1.agent_machine, day1.abandoned, day1.message_played) == (97, 3, 3, 3)
    assert day2.rate == 0.0 and day1.label == "2026-03-02"


def test_us_campaign_window_then_30_day_periods() -> None:
    short = _day(T0, 100, 4) + _day(T0 + 20 * DAY, 100, 0)
    [whole] = ledger.us_windows(short)
    assert whole.rate == pytest.approx(4 / 204) and whole.live == 204
    long = _day(T0, 100, 4) + _day(T0 + 40 * DAY, 96, 4)
    first, second = ledger.us_windows(long)
    assert first.rate == pytest.approx(4 / 104) and first.over_cap
    assert second.rate == pytest.approx(4 / 100)
    assert second.start == pytest.approx(T0 + 30 * DAY)


def test_canada_monthly_over_calls_placed_and_interrupted_bound() -> None:
    rows = [*_day(T0, 10, 1, machines=9), _a(9000, T0 + 5, "", state="interrupted")]
    rows += _day(T0 + 31 * DAY, 10, 0)
    march, april = ledger.ca_windows(rows)
    assert march.placed == 21 and march.rate == pytest.approx(1 / 21)
    assert march.worst_rate == pytest.approx(2 / 21) and march.interrupted == 1
    assert april.label == "2026-04" and april.rate == 0.0
    [us] = ledger.us_windows(rows[:21])
    assert us.rate == pytest.approx(1 / 11) and us.worst_rate == pytest.approx(2 / 12)


def test_report_compliance_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.ensure_campaign("spring")
    rows = _day(T0, 30, 2)
    for r in rows:
        store.insert_lead(StoredLead("spring", r.lead_id, r.phone))
        store.claim("spring", r.lead_id, r.dialed_at)
        result = {
            k: getattr(r, k)
            for k in ("outcome", "ended_at", "answered_at", "message_at", "wait", "abandoned", "disposition")
        }
        store.complete("spring", r.lead_id, 1, result, {"status": "done"})
    store.close()
    out_csv, calls_csv = tmp_path / "w.csv", tmp_path / "calls.csv"
    status = main(["report", "compliance", str(path), "--csv", str(out_csv), "--calls", str(calls_csv)])
    assert status == 1  # 2/32 = 6.25% is over every cap
    text = capsys.readouterr().out
    assert "OVER CAP" in text and "spring" in text and "6.25%" in text
    with open(out_csv, newline="") as fh:
        windows = list(csv.DictReader(fh))
    assert [w["regime"] for w in windows] == ["us", "uk", "ca"]
    assert all(w["abandoned"] == "2" and w["over_cap"] == "1" for w in windows)
    with open(calls_csv, newline="") as fh:
        calls = list(csv.DictReader(fh))
    assert len(calls) == 32 and sum(c["message_played"] == "1" for c in calls) == 2
    assert main(["report", "compliance", str(path), "--campaign", "nope"]) == 2
    assert main(["report", "compliance", str(tmp_path / "missing.sqlite")]) == 2
