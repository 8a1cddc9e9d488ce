"""One campaign's lead source in a process of its own, for the store-wide protection tests.

Usage: ``python store_wide_worker.py STORE CAMPAIGN PLAN.json`` (STORE: a SQLite path or a PostgreSQL URL).
The campaign's leads are already in the store. The worker opens its :class:`CampaignLeads` (loading the store's
opt-outs, as a real campaign does at start), prints ``READY`` and waits for a line on standard input, so that
the test can start two workers and let both go only once each has loaded its lists. Then, for each step
``[outcome, pause]`` of the plan, it sleeps ``pause`` seconds, asks for the next lead and, if it got one, ends the
call with ``outcome``:

* ``busy``: the lead comes back at once (busy retries with no delay);
* ``abandoned``: the call is recorded abandoned, which locks the number out for 72 h;
* ``opt_out``: the person opts out during the call (the store's opt-outs, then in force), recorded as connected.

It prints ``DIAL phone T`` with ``T`` the system-wide monotonic clock read *before* asking (the claim, with its
store-wide check, comes after it), and ``PROTECT phone T`` with ``T`` read *after* the protection was committed.
A protection whose ``T`` is before another process's ``DIAL`` of the same number must have been seen by that claim.
"""

from __future__ import annotations

import json
import sys
import time

from dialer.campaign.lifecycle import RetryPolicy, RetryRule
from dialer.campaign.source import CampaignLeads
from dialer.compliance.dnc import DoNotCall
from dialer.compliance.windows import CallingWindows, RegionRules, RuleSet, hours
from dialer.engine.records import CallRecord, Outcome
from dialer.store import Store, open_store


def always_open() -> CallingWindows:
    """Calling hours that never hold a US lead: the test is about the store's protections, whatever the clock."""
    return CallingWindows({"US": RegionRules(RuleSet.simple("always", hours("00:00", "24:00"), same_all_week=True))})


def main(path: str, campaign: str, plan_file: str) -> None:
    with open(plan_file, encoding="utf-8") as fh:
        steps: list[tuple[str, float]] = [tuple(s) for s in json.load(fh)]  # type: ignore[misc]
    # A SQLite path, or a PostgreSQL URL (the same property on the shared store).
    store = open_store(path) if "://" in path else Store(path, synchronous="NORMAL")
    policy = RetryPolicy(max_attempts=1000, max_total_attempts=1000).with_rules(
        busy=RetryRule(0.0), abandoned=RetryRule(0.0), connected=RetryRule(0.0)
    )
    leads = CampaignLeads(store, campaign, dnc=DoNotCall(require_registry=False), windows=always_open(), policy=policy)
    print("READY", flush=True)
    sys.stdin.readline()
    call_id = 0
    for outcome, pause in steps:
        time.sleep(pause)
        before = time.monotonic()
        now = time.time()
        lead = leads.next_lead(now)
        if lead is None:
            print("NONE", flush=True)
            continue
        print(f"DIAL {lead.phone} {before!r}", flush=True)
        call_id += 1
        if outcome == "opt_out":
            leads.opt_out(lead.phone, source="call")
            print(f"PROTECT {lead.phone} {time.monotonic()!r}", flush=True)
        abandoned = outcome == "abandoned"
        kind = {"busy": Outcome.BUSY, "abandoned": Outcome.ABANDONED}.get(outcome, Outcome.CONNECTED)
        answered = None if kind == Outcome.BUSY else now + 0.1
        record = CallRecord(
            call_id,
            lead,
            kind,
            now,
            now + 0.5,
            answered_at=answered,
            connected_at=None if answered is None or abandoned else answered + 0.2,
            message_at=answered + 0.2 if abandoned and answered is not None else None,
            wait=None if answered is None else 0.2,
            abandoned=abandoned,
        )
        leads.report(record)
        if abandoned:
            print(f"PROTECT {lead.phone} {time.monotonic()!r}", flush=True)
    print("DONE", flush=True)
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
