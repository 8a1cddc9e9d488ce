"""Preview and manual dialing: every call is dialed with its agent reserved, so nobody is ever abandoned.

For B2B lists and other campaigns where pacing must not abandon anyone, the agent sees the lead first. With the
``preview`` policy the engine never places a call on its own guess: it shows a lead to a ready agent
(:class:`~dialer.engine.actions.PreviewLead`), the agent presses dial or skip (or the engine dials by itself after
``timeout`` seconds), and the dial carries its agent: whoever answers is connected to that agent at once, and a
dial that reaches nobody frees the agent. With ``manual`` the engine offers nothing; agents dial what they choose
(:class:`~dialer.engine.events.ManualDial`), through the lead source's gates. What the policy decides is how many
ready agents get a lead now; the engine, not the policy, guarantees the reservation (it never offers more leads
than it has ready agents), so no answer of any policy can make a preview floor abandon anybody.

See docs/pacing.md ("Preview and manual dialing") and docs/engine.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dialer.engine.events import is_number
from dialer.errors import ConfigError
from dialer.pacing.base import PacingPolicy

if TYPE_CHECKING:
    from dialer.engine.snapshot import Snapshot


class Preview(PacingPolicy):
    """Show every ready agent a lead; ``timeout`` seconds later (``None``: never) the engine dials it itself.

    The engine recognises this class (and its subclasses) and switches to preview dialing: leads are offered,
    not dialed, and each call is dialed with its agent reserved."""

    name = "preview"

    def __init__(self, timeout: float | None = None) -> None:
        if timeout is not None and (not is_number(timeout) or not 0 <= timeout < math.inf):
            raise ConfigError(
                "timeout", f"must be a finite number of seconds >= 0 (leave it out: never dial alone), got {timeout!r}"
            )
        self.timeout: float | None = None if timeout is None else float(timeout)

    def decide(self, snap: Snapshot) -> int:
        """How many ready agents to show a lead now: all of them (the engine never offers more than it has)."""
        return snap.ready


class Manual(Preview):
    """Agents dial what they choose (:class:`~dialer.engine.events.ManualDial`); the engine offers nothing."""

    name = "manual"

    def __init__(self) -> None:
        super().__init__(None)

    def decide(self, snap: Snapshot) -> int:
        return 0
