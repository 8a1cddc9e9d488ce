"""The SIP driver as a bus worker's call placer: dial requests from MQTT become real calls over SIP.

:class:`SipPlacer` adapts :class:`~dialer.sip.SipDriver` (a pool of pjsua2 processes) to the
:class:`~dialer.distributed.dial_worker.CallPlacer` protocol. It only translates: driver events become
``work.event`` reports, the driver's capacity becomes the worker's capacity. The driver already guarantees one
final event per call (a crashed pjsua2 process included), which is exactly what the worker needs to free its slots.

Answering-machine detection runs in the worker, next to the audio; the verdict travels as ``answered_machine``
or ``answered_person`` with the answer time back-dated by the detection time, so the dispatcher's engine counts
detection against the connect limit as the regulators do. ``unsure`` is reported as a person (fail closed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from dialer.distributed.dial_worker import DialRequest, Report
from dialer.errors import ConfigError

if TYPE_CHECKING:
    from dialer.sip import DriverEvent, PoolConfig, SipDriver

log = logging.getLogger("dialer.bus.sip")


class SipPlacer:
    """Place a worker's calls through a :class:`~dialer.sip.SipDriver` built from ``config``.

    ``agents`` maps agent ids to SIP URIs, used when a bridge request carries no ``agent_uri``. ``on_capacity``
    is told how many calls the driver can hold whenever that changes (wire it to ``Worker.set_capacity``).
    """

    def __init__(
        self,
        config: PoolConfig,
        *,
        agents: Mapping[str, str] | None = None,
        on_capacity: Callable[[int], None] | None = None,
    ) -> None:
        from dialer.sip import SipDriver

        for agent_id, uri in (agents or {}).items():
            if not uri.startswith(("sip:", "sips:")):
                raise ConfigError(f"agents.{agent_id}", f"{uri!r} is not a SIP URI")
        self.agents = dict(agents or {})
        self.on_capacity = on_capacity
        self.driver: SipDriver = SipDriver(config, self._event, on_capacity=self._capacity)
        self._reports: dict[int, Report] = {}
        self._dialed_at: dict[int, float] = {}
        self._answered: set[int] = set()

    @property
    def capacity(self) -> int:
        return self.driver.capacity

    async def start(self, timeout: float = 30.0) -> None:
        """Start the pjsua2 processes (raises :class:`~dialer.sip.SipError` if none comes up)."""
        await self.driver.start(timeout)

    async def close(self) -> None:
        """Hang up what is left (each call still gets its final report) and stop the pjsua2 processes."""
        await self.driver.close()

    # -- CallPlacer --------------------------------------------------------------------------------------

    async def place(self, dial: DialRequest, report: Report) -> None:
        call_id = dial.call_id
        self._reports[call_id] = report
        self._dialed_at[call_id] = time.time()
        try:
            await self.driver.dial(call_id, dial.phone, dial.ring_timeout)
        except BaseException:
            self._forget(call_id)  # the worker reports the failure itself
            raise

    async def hangup(self, call_id: int, reason: str) -> None:
        self.driver.hangup(call_id)

    async def connect(self, call_id: int, agent_id: str, agent_uri: str | None) -> None:
        uri = agent_uri or self.agents.get(agent_id)
        if uri is None or not uri.startswith(("sip:", "sips:")):
            # Loud, so an operator fixes the agent map; and a failed bridge, so the person gets the message
            # instead of silence (the driver keeps the call up for it).
            log.error("call %d: no SIP URI for agent %s; cannot bridge", call_id, agent_id)
            report = self._reports.get(call_id)
            if report is not None:
                report("bridge_failed", call_id, reason="0")
            return
        self.driver.bridge(call_id, uri)

    async def play_message(self, call_id: int) -> None:
        self.driver.play_message(call_id)

    # -- driver -> reports -------------------------------------------------------------------------------

    def _forget(self, call_id: int) -> Report | None:
        self._dialed_at.pop(call_id, None)
        self._answered.discard(call_id)
        return self._reports.pop(call_id, None)

    def _event(self, event: DriverEvent) -> None:
        from dialer.sip import Answered, BridgeFailed, Dtmf, Ended, Failed, MessageStarted, NotPlaced, Placed, Ringing

        cid = event.call_id
        report = self._reports.get(cid)
        if report is None:
            return
        if isinstance(event, Placed):
            report("placed", cid, at=event.at)
        elif isinstance(event, NotPlaced):
            self._forget(cid)
            report("not_placed", cid, reason=event.why)
        elif isinstance(event, Ringing):
            report("ringing", cid)
        elif isinstance(event, Answered):
            self._answered.add(cid)
            if event.verdict == "machine":
                report("answered_machine", cid)
            else:
                now = time.time()
                wire = event.answered_at if event.answered_at is not None else now - event.detect_seconds
                answered_at = min(now, max(self._dialed_at.get(cid, now), wire))
                report("answered_person", cid, answered_at=answered_at)
        elif isinstance(event, Failed):
            self._forget(cid)
            report("failed", cid, reason=event.outcome.reason.value)
        elif isinstance(event, Ended):
            answered = cid in self._answered
            self._forget(cid)
            # Ended without an answer we reported: a crash between the 200 OK and our news of it.
            if answered:
                report("ended", cid)
            else:
                report("failed", cid, reason="network")
        elif isinstance(event, MessageStarted):
            report("message", cid, at=event.at)
        elif isinstance(event, Dtmf):
            report("dtmf", cid, reason=event.digit)
        elif isinstance(event, BridgeFailed):
            # The customer stays up: the dispatcher's engine counts the abandonment and orders the message.
            log.warning("call %d: the agent's phone did not answer (status %d)", cid, event.status)
            report("bridge_failed", cid, reason=str(event.status))

    def _capacity(self, capacity: int) -> None:
        if self.on_capacity is not None:
            self.on_capacity(capacity)
