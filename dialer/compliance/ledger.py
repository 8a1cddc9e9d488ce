"""The abandonment ledger: each regime's abandonment rate on its own window, from the stored attempts.

The store keeps one row per attempt with everything the regulators count (answer, connect, abandonment, message
time); this module only classifies and adds up, so the figures can always be recomputed from the records:

* **US** (FTC TSR / FCC TCPA): abandoned ÷ live answers, over the whole campaign if it ran under 30 days, else
  over each successive 30-day period from its first dial. Cap 3%.
* **UK** (Ofcom, 2015 formula): per calendar day in the campaign's zone, with the answering-machine adjustment
  ``d' = d - d·AM/(H+AM)`` and rate ``d'/(H + d')`` — ``H`` live calls handled by agents, ``AM`` machines that
  reached an agent (calls an agent dispositioned as ``machine``). Cap 3%.
* **Canada** (CRTC): abandoned ÷ calls placed, per calendar month. Cap 5% (verify).

For the UK, calls that went through answering-machine detection also carry its error: some people are judged
machines and hung up on, and Ofcom counts them as abandoned with a reasoned estimate. With ``p`` the share of
people the detector takes for machines (:data:`dialer.amd.PEOPLE_TAKEN_FOR_MACHINES`, or a rate the report is
given), the ``L`` live answers that went through detection are the ``1 - p`` of people it let through, so about
``p/(1 - p) x L`` people were among its machine verdicts (never more than there were machine verdicts). That
estimate is added to the abandoned calls after the machine adjustment (it counts people, not drops that may have
been machines), so it enters both the numerator and the denominator ``H + d'``. The window keeps the estimate,
its 95% upper bound, and the rate with that bound, so an auditor sees what the figure rests on.

Abandonment is judged from the MEASURED wait, not from the dialer's own verdict: a live call whose person waited
more than :data:`LEGAL_WAIT` (2 s, under US, UK and Canadian rules alike) from ``answered_at`` (where the
regulator's clock starts) to ``connected_at`` is abandoned, whatever ``connect_limit`` the campaign ran with. A
connected call with no measurement at all cannot prove it was in time, and is abandoned too. So no setting can
turn a late connect into a handled call.

Inbound callers (schema 7's ``inbound_calls``, one row per caller who rang) are no part of any abandonment rate:
the regulators' rates are of calls the dialer placed. :func:`inbound_figures` gives their own figures, as the
engine counts them (``engine.stats.inbound``): callers, answered, abandoned, blocked (turned away before
queueing), the service level (answered within T over answered plus abandoned: blocked callers never queued) and
the average speed of answer; ``dialer report compliance`` prints them when the campaign had inbound calls.

Attempts whose outcome was lost in a crash (``interrupted``), and attempts still open (a crash not yet recovered,
or a call in flight), cannot be classified. They are counted apart, and ``worst_rate`` counts each as an abandoned
live answer (most were answered people who heard nothing). The over-cap flag, and so the alert and the exit status
of ``dialer report compliance``, uses ``worst_rate``: a crash can never hide an abandonment rate over the cap.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO
from zoneinfo import ZoneInfo

from dialer.amd import PEOPLE_TAKEN_FOR_MACHINES, FalseMachineEstimate
from dialer.errors import ConfigError
from dialer.store import AttemptRow, InboundRow

DAY = 86400.0
PERIOD = 30 * DAY
CAPS = {"us": 0.03, "uk": 0.03, "ca": 0.05}
ZONES = {"us": "America/New_York", "uk": "Europe/London", "ca": "America/Toronto"}
#: Seconds a person may wait for an agent before the call is abandoned: the same 2 s for US (from the completed
#: greeting), UK (from the start of speech) and Canada (from the answer); ``answered_at`` is where it started.
LEGAL_WAIT = 2.0


def measured_wait(a: AttemptRow) -> float | None:
    """How long the person waited, from the stored instants: answer to connect, else answer to the message's start
    (an abandoned call), else the runtime's ``wait``; ``None`` when nothing was measured."""
    if a.answered_at is not None:
        if a.connected_at is not None:
            return a.connected_at - a.answered_at
        if a.message_at is not None:
            return a.message_at - a.answered_at
    return a.wait


