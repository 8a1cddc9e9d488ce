"""An agent's manual dial on a real campaign (issue 16, item 3): every gate a paced dial passes, on both backends.

The engine dials a ``ManualDial`` only through the lead source's ``manual_lead`` hook. ``CampaignLeads`` had none,
so every manual dial on a stored campaign was refused. Now the hook finds the campaign's lead (by id, or by its
number in any spelling), runs the gates (attempts left, do-not-call, calling hours, store-wide protections) and
claims the attempt before handing it back; a number the campaign does not hold is refused (fail closed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine import events as ev
from dialer.engine.actions import DialLead, DialRefused
from dialer.engine.core import Engine
from dialer.leads import Lead
from dialer.pacing import make_policy
from dialer.store import StoredLead

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from store_wide_worker import always_open  # noqa: E402

NUMBERS = {"ok": "+12127362300", "listed": "+12127362301", "taken": "+12127362302"}


def _floor(reopen: Callable[..., Any]) -> tuple[Engine, CampaignLeads, Any]:
    store = reopen()
    store.ensure_campaign("c")
    for lead_id, phone in NUMBERS.items():
        store.insert_lead(StoredLead("c", lead_id, phone))
    dnc = DoNotCall(require_registry=False)
    dnc.add_internal([NUMBERS["listed"]])  # on the company list since the import
    leads = CampaignLeads(store, "c", dnc=dnc, windows=always_open())
    engine = Engine(make_policy("manual"), leads, start=time.time())
    engine.handle(ev.AgentLoggedIn(engine.now, "ann"))
    engine.handle(ev.AgentReady(engine.now, "ann"))
    return engine, leads, store


def _dial(engine: Engine, lead: Lead) -> list[Any]:
    return engine.handle(ev.ManualDial(engine.now, "ann", lead))


def test_a_manual_dial_of_a_campaign_lead_is_claimed_and_dialed_with_its_agent(reopen: Callable[..., Any]) -> None:
    engine, leads, store = _floor(reopen)
    actions = _dial(engine, Lead("typed", "(212) 736-2300"))  # the number as an agent types it
    [dial] = [a for a in actions if isinstance(a, DialLead)]
    assert dial.lead.lead_id == "ok" and not any(isinstance(a, DialRefused) for a in actions)
    [attempt] = store.open_attempts("c")
    assert attempt.lead_id == "ok" and attempt.owner == leads.owner  # committed before the dial went out


def test_manual_dials_that_a_paced_dial_could_not_make_are_refused(reopen: Callable[..., Any]) -> None:
    engine, _, store = _floor(reopen)
    cases = [
        Lead("typed", "+12127369999"),  # not the campaign's: no consent, history or window on record
        Lead("listed", NUMBERS["listed"]),  # on the company do-not-call list
        Lead("typed", "not a number"),
    ]
    for lead in cases:
        actions = _dial(engine, lead)
        assert [type(a) for a in actions] == [DialRefused], (lead, actions)
    with reopen() as other:  # another campaign's process took an opt-out of this number meanwhile
        other.add_opt_out(NUMBERS["taken"], campaign_id="elsewhere")
    assert [type(a) for a in _dial(engine, Lead("taken", "-"))] == [DialRefused]
    assert store.lead("c", "taken").disposition == "do_not_call"
    assert store.open_attempts("c") == [] and engine.in_flight == 0
    _dial(engine, Lead("ok", "-"))  # a lead being dialed cannot be dialed again by hand
    engine.handle(ev.AgentLoggedIn(engine.now, "bob"))
    engine.handle(ev.AgentReady(engine.now, "bob"))
    refused = engine.handle(ev.ManualDial(engine.now, "bob", Lead("ok", "-")))
    assert [type(a) for a in refused] == [DialRefused] and len(store.open_attempts("c")) == 1


def test_a_refused_manual_dial_says_why_and_an_id_with_another_leads_number_is_refused(
    reopen: Callable[..., Any],
) -> None:
    """The agent's desktop shows why a dial was refused (the rule, as the evidence names its hold); and a lead id
    given with a number that is not that lead's is refused rather than dialing either: the agent meant one of
    them, and the other may be the wrong person."""
    engine, _, store = _floor(reopen)

    def reason(lead: Lead) -> str:
        [refused] = _dial(engine, lead)
        assert isinstance(refused, DialRefused), refused
        return refused.reason

    assert reason(Lead("ok", NUMBERS["taken"])) == "the number given is not lead ok's"
    assert reason(Lead("typed", "+12127369999")) == "not a lead of this campaign"
    assert reason(Lead("listed", "-")) == "do-not-call"
    assert reason(Lead("typed", "+1 999")) == "not a phone number"
    assert store.open_attempts("c") == []
    actions = _dial(engine, Lead("ok", "(212) 736-2300"))  # its own number, spelt as typed: dialed
    assert [a.lead.lead_id for a in actions if isinstance(a, DialLead)] == ["ok"]
    engine.handle(ev.AgentLoggedIn(engine.now, "bob"))
    engine.handle(ev.AgentReady(engine.now, "bob"))
    [refused] = engine.handle(ev.ManualDial(engine.now, "bob", Lead("ok", "-")))
    assert isinstance(refused, DialRefused) and refused.reason == "lead ok is dialing"
