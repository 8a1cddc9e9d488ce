"""The pacing-policy interface: a snapshot in, a number of calls to launch out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from dialer.engine.records import CallRecord
    from dialer.engine.snapshot import Snapshot


class PacingPolicy(ABC):
    """Decides how many calls to launch now.

    The engine calls :meth:`decide` after every event it handles, so a policy sees every change as it happens.
    Policies that act on a cadence (VICIdial dials every 2.5 s) keep their own schedule and ask to be woken with
    :meth:`next_wakeup`; the runtime then sends a ``TimeAdvanced`` at that time. Policies hold no clock and draw
    no random numbers: given the same snapshots they make the same decisions, under SimPy or live.
    """

    name: ClassVar[str] = "policy"

    @abstractmethod
    def decide(self, snap: Snapshot) -> int:
        """How many new calls to launch at ``snap.now`` (negative values are treated as 0)."""

    def next_wakeup(self, now: float) -> float | None:
        """When this policy next wants to decide even if nothing happens (``None``: only on events)."""
        return None

    def observe(self, record: CallRecord) -> None:
        """A call finished; estimators learn from it here."""
        return None

    def observe_answer(self, answered_at: float, rang: float) -> None:
        """A person answered after ringing ``rang`` seconds. The call's record comes only when it ends, minutes
        later; estimators of when people answer learn here, without the bias of hearing first of short calls."""
        return None

    def launched(self, now: float, requested: int, placed: int) -> None:
        """After :meth:`decide` asked for ``requested`` calls, the engine placed ``placed`` (fewer when the lead
        source had nothing dialable or the trunk was full): a policy that tracks its own launches corrects here."""
        return None

    def observe_wrap_up(self, now: float, seconds: float, paused: bool) -> None:
        """An agent finished ``seconds`` of after-call work and went on a break (``paused``) or back to ready.
        Call records cannot tell wrap-up times, so estimators of when agents come free learn them here."""
        return None
