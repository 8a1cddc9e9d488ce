"""The campaign's lead source: the store's leads, with every compliance gate applied at dial time.

:class:`CampaignLeads` implements the engine's :class:`~dialer.leads.LeadSource`. For each lead it considers, in
dialing order (due callbacks, then priority, then list order), it asks, in this order: attempts left? on a
do-not-call list? inside the calling window in every candidate zone? Only a lead that passes all three is
*claimed* — its attempt is committed to the store — and only then handed to the engine. The claim itself asks a
fourth question in its own transaction: is the NUMBER protected store-wide, by an opt-out or an abandonment
lockout that any campaign on the store recorded (perhaps one running in another process since this one started)?
A number that opted out finishes the lead as ``do_not_call``; a locked-out one waits for the lockout's end.

A number on the NATIONAL REGISTRY (and on no company list or opt-out) may still be dialed when the law exempts the
call: the lead's consent records (express written consent, an EBR within its window on the day of the call) or the
campaign's purpose (charity, political, survey); see :mod:`dialer.compliance.consent`. The basis is recorded on the
attempt row (``registry_basis``) and handed to the engine in the lead's ``fields["registry_basis"]``, so the call's
evidence names it. Nothing exempts a number on the company list or one that opted out. So:

* a crash after the claim leaves an open attempt, closed as ``interrupted`` at the next start and never dialed
  again under that attempt number (and, since its outcome is unknown, the abandonment lockout applies);
* a crash before the claim dials nothing.

A SHARED store can go away under a running campaign (a PostgreSQL server restarting, a connection dropped): the
store then raises :class:`~dialer.store.StoreUnavailable`, and this class rides it out rather than stop the run.
While the store is away no lead is claimed, so nothing is dialed that could not be recorded; records of calls
already up, opt-outs and dispositions are kept in order, in memory, and written first when the store answers
again (an opt-out is in force in this process at once, and store-wide once written); the store is asked again
with back-off (0.5 s doubling to 30 s). A claim cut off mid-commit may or may not have been committed: once the
store is back, an attempt it left open is removed (that lead was never dialed). Each outage and its end are
logged (``dialer.campaign``) and shown in :attr:`CampaignLeads.outage`.

Engine time is float seconds. Live, that is epoch seconds; under the simulator pass ``epoch_offset`` (the epoch of
simulated time 0) so that windows and lockouts are judged on a real calendar, identically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dialer.campaign.lifecycle import Disposition, RetryPolicy, after_attempt, capped, recyclable
from dialer.compliance.consent import Basis, Purpose, expired_records, registry_exemption
from dialer.compliance.dnc import DoNotCall
from dialer.compliance.numbers import time_zones_of
from dialer.compliance.windows import CallingWindows
from dialer.errors import DialerError
from dialer.leads import Lead
from dialer.store import AnyStore, ClaimLost, InboundRow, NumberBlocked, StoredLead, StoreError, StoreUnavailable
from dialer.store.consents import ConsentStore

if TYPE_CHECKING:
    from dialer.engine.records import CallRecord, InboundRecord
    from dialer.store.sqlite import AttemptRow

PAGE = 200
RETRY_GATE = 300.0  # seconds before re-asking a gate that could not decide (e.g. a stale registry)
OUTAGE_FIRST_RETRY = 0.5  # seconds before the store is asked again after it went away; doubles each time...
OUTAGE_MAX_RETRY = 30.0  # ...up to this

log = logging.getLogger("dialer.campaign")


class CampaignError(DialerError):
    """A campaign operation that cannot be done (unknown lead, ambiguous callback time, cap reached, ...)."""


def _key(lead: StoredLead) -> tuple[int, int, int]:
    return (int(lead.callback_at is None), -lead.priority, lead.seq)


class CampaignLeads:
    """A :class:`~dialer.leads.LeadSource` over one campaign in a :class:`~dialer.store.Store`.

    One instance per campaign at a time: starting one closes the campaign's open attempts as interrupted.
    ``held`` counts leads held back at dial time, by reason (``do-not-call``, ``outside calling hours``,
    ``unknown time zone``, ``invalid number``, ...); ``held_by_rule`` counts the same holds by the rule that
    decided (``do-not-call: internal list``, ``hours: US federal``, ``area-code zone``, ``stated state zone``,
    ``public holiday: AU-NSW``, ...): what each rule costs in reach (:meth:`reach`). ``scan_limit`` bounds the
    leads examined per :meth:`next_lead` call, so one call never stalls the engine on a list that is entirely
    outside its window. ``purpose`` is the campaign's (``telemarketing``: no exemption of its own); ``exempted``
    counts the registry numbers dialed under an exemption, by the rule of their basis.
    """

    def __init__(
        self,
        store: AnyStore,
        campaign_id: str,
        *,
        dnc: DoNotCall,
        windows: CallingWindows | None = None,
        policy: RetryPolicy | None = None,
        epoch_offset: float = 0.0,
        scan_limit: int = 2000,
        on_hold: Callable[[dict[str, Any]], None] | None = None,
        purpose: Purpose | str = Purpose.TELEMARKETING,
        adopt: Iterable[str] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.purpose = Purpose(purpose)
        self.consents = ConsentStore(store)
        self.exempted: dict[str, int] = {}
        self._bases: dict[str, Basis] = {}
        self.campaign_id = campaign_id
        self.dnc = dnc
        self.windows = windows or CallingWindows()
        self.policy = policy or RetryPolicy()
        self.epoch_offset = epoch_offset
        self.scan_limit = scan_limit
        self.held: dict[str, int] = {}
        self._hold_seq = 0  # holds made so far, and the last one's reason (see manual_lead)
        self._last_hold = ""
        self.held_by_rule: dict[str, int] = {}
        self._on_hold = on_hold
        self.dialed = 0
        self._open: dict[str, int] = {}
        # Leads whose open attempt a restarted dispatcher adopts: their calls may still be up on a worker, and
        # their real outcome will be reported (or closed by close_interrupted if it never comes).
        self.adopted = frozenset(adopt)
        # Riding out a shared store that went away (see the module's docstring).
        self._monotonic = monotonic
        self._later: list[tuple[str, Callable[[bool], None]]] = []  # writes the store could not take, in order
        self._uncertain: list[tuple[str, float]] = []  # claims cut off mid-commit: (lead_id, epoch of the claim)
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self.outages = 0  # how many times the store went away during this run
        self.lost_claims = 0  # leads another dispatcher on the store claimed between our read and our claim
        self.outage: str | None = None  # why the store is away now (``None``: it answers)
        # Who this lead source is on the store: every attempt it claims carries it, and the store holds it alive
        # (a lock the process's death releases), so another dispatcher starting on the campaign leaves its open
        # attempts alone and closes only those of dispatchers that are gone.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
        store.ensure_campaign(campaign_id)
        store.hold_owner(self.owner)
        dnc.add_internal(store.opt_outs())
        self.recovered = self._recover()

    # -- the LeadSource protocol -----------------------------------------------------------------------

    def next_lead(self, now: float) -> Lead | None:
        if not self.catch_up():
            return None  # the store is away: no claim, so no dial that could not be recorded
        try:
            return self._next_lead(now)
        except StoreUnavailable as exc:
            self.went_away(exc)
            return None

    def _next_lead(self, now: float) -> Lead | None:
        epoch = now + self.epoch_offset
        after: tuple[int, ...] = ()
        scanned = 0
        parked: list[tuple[str, float]] = []
        try:
            while scanned < self.scan_limit:
                page = self.store.due_leads(self.campaign_id, epoch, min(PAGE, self.scan_limit - scanned), after)
                if not page:
                    return None
                for lead in page:
                    scanned += 1
                    after = _key(lead)
                    wait = self._gate(lead, epoch)
                    if wait is None:
                        claimed = self._claim(lead, epoch)
                        if isinstance(claimed, Lead):
                            return claimed
                        if claimed is None:  # another dispatcher on the store got there first: the next lead
                            continue
                        wait = claimed
                    if wait > epoch:
                        parked.append((lead.lead_id, wait))
            return None
        finally:
            if parked and self.outage is None:  # parking only saves work: a store away now is asked later
                with self.store.transaction():
                    for lead_id, until in parked:
                        self.store.update_lead(self.campaign_id, lead_id, next_at=until)

    def _claim(self, lead: StoredLead, epoch: float) -> Lead | float | None:
        """Claim a lead its gates let through: the lead as the engine gets it; or, when the store refused it for
        its number's sake, the epoch to look at it again; or ``None`` when another dispatcher claimed it first.
        A store that went away mid-claim leaves it uncertain (settled when the store is back) and raises."""
        basis = self._bases.pop(lead.lead_id, None)
        try:
            attempt = self.store.claim(self.campaign_id, lead.lead_id, epoch, attempts=lead.attempts, owner=self.owner)
        except ClaimLost:
            self.lost_claims += 1
            return None
        except NumberBlocked as blocked:
            return self._blocked(lead, blocked)
        except StoreUnavailable:
            self._uncertain.append((lead.lead_id, epoch))  # committed or not: checked when back
            raise
        return self._hand_out(lead, attempt, basis)

    def _hand_out(self, lead: StoredLead, attempt: int, basis: Basis | None) -> Lead:
        """A claimed lead, as the engine gets it (the registry basis recorded on the attempt first)."""
        self._open[lead.lead_id] = attempt
        self.dialed += 1
        fields = dict(lead.fields)
        if basis is not None:  # recorded before the dial: the attempt row, then the call's evidence
            fields["registry_basis"] = basis.describe()
            self.consents.set_attempt_basis(self.campaign_id, lead.lead_id, attempt, basis.describe())
            self.exempted[basis.rule] = self.exempted.get(basis.rule, 0) + 1
        return Lead(lead.lead_id, lead.phone, lead.name, lead.time_zone, fields)

    def manual_lead(self, lead: Lead, now: float) -> Lead | str:
        """An agent's manual dial (the engine's ``ManualDial``), through every gate a paced dial passes.

        Only a lead of this campaign may be dialed by hand: named by its ``lead_id`` or, when the id is not one of
        the campaign's, by its number in any spelling (an agent's typed number). A number the campaign does not
        hold has no consent, no attempt history and no calling window on record, so it is refused, as is a lead
        that is not ready and due, has no attempts left, is on a do-not-call list, is outside its calling hours,
        or whose number another campaign protected; and a lead named by its id together with a number that is not
        that lead's (the agent meant one of them, and dialing either could be the wrong person). A lead that passes
        is claimed (its attempt committed) before it is handed back to be dialed; a refusal is a short reason the
        agent's desktop can show, the rule's name as the evidence log records its hold.
        """
        if not self.catch_up():
            return "the store is unavailable"
        epoch = now + self.epoch_offset
        from dialer.compliance.dnc import list_key
        from dialer.compliance.numbers import NumberError

        typed: str | None = None
        if any(ch.isdigit() for ch in lead.phone):  # a number was given (a stand-in without digits was not)
            try:
                typed = list_key(lead.phone, self.dnc.default_region)
            except NumberError:
                return "not a phone number"
        try:
            stored = self.store.find_lead(self.campaign_id, lead_id=lead.lead_id) if lead.lead_id else None
            if stored is not None and typed is not None and typed != stored.phone:
                return f"the number given is not lead {stored.lead_id}'s"
            if stored is None and typed is not None:  # a typed number: the campaign's lead with that number
                stored = self.store.find_lead(self.campaign_id, phone=typed)
            if stored is None:
                return "not a lead of this campaign"
            if stored.status != "ready":
                return f"lead {stored.lead_id} is {stored.status}"
            due = max(stored.next_at, stored.lockout_until)
            if due > epoch:
                when = dt.datetime.fromtimestamp(due, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                return f"lead {stored.lead_id} is not due until {when}"
            seq = self._hold_seq
            if self._gate(stored, epoch) is not None:
                return self._last_hold if self._hold_seq != seq else "held by the campaign's rules"
            claimed = self._claim(stored, epoch)
            if isinstance(claimed, Lead):
                return claimed
            if claimed is None:
                return "claimed by another dispatcher"
            return self._last_hold if self._hold_seq != seq else "held by the campaign's rules"
        except StoreUnavailable as exc:
            self.went_away(exc)
            return "the store is unavailable"

    def report(self, record: CallRecord) -> None:
        attempt = self._open.pop(record.lead.lead_id, None)
        self._write(f"the record of call {record.call_id}", lambda again: self._report(record, attempt, again))

    def _report(self, record: CallRecord, attempt: int | None, again: bool) -> None:
        lead_id = record.lead.lead_id
        if attempt is None:  # not in memory: the store's open attempt is the truth
            opened = [a for a in self.store.open_attempts(self.campaign_id) if a.lead_id == lead_id]
            if len(opened) != 1:
                raise CampaignError(f"a record for lead {lead_id!r}, which has no open attempt")
            attempt = opened[0].attempt_no
        if not record.placed:  # no INVITE left: the lead was never dialed, and is offered again as it was
            try:
                self.store.unclaim(self.campaign_id, lead_id, attempt)
            except StoreUnavailable:
                raise
            except StoreError:  # written again after an outage: the first try may have committed as it went
                rows = self.store.attempts(self.campaign_id, lead_id=lead_id) if again else []
                if not again or any(a.attempt_no == attempt for a in rows):
                    raise
            self.dialed -= 1
            return
        off = self.epoch_offset

        def epoch(t: float | None) -> float | None:
            return None if t is None else t + off

        ended = record.ended_at + off
        result = {
            "call_id": record.call_id,
            "outcome": record.outcome.value,
            "ended_at": ended,
            "answered_at": epoch(record.answered_at),
            "connected_at": epoch(record.connected_at),
            "message_at": epoch(record.message_at),
            "wait": record.wait,
            "agent_id": record.agent_id,
            "abandoned": record.abandoned,
            "customer_hung_up": record.customer_hung_up,
            "placed_at": epoch(record.dialed_at),
            "ringing_at": epoch(record.ringing_at),
            "message_played": record.message_played,
            "bridge_failed": record.bridge_failed,
            "amd_verdict": record.amd_verdict,
            "amd_seconds": record.amd_seconds,
            "picked_up_at": epoch(record.picked_up_at),
        }
        lead = self.store.lead(self.campaign_id, lead_id)
        changes = after_attempt(lead, record.outcome.value, ended, self.policy)
        try:
            self.store.complete(self.campaign_id, lead_id, attempt, result, changes)
        except StoreUnavailable:
            raise
        except StoreError:
            if not again:
                raise
            # Written again after an outage: the first try may have committed before the connection went.
            done = [a for a in self.store.attempts(self.campaign_id, lead_id=lead_id) if a.attempt_no == attempt]
            if not (done and done[0].state == "done" and done[0].call_id == record.call_id):
                raise

    def report_inbound(self, record: InboundRecord, *, caller: str = "", service_level_seconds: float) -> None:
        """Write one finished inbound call to the store's ``inbound_calls`` (see :class:`~dialer.store.InboundRow`),
        through the same outage-tolerant path as the records of dials: kept in order and written when a shared
        store that went away answers again. The write is idempotent, so a retry of one that had committed is
        harmless. ``caller`` is who rang as the evidence log keeps it; ``service_level_seconds`` the campaign's T,
        kept with the row with its flag (answered within T)."""
        off = self.epoch_offset
        row = InboundRow(
            campaign_id=self.campaign_id,
            call_id=record.inbound_id,
            arrived_at=record.arrived_at + off,
            outcome=record.outcome.value,
            wait=record.wait,
            ended_at=record.ended_at + off,
            service_level_seconds=service_level_seconds,
            within_service_level=record.answered_within(service_level_seconds),
            caller=caller,
            reason=record.reason,
            answered_at=None if record.answered_at is None else record.answered_at + off,
            agent_id=record.agent_id,
            agent_group=record.group,
            owner=self.owner,
        )
        self._write(f"the record of inbound call {record.inbound_id or '(unnamed)'}", lambda again: self._inbound(row))

    def _inbound(self, row: InboundRow) -> None:
        self.store.add_inbound(row)

    # -- a shared store that went away ------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Writes (records, opt-outs, dispositions) waiting for the store to answer again."""
        return len(self._later)

    def _write(self, what: str, op: Callable[[bool], None]) -> None:
        """Run ``op`` now, or keep it for when the store answers again (in order behind any already kept)."""
        if not self._later:
            try:
                op(False)
                return
            except StoreUnavailable as exc:
                self.went_away(exc)
        self._later.append((what, op))

    def went_away(self, exc: StoreUnavailable) -> None:
        """The store did not answer (here or in a caller's query): pause claims, ask again after the back-off."""
        now = self._monotonic()
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                "campaign %s: %s; dialing paused, records kept to write when it answers again", self.campaign_id, exc
            )
        self.outage = str(exc)
        self._backoff = min(max(OUTAGE_FIRST_RETRY, 2 * self._backoff), OUTAGE_MAX_RETRY)
        self._retry_at = now + self._backoff

    def catch_up(self, *, force: bool = False) -> bool:
        """Write what the store could not take, and settle claims cut off mid-commit; True when nothing is left
        and the store answers. While the store is away this asks it again only once the back-off has passed
        (``force``: now)."""
        if self._down_since is None and not self._later and not self._uncertain:
            return True
        if not force and self._monotonic() < self._retry_at:
            return False
        try:
            self._settle_claims()
            while self._later:
                what, op = self._later[0]
                try:
                    op(True)
                except StoreUnavailable:
                    raise
                except DialerError as exc:  # cannot be written at all: say so, never block the rest behind it
                    log.error("campaign %s: %s could not be written after the outage: %s", self.campaign_id, what, exc)
                self._later.pop(0)
        except StoreUnavailable as exc:
            self.went_away(exc)
            return False
        if self._down_since is not None:
            log.warning(
                "campaign %s: store answers again after %.1f s; every kept write is in; dialing resumes",
                self.campaign_id,
                self._monotonic() - self._down_since,
            )
        self._down_since = None
        self.outage = None
        self._backoff = 0.0
        return True

    def _settle_claims(self) -> None:
        """A claim whose commit was cut off left an open attempt or nothing; either way its lead was never
        dialed, so an attempt it left open (dialed_at is the claim's epoch) is removed, as :meth:`report` does
        for a dial that never left."""
        while self._uncertain:
            lead_id, epoch = self._uncertain[0]
            for row in self.store.open_attempts(self.campaign_id):
                if row.lead_id == lead_id and row.dialed_at == epoch and self._open.get(lead_id) != row.attempt_no:
                    self.store.unclaim(self.campaign_id, lead_id, row.attempt_no)
                    log.warning(
                        "campaign %s: lead %s's claim was committed as the store went away; undone, never dialed",
                        self.campaign_id,
                        lead_id,
                    )
            self._uncertain.pop(0)

    # -- gates -----------------------------------------------------------------------------------------

    def _hold(
        self,
        reason: str,
        rule: str | None = None,
        lead: StoredLead | None = None,
        until: float | None = None,
        note: str = "",
    ) -> None:
        self.held[reason] = self.held.get(reason, 0) + 1
        self._hold_seq += 1  # a manual dial's refusal names the hold its gates just made
        self._last_hold = reason
        key = rule or reason
        self.held_by_rule[key] = self.held_by_rule.get(key, 0) + 1
        if self._on_hold is not None and lead is not None:
            # Evidence: which rule held which number, on what data (the list's version), and until when.
            entry = {
                "campaign_id": self.campaign_id,
                "lead_id": lead.lead_id,
                "phone": lead.phone,
                "reason": reason,
                "rule": key,
                "source": self._source_of(key),
                "version": self._version_of(key),
                "until": None if until is None or until == float("inf") else until,
                "final": until == float("inf"),
            }
            if note:
                entry["note"] = note
            self._on_hold(entry)

    def _source_of(self, rule: str) -> str:
        if rule.startswith("do-not-call: national registry"):
            registry = self.dnc.registry
            return str(registry.directory) if registry is not None else "national registry (none loaded)"
        if rule.startswith("do-not-call"):
            return "company list and opt-outs on the store"
        if rule.startswith(("store-wide", "abandonment")):
            return "store number lockouts"
        return "calling-hours rules"

    def _version_of(self, rule: str) -> str:
        """The version of the data the rule read: the registry's date and size, the holiday calendar's package."""
        if rule.startswith("do-not-call: national registry") and self.dnc.registry is not None:
            meta = self.dnc.registry.meta
            return f"as of {dt.datetime.fromtimestamp(meta.as_of, dt.UTC).date().isoformat()}, {meta.count} numbers"
        if "holiday" in rule:
            try:
                from importlib.metadata import version

                return f"holidays {version('holidays')}"
            except Exception:  # not installed: the rule came from campaign holiday files only
                return "campaign holiday files"
        return ""

    def reach(self) -> list[tuple[str, int]]:
        """Dial-time holds per rule, most costly first: the reach each rule costs this run (a lead parked until
        its window opens counts once per time it was looked at and held)."""
        return sorted(self.held_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))

    def _gate(self, lead: StoredLead, epoch: float) -> float | None:
        """``None`` if the lead may be dialed now; else the epoch to look at it again (``inf``: never)."""
        if capped(lead, self.policy):
            self._hold("attempts exhausted", lead=lead, until=float("inf"))
            self.store.update_lead(self.campaign_id, lead.lead_id, status="done", disposition=Disposition.MAX_ATTEMPTS)
            return float("inf")
        reason = self.dnc.check(lead.phone)
        basis: Basis | None = None
        note = ""
        if reason == "national registry":  # only the registry: "internal list" (company list, opt-out) never is
            basis, note = self._exemption(lead, epoch)
            if basis is not None:
                reason = None
        if reason is not None:
            if reason in ("internal list", "national registry"):
                self._hold("do-not-call", f"do-not-call: {reason}", lead, float("inf"), note)
                self.store.update_lead(
                    self.campaign_id, lead.lead_id, status="done", disposition=Disposition.DO_NOT_CALL
                )
                return float("inf")
            if reason.startswith("not an E.164 number"):  # stored before the one normaliser: never dialable
                self._hold("invalid number", lead=lead, until=float("inf"))
                self.store.update_lead(
                    self.campaign_id, lead.lead_id, status="done", disposition=Disposition.INVALID_NUMBER
                )
                return float("inf")
            self._hold("no usable do-not-call registry", f"do-not-call: {reason}", lead, epoch + RETRY_GATE)
            return epoch + RETRY_GATE  # no or stale registry: wait for a fresh one, never dial meanwhile
        state = lead.fields.get("state", "")
        verdict = self.windows.decide(lead.phone, epoch, time_zone=lead.time_zone, state=state)
        if verdict.reason is None:
            if basis is not None:
                self._bases[lead.lead_id] = basis
            return None
        opens = self.windows.next_open(lead.phone, epoch, time_zone=lead.time_zone, state=state)
        again = opens if opens is not None else epoch + 24 * 3600.0
        self._hold(verdict.reason.split(":", 1)[0], verdict.rule, lead, again)
        return again

    def _exemption(self, lead: StoredLead, epoch: float) -> tuple[Basis | None, str]:
        """The basis on which a national-registry number may be dialed now, and, when there is none although the
        lead has consent records, a note naming them (the hold's evidence says why they were no basis)."""
        records = self.consents.of_lead(self.campaign_id, lead.lead_id)
        # The call's date is the person's: every zone the number may ring in, and the stated one.
        zones = {*time_zones_of(lead.phone), *([lead.time_zone] if lead.time_zone else [])}
        basis = registry_exemption(records, self.purpose, epoch, sorted(zones))
        if basis is not None or not records:
            return basis, ""
        stale = ", ".join(
            f"{c.kind.value} {c.date.isoformat()}" + (f" expired {c.expires.isoformat()}" if c.expires else "")
            for c in expired_records(records, epoch, sorted(zones))
        )
        return None, f"consent records no basis on this date: {stale}"

    def _blocked(self, lead: StoredLead, blocked: NumberBlocked) -> float:
        """A claim refused for the number's sake (see :meth:`Store.claim`): when to look at the lead again.

        Why at the claim: another campaign's process may have taken an opt-out, or had a call to this number
        abandoned, after this one loaded its lists. An opt-out ends the lead as ``do_not_call`` and joins this
        process's list at once; a lockout from an abandoned call, in any campaign, parks the lead until it ends.
        """
        if blocked.until == float("inf"):
            self._hold("do-not-call", "do-not-call: store-wide opt-out", lead, float("inf"))
            self.dnc.add_internal([lead.phone])
            self.store.update_lead(self.campaign_id, lead.lead_id, status="done", disposition=Disposition.DO_NOT_CALL)
            return float("inf")
        self._hold("abandonment lockout", "store-wide abandonment lockout", lead, blocked.until)
        return blocked.until

    # -- recovery --------------------------------------------------------------------------------------

    def _recover(self) -> int:
        """Close attempts left open by a crash as interrupted; their leads follow the interrupted retry rule.

        Only the attempts of dispatchers that are gone: another dispatcher running on the same campaign (on this
        machine or another) still holds its owner, and its calls are still up. Attempts from before owners were
        recorded (``owner`` empty) count as gone, as they always did."""
        opened = [
            a
            for a in self.store.open_attempts(self.campaign_id)
            if a.lead_id not in self.adopted and not (a.owner and self.store.owner_alive(a.owner))
        ]
        for attempt in opened:
            self._interrupt(attempt)
        return len(opened)

    def close_interrupted(self, lead_id: str) -> bool:
        """Close the lead's open attempt as interrupted (an adopted call whose outcome never came); False if it
        has none open."""
        opened = [a for a in self.store.open_attempts(self.campaign_id) if a.lead_id == lead_id]
        for attempt in opened:
            self._interrupt(attempt)
        return bool(opened)

    def _interrupt(self, attempt: AttemptRow) -> None:
        with self.store.transaction():
            lead = self.store.lead(self.campaign_id, attempt.lead_id)
            changes = after_attempt(lead, Disposition.INTERRUPTED, attempt.dialed_at, self.policy)
            self.store.complete(
                self.campaign_id,
                attempt.lead_id,
                attempt.attempt_no,
                {"outcome": Disposition.INTERRUPTED.value},
                changes,
                state="interrupted",
            )

    # -- agents and operators --------------------------------------------------------------------------

    def disposition(self, lead_id: str, disposition: str, *, callback_at: float | None = None) -> None:
        """The agent's disposition of the lead's last (connected) call.

        While the shared store is away (or writes are still waiting for it) the disposition is kept and written
        in order when it answers.

        ``callback`` needs ``callback_at`` (epoch; see :meth:`schedule_callback` for local times); ``dnc_request``
        puts the number on the do-not-call list at once (persisted first); ``machine`` (an answering machine the
        detector missed) follows the machine retry rule and counts in the UK machine adjustment.
        """
        self._write(
            f"the disposition {disposition!r} of lead {lead_id}",
            lambda again: self._disposition(lead_id, disposition, callback_at),
        )

    def _disposition(self, lead_id: str, disposition: str, callback_at: float | None) -> None:
        last = self.store.last_attempt(self.campaign_id, lead_id)
        if last is None or last.state != "done":
            raise CampaignError(f"lead {lead_id!r} has no finished call to disposition")
        lead = self.store.lead(self.campaign_id, lead_id)
        with self.store.transaction():
            self.store.set_attempt_disposition(self.campaign_id, lead_id, last.attempt_no, disposition)
            if disposition == Disposition.DNC_REQUEST:
                self.opt_out(lead.phone, source="agent")
            if disposition == Disposition.CALLBACK:
                if callback_at is None:
                    raise CampaignError("a callback needs a time")
                self._callback(lead, callback_at)
                return
            base = lead.outcome_counts.get(last.outcome or "", 0)
            undo = dict(lead.outcome_counts)
            if last.outcome and base:
                undo[last.outcome] = base - 1  # the outcome is re-judged, not counted twice
            changes = after_attempt(
                dataclasses.replace(lead, outcome_counts=undo),
                disposition,
                last.ended_at or last.dialed_at,
                self.policy,
            )
            self.store.update_lead(self.campaign_id, lead_id, **changes)

    def schedule_callback(self, lead_id: str, local: dt.datetime, *, zone: str | None = None) -> float:
        """Schedule a callback at a wall-clock time *of the lead* (what the agent agreed with the person).

        A naive ``local`` is read in ``zone``, else the lead's stated zone, else the number's zone when it has
        exactly one; otherwise the time is ambiguous and :class:`CampaignError` asks for a zone. The callback is
        still subject to every gate when it comes due (a callback agreed for 22:00 waits for the window).
        Returns the callback's epoch.
        """
        lead = self.store.lead(self.campaign_id, lead_id)
        if local.tzinfo is None:
            name = zone or lead.time_zone
            if not name:
                zones = time_zones_of(lead.phone)
                if len(zones) != 1:
                    raise CampaignError(
                        f"lead {lead_id!r}'s number spans {len(zones)} time zones: say which one the callback is in"
                    )
                name = zones[0]
            from zoneinfo import ZoneInfo

            local = local.replace(tzinfo=ZoneInfo(name))
        at = local.timestamp()
        with self.store.transaction():
            self._callback(self.store.lead(self.campaign_id, lead_id), at)
        return at

    def _callback(self, lead: StoredLead, at: float) -> None:
        if lead.disposition in (Disposition.DNC_REQUEST, Disposition.DO_NOT_CALL, Disposition.WRONG_NUMBER):
            raise CampaignError(f"lead {lead.lead_id!r} is finished as {lead.disposition}: no callback")
        if capped(lead, self.policy):
            raise CampaignError(f"lead {lead.lead_id!r} has no attempts left for a callback")
        if lead.status == "dialing":
            raise CampaignError(f"lead {lead.lead_id!r} is being dialed")
        self.store.update_lead(
            self.campaign_id,
            lead.lead_id,
            status="ready",
            disposition=Disposition.CALLBACK,
            callback_at=at,
            next_at=at,
        )

    @property
    def default_region(self) -> str:
        """The region numbers written without a country code are read in (the do-not-call gate's)."""
        return self.dnc.default_region

    def opt_out(
        self, phone: str, lead_id: str | None = None, reason: str | None = None, *, source: str = "call"
    ) -> str:
        """A do-not-call request: normalised, persisted, then effective at once for this and every campaign in the
        store. Returns the E.164 number blocked.

        ``phone`` may be in any spelling (``(212) 510-4860``); one that is not a number raises
        :class:`~dialer.compliance.numbers.NumberError` naming it, and nothing is stored. ``lead_id`` and
        ``reason`` are what the bus command ``lead.opt_out`` carries (this class serves it directly); the
        reason is stored as the source when given.
        """
        how = source if reason is None else f"{source}: {reason}"

        def persist(e164: str) -> None:  # in force here at once; store-wide now, or first thing when it is back
            self._write(
                f"the opt-out of {e164}",
                lambda again: self.store.add_opt_out(e164, campaign_id=self.campaign_id, source=how),
            )

        return self.dnc.opt_out(phone, persist=persist)

    def recycle(self, dispositions: Iterable[str], epoch: float | None = None) -> int:
        """Start a new pass over leads finished with one of ``dispositions`` (attempt counters of the pass reset;
        lockouts, total caps and do-not-call outcomes untouched). Returns how many came back."""
        chosen = recyclable(dispositions)
        n = 0
        with self.store.transaction():
            for lead in self.store.leads(self.campaign_id, status="done"):
                if lead.disposition not in chosen or lead.attempts >= self.policy.max_total_attempts:
                    continue
                self.store.update_lead(
                    self.campaign_id,
                    lead.lead_id,
                    status="ready",
                    pass_attempts=0,
                    outcome_counts={},
                    list_pass=lead.list_pass + 1,
                    next_at=max(lead.next_at, epoch or 0.0),
                )
                n += 1
        return n