def late_connect(a: AttemptRow) -> bool:
    """A call the dialer recorded as connected whose person waited more than :data:`LEGAL_WAIT`, or whose wait
    was never measured (nothing proves it was in time): abandoned in the ledger."""
    if a.outcome != "connected" or a.abandoned or a.disposition == "machine":
        return False
    wait = measured_wait(a)
    return wait is None or wait > LEGAL_WAIT


def judged_abandoned(a: AttemptRow) -> bool:
    """Whether the ledger counts this live answer as abandoned: the dialer said so, or the measured wait does."""
    return a.abandoned or a.outcome == "abandoned" or late_connect(a)


@dataclass(frozen=True, slots=True)
class Window:
    """One regime window's counts and rate (``rate`` is ``None`` when its denominator is 0)."""

    regime: str
    start: float
    end: float
    placed: int
    live: int
    handled: int
    machine: int
    agent_machine: int
    abandoned: int
    message_played: int
    interrupted: int
    rate: float | None
    worst_rate: float | None
    cap: float
    late_connects: int = 0  # recorded connected, abandoned by the measured wait (> LEGAL_WAIT, or none measured)
    open_calls: int = 0  # attempts still open (dialing) when the ledger was read: in worst_rate like interrupted
    amd_machines: int = 0  # calls detection judged machines (and hung up on or left a message)
    amd_live: int = 0  # live answers that went through detection (judged person or unsure)
    amd_people: float = 0.0  # estimated people among amd_machines (UK: in rate)
    amd_people_upper: float = 0.0  # the same with the estimate's 95% upper bound
    rate_amd_upper: float | None = None  # the UK rate with amd_people_upper instead of amd_people

    @property
    def over_cap(self) -> bool:
        """Over the cap in the worst case (interrupted and open calls counted as abandoned): what alerts."""
        worst = self.worst_rate if self.worst_rate is not None else self.rate
        return worst is not None and worst > self.cap

    @property
    def measured_over_cap(self) -> bool:
        """Over the cap on the classified calls alone (interrupted and open calls left out)."""
        return self.rate is not None and self.rate > self.cap

    @property
    def label(self) -> str:
        zone = ZoneInfo(ZONES[self.regime])
        a = dt.datetime.fromtimestamp(self.start, zone)
        b = dt.datetime.fromtimestamp(self.end, zone)
        if self.regime == "uk":
            return f"{a:%Y-%m-%d}"
        if self.regime == "ca":
            return f"{a:%Y-%m}"
        return f"{a:%Y-%m-%d} .. {b:%Y-%m-%d}"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def false_machines(amd_live: int, amd_machines: int, share: float) -> float:
    """Estimated people among ``amd_machines`` machine verdicts, when ``amd_live`` people went through detection
    and were let through and the detector takes a ``share`` of people for machines: ``share/(1-share) x amd_live``,
    at most ``amd_machines`` (there were no more verdicts to be wrong)."""
    if amd_machines <= 0 or share <= 0.0:
        return 0.0
    if share >= 1.0:
        return float(amd_machines)
    return min(float(amd_machines), share / (1.0 - share) * amd_live)


