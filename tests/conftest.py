"""Shared helpers for the test suite: a policy the test steers by hand, engine builders, and a state fingerprint.

The fingerprint (:func:`observe`) is how tests prove that a rejected event changed nothing: it captures every piece
of engine state a runtime or policy could ever see, plus the orderings that decide who gets matched next.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from dialer.engine import events as ev
from dialer.engine.actions import Action, DialLead, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.records import CallRecord
from dialer.engine.snapshot import Snapshot
from dialer.leads import Lead, ListLeads
from dialer.pacing.base import PacingPolicy

REPO = Path(__file__).resolve().parent.parent

# Test modules import these helpers as ``dialer_testkit``, not ``conftest``: subfolders have conftest.py files of
# their own, and pytest swaps ``sys.modules["conftest"]`` as it loads each one, so ``from conftest import ...``
# would resolve to whichever folder was collected last. This root conftest is loaded before any test module.
sys.modules.setdefault("dialer_testkit", sys.modules[__name__])


def doc_table(header: str) -> list[tuple[str, str, str]]:
    """The rows of one transition table in docs/engine.md, as (state, key, target); italic keys are triggers."""
    lines = (REPO / "docs" / "engine.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(header) + 2  # past the header and the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        state, key, target = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((state, key, target))
    return rows


def table_rows(table: Any) -> list[tuple[str, str, str]]:
    """A transition table of dialer.engine.state as docs/engine.md prints it: triggers in italics, events by
    their class name, in the table's order (what :func:`doc_table` reads back)."""
    from dialer.engine.state import PreviewTrigger, Trigger

    return [
        (s.value, f"*{k.value}*" if isinstance(k, (Trigger, PreviewTrigger)) else k.__name__, target.value)
        for s, row in table.items()
        for k, target in row.items()
    ]


class Scripted(PacingPolicy):
    """Launches exactly the number of calls the test asked for, once: the engine dials only when told to."""

    name = "scripted"

    def __init__(self) -> None:
        self.pending = 0
        self.decisions = 0
        self.observed: list[CallRecord] = []

    def decide(self, snap: Snapshot) -> int:
        self.decisions += 1
        n, self.pending = self.pending, 0
        return n

    def observe(self, record: CallRecord) -> None:
        self.observed.append(record)


def leads(n: int = 50) -> ListLeads:
    return ListLeads(Lead(str(i), f"+1555{i:07d}") for i in range(1, n + 1))


def make_engine(
    *, connect_limit: float = 2.0, ring_timeout: float | None = 20.0, max_in_flight: int | None = None, **kw: Any
) -> tuple[Engine, Scripted, ListLeads]:
    policy = Scripted()
    source = leads()
    engine = Engine(
        policy,
        source,
        EngineConfig(connect_limit=connect_limit, ring_timeout=ring_timeout, max_in_flight=max_in_flight, **kw),
    )
    return engine, policy, source


def dial(engine: Engine, policy: Scripted, t: float, n: int = 1) -> list[int]:
    """Have the engine launch ``n`` calls at ``t``; returns their call ids."""
    policy.pending = n
    actions = engine.handle(ev.TimeAdvanced(t))
    ids = [a.call_id for a in actions if isinstance(a, DialLead)]
    assert len(ids) == n, actions
    return ids


def records(actions: list[Action]) -> list[CallRecord]:
    return [a.record for a in actions if isinstance(a, RecordCall)]


def observe(engine: Engine) -> dict[str, Any]:
    """Everything observable about an engine, as plain data that compares with ``==``."""
    stats = engine.stats
    snap = engine.snapshot()
    return {
        "now": engine.now,
        "dialing": engine.dialing,
        "stale": engine.stale_events,
        "agents": {a.agent_id: (a.state, a.since, a.call_id) for a in engine.agents.values()},
        "calls": {c.call_id: tuple(getattr(c, slot) for slot in type(c).__slots__) for c in engine.calls.values()},
        "agent_counts": dict(engine.agent_counts),
        "call_counts": dict(engine.call_counts),
        "ready_order": list(engine._ready),
        "queued_order": list(engine._queued),
        # Only live timers: next_timer() prunes dead ones lazily, which is bookkeeping, not state.
        "timers": sorted(t for t in engine._timers if engine._timer_live(t)),
        "next_call_id": engine._next_call_id,
        "hung_up": list(engine._hung_up),
        "next_timer": engine.next_timer(),
        "totals": repr(stats.totals),
        "days": repr(stats.days),
        "agent_seconds": dict(stats.agent_seconds),
        "idle": (stats.idle_gaps, stats.idle_gap_seconds),
        "recent": (stats.recent.dials, stats.recent.live_answers, stats.recent.abandoned, len(stats.recent._items)),
        "snapshot": (snap.ready, snap.paused, snap.on_call, snap.wrap_up, snap.ringing, snap.queued, snap.connected),
        "leads_left": len(engine.leads) if isinstance(engine.leads, ListLeads) else None,
        "records": len(engine.leads.records) if isinstance(engine.leads, ListLeads) else None,
    }


def dialer_command() -> list[str]:
    """The installed ``dialer`` console script (CI installs the package, so its absence is a failure)."""
    exe = shutil.which("dialer", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe is not None, "the `dialer` console script is not installed (pip install -e .)"
    return [exe]


@pytest.fixture
def scripted_engine() -> tuple[Engine, Scripted, ListLeads]:
    return make_engine()
