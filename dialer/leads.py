"""The lead queue interface the engine dials from.

The engine never chooses *who* to call; it asks a :class:`LeadSource` for the next dialable lead when pacing says
to launch a call, and reports every finished call back so the source can schedule retries, callbacks and
lockouts. Compliance gates (do-not-call, calling windows) sit behind this interface and fail closed: a source
that is unsure whether a lead may be dialed must not return it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dialer.engine.records import CallRecord


@dataclass(frozen=True, slots=True, eq=True)
class Lead:
    """A person to call. ``phone`` is E.164 when it came through import; ``fields`` are passed through untouched."""

    lead_id: str
    phone: str
    name: str = ""
    time_zone: str = ""
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


class LeadSource(Protocol):
    """Where the engine gets leads from, and where call outcomes go back to."""

    def next_lead(self, now: float) -> Lead | None:
        """The next lead that may be dialed at ``now``, or ``None`` when nothing is dialable right now."""
        ...

    def report(self, record: CallRecord) -> None:
        """A call to one of this source's leads is over (any outcome).

        ``record.placed`` False means no INVITE ever left (no slot, trunk down): the lead was not dialed and a
        source that keeps attempts should offer it again untouched.
        """
        ...


class ListLeads:
    """Dial a fixed list once, in order; outcomes are kept for inspection. Handy for tests and small runs."""

    def __init__(self, leads: Iterable[Lead]) -> None:
        self._queue: deque[Lead] = deque(leads)
        self.records: list[CallRecord] = []

    def next_lead(self, now: float) -> Lead | None:
        return self._queue.popleft() if self._queue else None

    def report(self, record: CallRecord) -> None:
        self.records.append(record)
        if not record.placed:  # never dialed: offered again first, as if it had not been taken
            self._queue.appendleft(record.lead)

    def __len__(self) -> int:
        return len(self._queue)


class SyntheticLeads:
    """An endless list of made-up leads, for simulation, where who is called does not matter, only how it goes.

    Records are counted, not kept, so a long simulation does not grow memory with every call.
    """

    def __init__(self, prefix: str = "+1555") -> None:
        self._prefix = prefix
        self._n = 0
        self.reported = 0

    def next_lead(self, now: float) -> Lead | None:
        self._n += 1
        return Lead(lead_id=str(self._n), phone=f"{self._prefix}{self._n:07d}")

    def report(self, record: CallRecord) -> None:
        self.reported += 1
