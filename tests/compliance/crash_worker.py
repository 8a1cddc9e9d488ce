"""A campaign run for the crash-safety test: the real Engine, CampaignLeads and store, scripted outcomes.

Usage: ``python crash_worker.py STORE.sqlite`` (or a ``postgresql://`` URL). It prints ``DIAL lead attempt`` when
the engine emits a dial (the attempt is already committed) and ``REC lead attempt outcome`` once the call's record
is stored, flushing each line, and ``DONE`` at the end. Started again on the same store, it recovers and carries on
from the stored state. Outcomes are a pure function of (lead, attempt), so two runs agree on what each dial does.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import sys
import time
import zlib
from collections.abc import Callable
from zoneinfo import ZoneInfo

from dialer import Engine, EngineConfig, make_policy
from dialer.campaign.lifecycle import RetryPolicy, RetryRule
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.engine import events as ev
from dialer.engine.actions import Action, ConnectCall, DialLead, PlayAbandonMessage, RecordCall
from dialer.store import Store, open_store

START = dt.datetime(2026, 3, 4, 10, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
HORIZON = 4 * 3600.0
AGENTS = 3
PACE = 0.005
DNC = frozenset({"+12025550103", "+12025550117"})


def main(path: str) -> None:
    store = open_store(path) if "://" in path else Store(path, synchronous="FULL")
    attempts = store.attempts("crash") if "crash" in store.campaigns() else []
    offset = max([START, *(a.ended_at or a.dialed_at for a in attempts)]) + 60.0
    policy = RetryPolicy(max_attempts=4).with_rules(
        busy=RetryRule(300.0, 3), no_answer=RetryRule(900.0, 3), machine=RetryRule(1200.0, 2)
    )
    leads = CampaignLeads(store, "crash", dnc=DoNotCall(internal=DNC, require_registry=False), policy=policy)
    leads.epoch_offset = offset
    engine = Engine(make_policy("power", ratio=2.5), leads, EngineConfig(connect_limit=2.0))
    queue: list[tuple[float, int, Callable[[float], ev.Event]]] = []
    seq = itertools.count()
    attempt_of: dict[int, tuple[str, int]] = {}

    def later(t: float, make: Callable[[float], ev.Event]) -> None:
        heapq.heappush(queue, (t, next(seq), make))

    def act(actions: list[Action], t: float) -> None:
        for a in actions:
            if isinstance(a, DialLead):
                attempt = leads._open[a.lead.lead_id]
                attempt_of[a.call_id] = (a.lead.lead_id, attempt)
                print(f"DIAL {a.lead.lead_id} {attempt}", flush=True)
                time.sleep(PACE)  # leave the test time to kill us mid-campaign even on a loaded machine
                h = zlib.crc32(f"{a.lead.lead_id}:{attempt}".encode()) % 100
                cid = a.call_id
                if h < 35:
                    later(t + 5 + h % 7, lambda t, c=cid: ev.CallAnsweredByPerson(t, c))
                elif h < 50:
                    later(t + 9, lambda t, c=cid: ev.CallAnsweredByMachine(t, c))
                elif h < 65:
                    later(t + 3, lambda t, c=cid: ev.CallFailed(t, c, ev.FailureReason.BUSY))
                else:
                    later(t + 25, lambda t, c=cid: ev.CallFailed(t, c, ev.FailureReason.NO_ANSWER))
            elif isinstance(a, ConnectCall):
                talk = 40 + zlib.crc32(str(a.call_id).encode()) % 120
                later(t + talk, lambda t, c=a.call_id: ev.CallEnded(t, c))
                later(t + talk + 10, lambda t, g=a.agent_id: ev.WrapUpDone(t, g))
            elif isinstance(a, PlayAbandonMessage):
                later(t + 6, lambda t, c=a.call_id: ev.CallEnded(t, c))
            elif isinstance(a, RecordCall):
                lead_id, attempt = attempt_of.pop(a.record.call_id)
                print(f"REC {lead_id} {attempt} {a.record.outcome.value}", flush=True)

    t = 0.0
    for i in range(AGENTS):
        act(engine.handle(ev.AgentLoggedIn(t, f"agent-{i}")), t)
        act(engine.handle(ev.AgentReady(t, f"agent-{i}")), t)
    while t < HORIZON:
        timer = engine.next_timer()
        nxt = queue[0][0] if queue else t + 60.0
        if timer is not None and timer < nxt:
            t = max(t, timer)
            act(engine.handle(ev.TimeAdvanced(t)), t)
            continue
        if queue:
            t, _, make = heapq.heappop(queue)
            act(engine.handle(make(t)), t)
        else:
            if not store.count_leads("crash").get("ready"):
                break
            t = nxt
            act(engine.handle(ev.TimeAdvanced(t)), t)
    print("DONE", flush=True)
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