class _Counts:
    __slots__ = (
        "abandoned",
        "agent_machine",
        "amd",
        "amd_live",
        "amd_machines",
        "handled",
        "interrupted",
        "late",
        "live",
        "machine",
        "message",
        "open",
        "placed",
    )

    def __init__(self, amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES) -> None:
        self.placed = self.live = self.handled = self.machine = self.agent_machine = 0
        self.abandoned = self.message = self.interrupted = self.late = self.open = 0
        self.amd_live = self.amd_machines = 0
        self.amd = amd

    def add(self, a: AttemptRow) -> None:
        self.placed += 1
        if a.state == "interrupted":
            self.interrupted += 1
        elif a.state == "dialing":
            self.open += 1
        elif a.outcome == "machine":
            self.machine += 1
            if a.amd_verdict == "machine":
                self.amd_machines += 1
        elif a.outcome in ("connected", "abandoned"):
            if a.outcome == "connected" and a.disposition == "machine":
                self.agent_machine += 1  # a machine the detector missed, handled by an agent
                return
            self.live += 1
            if a.amd_verdict is not None:
                self.amd_live += 1
            if judged_abandoned(a):
                self.abandoned += 1
                self.late += late_connect(a)
                if a.message_at is not None:
                    self.message += 1
            else:
                self.handled += 1

    def window(self, regime: str, start: float, end: float) -> Window:
        d, h, am = self.abandoned, self.handled, self.agent_machine
        i = self.interrupted + self.open  # fate unknown: abandoned in the worst case
        people = people_upper = 0.0
        upper: float | None = None
        if regime == "uk":
            people = false_machines(self.amd_live, self.amd_machines, self.amd.point)
            people_upper = false_machines(self.amd_live, self.amd_machines, self.amd.upper95)
            adj = d - (d * am / (h + am) if h + am else 0.0)
            rate = _ratio(adj + people, h + adj + people)
            upper = _ratio(adj + people_upper, h + adj + people_upper)
            wd = d + i
            wadj = wd - (wd * am / (h + am) if h + am else 0.0)
            worst = _ratio(wadj + people, h + wadj + people)
        elif regime == "ca":
            rate = _ratio(d, self.placed - self.open)
            worst = _ratio(d + i, self.placed)
        else:
            rate = _ratio(d, self.live)
            worst = _ratio(d + i, self.live + i)
        return Window(
            regime,
            start,
            end,
            self.placed,
            self.live,
            h,
            self.machine,
            am,
            d,
            self.message,
            self.interrupted,
            rate,
            worst,
            CAPS[regime],
            self.late,
            self.open,
            self.amd_machines,
            self.amd_live,
            people,
            people_upper,
            upper,
        )


def _closed(attempts: Iterable[AttemptRow]) -> list[AttemptRow]:
    """Every attempt in time order, open ones included: their fate is unknown, so they count in the worst case."""
    return sorted(attempts, key=lambda a: a.dialed_at)


def us_windows(attempts: Iterable[AttemptRow], amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES) -> list[Window]:
    """The whole campaign if it spans under 30 days, else successive 30-day periods from the first dial."""
    rows = _closed(attempts)
    if not rows:
        return []
    first, last = rows[0].dialed_at, rows[-1].dialed_at
    if last - first < PERIOD:
        c = _Counts(amd)
        for a in rows:
            c.add(a)
        return [c.window("us", first, last)]
    out: list[Window] = []
    bucket: dict[int, _Counts] = {}
    for a in rows:
        bucket.setdefault(int((a.dialed_at - first) // PERIOD), _Counts(amd)).add(a)
    for k in sorted(bucket):
        out.append(bucket[k].window("us", first + k * PERIOD, first + (k + 1) * PERIOD))
    return out


def _calendar(
    attempts: Iterable[AttemptRow],
    regime: str,
    zone: str,
    monthly: bool,
    amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES,
) -> list[Window]:
    tz = ZoneInfo(zone)
    buckets: dict[dt.date, _Counts] = {}
    for a in _closed(attempts):
        day = dt.datetime.fromtimestamp(a.dialed_at, tz).date()
        key = day.replace(day=1) if monthly else day
        buckets.setdefault(key, _Counts(amd)).add(a)
    out = []
    for key in sorted(buckets):
        nxt = (key.replace(day=28) + dt.timedelta(days=4)).replace(day=1) if monthly else key + dt.timedelta(days=1)
        start = dt.datetime(key.year, key.month, key.day, tzinfo=tz).timestamp()
        end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        out.append(buckets[key].window(regime, start, end))
    return out


def uk_windows(
    attempts: Iterable[AttemptRow], zone: str = ZONES["uk"], amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES
) -> list[Window]:
    """Per calendar day (midnight to midnight in ``zone``), Ofcom's 2015 formula with the machine adjustment, plus
    the estimated people answering-machine detection took for machines (``amd``: the detector's error share)."""
    return _calendar(attempts, "uk", zone, monthly=False, amd=amd)


def ca_windows(attempts: Iterable[AttemptRow], zone: str = ZONES["ca"]) -> list[Window]:
    """Per calendar month in ``zone``, abandoned over calls placed."""
    return _calendar(attempts, "ca", zone, monthly=True)


def windows(
    attempts: Sequence[AttemptRow], regime: str, amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES
) -> list[Window]:
    """The windows of ``regime``; ``amd`` is the share of people detection takes for machines (UK only)."""
    if regime == "us":
        return us_windows(attempts, amd)
    if regime == "uk":
        return uk_windows(attempts, amd=amd)
    if regime == "ca":
        return ca_windows(attempts)
    raise ConfigError("regime", f"{regime!r} is not one of us, uk, ca")


WINDOW_COLUMNS = (
    "regime",
    "window",
    "start_utc",
    "end_utc",
    "placed",
    "live_answers",
    "agent_handled",
    "machine_answers",
    "agent_handled_machines",
    "abandoned",
    "message_played",
    "interrupted",
    "rate",
    "worst_rate",
    "cap",
    "over_cap",
    "late_connects",
    "open_calls",
    "measured_over_cap",
    "amd_machine_verdicts",
    "amd_live_answers",
    "amd_people_estimate",
    "amd_people_upper95",
    "rate_amd_upper95",
)


def _iso(t: float | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def write_windows_csv(rows: Iterable[Window], out: TextIO) -> None:
    w = csv.writer(out)
    w.writerow(WINDOW_COLUMNS)
    for r in rows:
        w.writerow(
            [
                r.regime,
                r.label,
                _iso(r.start),
                _iso(r.end),
                r.placed,
                r.live,
                r.handled,
                r.machine,
                r.agent_machine,
                r.abandoned,
                r.message_played,
                r.interrupted,
                _fmt(r.rate),
                _fmt(r.worst_rate),
                r.cap,
                int(r.over_cap),
                r.late_connects,
                r.open_calls,
                int(r.measured_over_cap),
                r.amd_machines,
                r.amd_live,
                f"{r.amd_people:.3f}",
                f"{r.amd_people_upper:.3f}",
                _fmt(r.rate_amd_upper),
            ]
        )


CALL_COLUMNS = (
    "lead_id",
    "attempt",
    "phone",
    "state",
    "outcome",
    "disposition",
    "dialed_utc",
    "answered_utc",
    "connected_utc",
    "time_to_connect_s",
    "abandoned",
    "message_played",
    "message_utc",
    "ended_utc",
    "amd_verdict",
    "amd_seconds",
    "late_connect",
)


def write_calls_csv(attempts: Iterable[AttemptRow], out: TextIO) -> None:
    """Every call, with what an auditor asks for: time to connect, whether and when the message played."""
    w = csv.writer(out)
    w.writerow(CALL_COLUMNS)
    for a in sorted(attempts, key=lambda a: (a.dialed_at, a.lead_id, a.attempt_no)):
        w.writerow(
            [
                a.lead_id,
                a.attempt_no,
                a.phone,
                a.state,
                a.outcome or "",
                a.disposition or "",
                _iso(a.dialed_at),
                _iso(a.answered_at),
                _iso(a.connected_at),
                "" if (wait := measured_wait(a)) is None else f"{wait:.3f}",
                int(judged_abandoned(a)),
                int(a.message_at is not None),
                _iso(a.message_at),
                _iso(a.ended_at),
                a.amd_verdict or "",
                "" if a.amd_seconds is None else f"{a.amd_seconds:.3f}",
                int(late_connect(a)),
            ]
        )


def summary(
    campaign_id: str, by_regime: dict[str, list[Window]], amd: FalseMachineEstimate = PEOPLE_TAKEN_FOR_MACHINES
) -> str:
    """A readable account: per regime, the worst window (measured and worst case) and every window over the cap;
    for UK windows where detection ran, the estimated people it took for machines (included in the rate) on a line
    of its own. A window is over the cap when its worst case is: interrupted and open calls counted as abandoned."""
    lines = [f"Abandonment ledger for campaign {campaign_id!r}"]
    for regime, rows in by_regime.items():
        name = {"us": "US (FTC/FCC, 30-day)", "uk": "UK (Ofcom, per day)", "ca": "Canada (CRTC, per month)"}[regime]
        lines.append("")
        lines.append(f"{name}: cap {CAPS[regime]:.0%}, {len(rows)} window(s)")
        if not rows:
            lines.append("  no calls")
            continue
        rated = [r for r in rows if r.rate is not None]
        over = [r for r in rows if r.over_cap]
        if rated:
            worst = max(rated, key=lambda r: r.rate or 0.0)
            lines.append(f"  worst window {worst.label}: {worst.rate:.2%} ({worst.abandoned} abandoned)")
        cases = [r for r in rows if r.worst_rate is not None]
        if cases:
            bad = max(cases, key=lambda r: r.worst_rate or 0.0)
            unknown = bad.interrupted + bad.open_calls
            lines.append(
                f"  worst case {bad.label}: {bad.worst_rate:.2%} ({bad.abandoned} abandoned + {unknown} interrupted "
                "or open, counted as abandoned)"
            )
        for r in rows:
            flag = "  OVER CAP" if r.over_cap else ""
            rate = "n/a" if r.rate is None else f"{r.rate:.2%}"
            extra = ""
            if r.late_connects:
                extra += f", {r.late_connects} connected after more than {LEGAL_WAIT:g} s (counted abandoned)"
            if r.interrupted or r.open_calls:
                open_ = f", {r.open_calls} open" if r.open_calls else ""
                extra += f", {r.interrupted} interrupted{open_} (worst case {r.worst_rate:.2%})"
            lines.append(
                f"  {r.label}: {r.placed} placed, {r.live} live, {r.machine} machine, {r.abandoned} abandoned "
                f"({r.message_played} with message): {rate}{extra}{flag}"
            )
            if regime == "uk" and (r.amd_machines or r.amd_live):
                lines.append("    " + _amd_line(r, amd))
        lines.append(f"  windows over the cap (worst case): {len(over)}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class InboundFigures:
    """A campaign's inbound callers from the store, counted as the engine counts them (``engine.stats.inbound``).

    ``callers`` is everyone who rang (``answered + abandoned + blocked``); ``service_level`` is answered within
    T over answered plus abandoned (blocked callers never queued, so they are in ``blocking_share`` instead);
    ``asa`` the answered callers' mean measured wait. T is the one the rows were written with
    (``service_level_seconds``: the largest, should a campaign have run with several; ``mixed_t`` says so).
    """

    callers: int
    answered: int
    abandoned: int
    blocked: int
    answered_within: int
    service_level_seconds: float
    service_level: float | None
    asa: float | None
    blocking_share: float | None
    first_arrival: float | None
    last_arrival: float | None
    blocked_by: dict[str, int]
    mixed_t: bool = False

    def to_dict(self) -> dict[str, object]:
        """For ``--json``: every field, times as epoch seconds and ISO 8601 UTC."""
        return {
            "callers": self.callers,
            "answered": self.answered,
            "abandoned": self.abandoned,
            "blocked": self.blocked,
            "blocked_by": dict(self.blocked_by),
            "answered_within": self.answered_within,
            "service_level_seconds": self.service_level_seconds,
            "service_level": self.service_level,
            "asa": self.asa,
            "blocking_share": self.blocking_share,
            "first_arrival": self.first_arrival,
            "last_arrival": self.last_arrival,
            "first_arrival_utc": _iso(self.first_arrival),
            "last_arrival_utc": _iso(self.last_arrival),
            "mixed_service_level_seconds": self.mixed_t,
        }

    def line(self) -> str:
        """One line, the figures ``dialer run`` prints for the run, here for the whole campaign."""
        level = "n/a" if self.service_level is None else f"{self.service_level:.0%}"
        asa = "n/a" if self.asa is None else f"{self.asa:.1f} s"
        mixed = " (the largest T the campaign ran with)" if self.mixed_t else ""
        why = ", ".join(f"{k} {n}" for k, n in sorted(self.blocked_by.items()))
        return (
            f"inbound: {self.callers} caller{'' if self.callers == 1 else 's'}: answered {self.answered}, "
            f"abandoned {self.abandoned}, blocked "
            f"{self.blocked}{f' ({why})' if why else ''}; service level {level} within "
            f"{self.service_level_seconds:g} s{mixed}; ASA {asa}"
        )


def inbound_figures(rows: Iterable[InboundRow]) -> InboundFigures | None:
    """The figures of a campaign's inbound rows (``None`` when it had no inbound caller). The service level uses
    each row's own flag, set as the call ended against the T the campaign then ran with."""
    rows = list(rows)
    if not rows:
        return None
    answered = [r for r in rows if r.outcome == "answered"]
    abandoned = sum(1 for r in rows if r.outcome == "abandoned")
    blocked = [r for r in rows if r.outcome == "blocked"]
    within = sum(1 for r in answered if r.within_service_level)
    queued = len(answered) + abandoned
    by: dict[str, int] = {}
    for r in blocked:
        key = r.reason or "unknown"
        by[key] = by.get(key, 0) + 1
    ts = {r.service_level_seconds for r in rows}
    arrivals = [r.arrived_at for r in rows]
    return InboundFigures(
        callers=len(rows),
        answered=len(answered),
        abandoned=abandoned,
        blocked=len(blocked),
        answered_within=within,
        service_level_seconds=max(ts),
        service_level=_ratio(within, queued),
        asa=_ratio(sum(r.wait for r in answered), len(answered)),
        blocking_share=_ratio(len(blocked), len(rows)),
        first_arrival=min(arrivals),
        last_arrival=max(arrivals),
        blocked_by=by,
        mixed_t=len(ts) > 1,
    )


INBOUND_COLUMNS = (
    "campaign_id",
    "call_id",
    "caller",
    "outcome",
    "reason",
    "arrived_utc",
    "answered_utc",
    "ended_utc",
    "wait_s",
    "agent_id",
    "agent_group",
    "within_service_level",
    "service_level_seconds",
    "owner",
    "arrived_at",
)


def write_inbound_csv(rows: Iterable[InboundRow], out: TextIO) -> int:
    """Every inbound caller, by arrival (``arrived_at`` keeps the epoch seconds the row is keyed by). Returns the
    number of rows."""
    w = csv.writer(out)
    w.writerow(INBOUND_COLUMNS)
    n = 0
    for r in sorted(rows, key=lambda r: (r.arrived_at, r.campaign_id, r.call_id)):
        w.writerow(
            [
                r.campaign_id,
                r.call_id,
                r.caller,
                r.outcome,
                r.reason or "",
                _iso(r.arrived_at),
                _iso(r.answered_at),
                _iso(r.ended_at),
                f"{r.wait:.3f}",
                r.agent_id or "",
                r.agent_group or "",
                int(r.within_service_level),
                f"{r.service_level_seconds:g}",
                r.owner or "",
                repr(r.arrived_at),
            ]
        )
        n += 1
    return n


def _amd_line(r: Window, amd: FalseMachineEstimate) -> str:
    upper_rate = "n/a" if r.rate_amd_upper is None else f"{r.rate_amd_upper:.2%}"
    basis = (
        f"{amd.point:.1%} of people taken for machines, {amd.source}"
        if amd.people
        else f"{amd.point:.1%} of people taken for machines, as configured"
    )
    return (
        f"AMD estimate: +{r.amd_people:.1f} people taken for machines (upper 95%: {r.amd_people_upper:.1f}; rate "
        f"{upper_rate}) among {r.amd_machines} machine verdicts, {r.amd_live} live answers through detection; "
        f"an estimate, included in the rate ({basis})"
    )
