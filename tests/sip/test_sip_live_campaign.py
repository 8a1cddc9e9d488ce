"""``dialer run`` end to end on the real campaign, compliance and store packages, against SIPp on loopback.

A small campaign: CSV import with rejects and a merged duplicate, the national registry and a company list (scrubbed
at import), a lead put on the company list after an earlier import (held at dial time), a lead in a zone whose
calling hours are closed at the test's real wall-clock time, one SIPp agent, and SIPp customers that answer, opt
out on the abandonment message, are busy or do not exist. Then ``dialer report compliance`` on the same store.

The customers are ``scenarios/customers.xml`` with its dispatch moved from the number's first three digits to the
first three of its last four, so that real E.164 numbers in chosen time zones pick a behaviour:
``+1 212 736 2001`` behaves like ``200...`` (answer, stay).
"""

from __future__ import annotations

import csv
import io
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from sip_helpers import finish, read_until, start_run
from sipp_peers import SCENARIOS, free_rtp_base
from test_sip_runtime import make_message

from dialer.campaign import ColumnMapping, import_csv
from dialer.cli import main
from dialer.compliance import CallingWindows, NationalRegistry
from dialer.compliance.windows import hours
from dialer.live.campaign import CampaignHours, region_rules
from dialer.store import Store

# Number stems (E.164 minus the last four digits) with a single, known time zone each. Tokyo has no built-in rules:
# the campaign file gives it hours (JP_HOURS), which is also how a campaign calls a region the library has no rules
# for. Between them, at any instant of any day, at least one stem is open and one is closed.
STEMS = {
    "America/New_York": "+1212736",
    "America/Chicago": "+1312736",
    "America/Los_Angeles": "+1415736",
    "Pacific/Honolulu": "+1808736",
    "Europe/London": "+44207946",
    "Asia/Tokyo": "+8131234",
}
JP_HOURS = 'weekday = "09:00-20:00"\nsaturday = "09:00-20:00"\nsunday = "09:00-20:00"'
REGISTERED = "+12127362003"  # on the national registry
MARGIN = 20 * 60  # seconds a chosen zone must stay open (or closed) from now: the test never straddles a boundary


def pick_zones(now: float) -> tuple[str, str]:
    """A zone open from now for MARGIN, and one closed for as long, under the campaign's rules."""
    day = hours("09:00", "20:00")
    windows = CallingWindows(region_rules({"JP": CampaignHours(day, day, day)}))
    times = [now + s for s in range(0, MARGIN + 1, 60)]
    opened = [z for z, stem in STEMS.items() if all(windows.allows(stem + "2001", t) for t in times)]
    closed = [z for z, stem in STEMS.items() if not any(windows.allows(stem + "2006", t) for t in times)]
    assert opened and closed, f"no open/closed pair at {now}: open {opened}, closed {closed}"
    return opened[0], closed[0]


def customers_scenario(tmp_path: Path) -> str:
    text = (SCENARIOS / "customers.xml").read_text(encoding="utf-8")
    moved, n = re.subn(r'regexp="\^INVITE sip:(\d{3})"', r'regexp="^INVITE sip:[+][0-9]*\1[0-9]@"', text)
    assert n == 8, "customers.xml changed its dispatch; update this rewrite"
    path = tmp_path / "e164-customers.xml"
    path.write_text(moved, encoding="utf-8")
    return str(path)


def write_campaign(tmp_path: Path, customers_port: int, agent_port: int, open_zone: str, closed_zone: str) -> Path:
    o, c = STEMS[open_zone], STEMS[closed_zone]
    rows = [
        ("talk", o + "2001", "Ann"),  # answers: bridged to the agent
        ("optout", o + "2041", "Bob"),  # answers 0.6 s later: nobody free, message, presses 9
        ("company", o + "2002", "Cy"),  # on the company list: rejected at import
        ("busy", o + "4861", "Di"),
        ("registry", REGISTERED, "Ed"),  # on the national registry: rejected at import
        ("late", c + "2006", "Flo"),  # closed calling hours now: never dialed, waits in the store
        ("gone", o + "4041", "Gus"),  # 404: invalid number
        ("later", o + "2005", "Hal"),  # imported earlier, on the company list since: held at dial time
        ("bad", "12", "Ida"),  # not a number: rejected
        ("dup", o[:-4] + " " + o[-4:] + "2001", "Ann again"),  # the talk lead's number, written differently: merged
    ]
    with open(tmp_path / "leads.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "phone", "name"])
        w.writerows(rows)
    (tmp_path / "company-dnc.txt").write_text(f"# company list\n{o}2002\n{o}2005\n", encoding="utf-8")
    make_message(tmp_path)
    registry = NationalRegistry.create(tmp_path / "registry")  # sparse: takes almost no disk
    registry.apply(additions=np.array([int(REGISTERED[2:])], dtype=np.uint64))
    registry.close()
    path = tmp_path / "spring.toml"
    path.write_text(
        f"""
[campaign]
id = "spring"
store = "spring.sqlite"
abandon_message = "abandon.wav"
policy = "power"
connect_limit = 0.1
ring_timeout = 20

[policy]
ratio = 2.0

[leads]
file = "leads.csv"

[dnc]
registry = "registry"
internal = "company-dnc.txt"

[hours.JP]
{JP_HOURS}

[trunk]
port = {customers_port}
caller_id = "+12127362000"

[pool]
workers = 1
agent_sessions = false  # the SIPp agent hangs up after each 1.5-s conversation: called per connect
rtp_port = {free_rtp_base(200)}

[agents]
alice = "sip:alice@127.0.0.1:{agent_port}"
""",
        encoding="utf-8",
    )
    return path


def test_live_campaign_end_to_end(sipp_factory: type, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.time()
    open_zone, closed_zone = pick_zones(start)
    customers = sipp_factory(customers_scenario(tmp_path))
    agent = sipp_factory("agent.xml", "-rtp_echo")
    path = write_campaign(tmp_path, customers.port, agent.port, open_zone, closed_zone)
    o = STEMS[open_zone]
    with Store(tmp_path / "spring.sqlite") as store:  # yesterday's import, before "later" joined the company list
        import_csv(io.StringIO(f"lead_id,phone\nlater,{o}2005\n"), store, "spring", ColumnMapping(lead_id="lead_id"))

    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "10 rows: 5 accepted, 1 merged into earlier leads, 4 rejected" in out, out
    assert "4 calls: abandoned 1, busy 1, connected 1, invalid_number 1" in out, out
    assert "abandoned 1 of 2 live answers; 1 opt-outs" in out, out
    assert "reach lost per rule: " in out and "do-not-call: internal list 1" in out, out  # what each rule cost

    with open(tmp_path / "leads.rejects.csv", newline="", encoding="utf-8") as f:
        rejects = {row[0]: row[1] for row in list(csv.reader(f))[1:]}
    assert (
        rejects
        == {
            "4": "do-not-call",
            "6": "do-not-call",
            "9": "do-not-call",
            "10": rejects["10"],
        }
        and "not" in rejects["10"]
    ), rejects

    # The chained evidence log beside the store: one entry a call, as measured on the SIP side, unbroken.
    from dialer.compliance.evidence import entries, verify

    assert verify(tmp_path / "spring.evidence.jsonl").ok
    log = list(entries(tmp_path / "spring.evidence.jsonl"))
    calls = {e["data"]["lead_id"]: e["data"] for e in log if e["kind"] == "call"}
    # The import's counts and its rejects, kept apart from the next import's (fingerprinted); every lead held at
    # dial time with the rule, its source and that source's version.
    (imported,) = [e["data"] for e in log if e["kind"] == "import"]
    assert imported["rejected"] == 4 and Path(imported["rejects_file"]).is_file() and imported["rejects_sha256"]
    holds = {e["data"]["lead_id"]: e["data"] for e in log if e["kind"] == "hold"}
    assert holds["late"]["rule"].startswith("hours") and holds["late"]["until"] > start
    assert holds["later"]["rule"] == "do-not-call: internal list" and holds["later"]["final"]
    assert sorted(calls) == ["busy", "gone", "optout", "talk"]
    assert {lead: c["sip_status"] for lead, c in calls.items()} == {
        "busy": 486,
        "gone": 404,
        "optout": 200,
        "talk": 200,
    }
    assert all(c["sip_call_id"] and c["placed"] and c["caller_id"] for c in calls.values())
    assert calls["optout"]["message_played"] and calls["optout"]["abandoned"]
    assert calls["busy"]["ring_seconds"] is None  # refused at once: it never rang
    assert 0 < calls["talk"]["ring_seconds"] < 2  # the SIPp customer rings 0.1 s before its 200 OK

    with Store(tmp_path / "spring.sqlite") as store:
        attempts = {a.lead_id: a for a in store.attempts("spring")}
        assert sorted(attempts) == ["busy", "gone", "optout", "talk"]  # no DNC lead, no out-of-window lead dialed
        assert all(a.attempt_no == 1 and a.state == "done" for a in attempts.values())
        for phone in (o + "2002", REGISTERED):
            assert store.find_lead("spring", phone=phone) is None
        later = store.lead("spring", "later")
        assert (later.status, later.disposition, later.attempts) == ("done", "do_not_call", 0)
        late = store.lead("spring", "late")
        assert (late.status, late.attempts) == ("ready", 0) and late.next_at > start + MARGIN
        talk = attempts["talk"]  # bridged: the agent talked 1.5 s before hanging up
        assert talk.outcome == "connected" and talk.agent_id == "alice" and not talk.abandoned
        assert talk.connected_at is not None and talk.ended_at is not None and talk.ended_at - talk.connected_at > 1.0
        assert store.lead("spring", "talk").fields.get("merged_ids") == "dup"
        optout = attempts["optout"]  # abandoned with the message, which played out (1 s)
        assert optout.outcome == "abandoned" and optout.abandoned and optout.message_at is not None
        # Ordered half the 0.1-s limit early, for the worker's margin; the store holds when it was heard, within it.
        assert optout.wait is not None and optout.wait >= 0.04 and optout.answered_at is not None
        assert optout.message_played and optout.message_at - optout.answered_at <= 0.1
        assert optout.placed_at is not None and optout.ringing_at is not None and optout.placed_at <= optout.ringing_at
        assert optout.ended_at is not None and optout.ended_at - optout.message_at > 0.8
        assert optout.disposition == "dnc_request"
        assert store.lead("spring", "optout").disposition == "dnc_request"
        assert store.opt_outs() == [o + "2041"]  # the keypress, persisted
        assert attempts["busy"].outcome == "busy" and store.lead("spring", "busy").status == "ready"
        assert attempts["gone"].outcome == "invalid_number"

    calls = tmp_path / "calls.csv"
    assert main(["report", "compliance", str(tmp_path / "spring.sqlite"), "--calls", str(calls)]) == 1  # 50 % > cap
    report = capsys.readouterr().out
    assert "4 placed, 2 live, 0 machine, 1 abandoned (1 with message): 50.00%  OVER CAP" in report, report
    with open(calls, newline="", encoding="utf-8") as f:
        ledger = {r["lead_id"]: r for r in csv.DictReader(f)}
    assert ledger["optout"]["message_played"] == "1" and ledger["optout"]["abandoned"] == "1"
    assert ledger["talk"]["message_played"] == "0" and float(ledger["talk"]["time_to_connect_s"]) <= 0.1

    # A second run: the opt-out holds (scrubbed at import now), nothing is due, nothing is dialed again.
    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "0 calls" in out and "stopped: no lead is due now" in out, out
    with open(tmp_path / "leads.rejects.csv", newline="", encoding="utf-8") as f:
        assert ["3", "do-not-call"] in [row[:2] for row in csv.reader(f)]
    with Store(tmp_path / "spring.sqlite") as store:
        assert len(store.attempts("spring")) == 4


def test_ctrl_c_drains_then_hangs_up(sipp_factory: type, tmp_path: Path) -> None:
    """First Ctrl-C: no new dials, the ringing call is waited for; second: it is hung up, and its record stored."""
    start = time.time()
    open_zone, closed_zone = pick_zones(start)
    customers = sipp_factory(customers_scenario(tmp_path))
    path = write_campaign(tmp_path, customers.port, 9, open_zone, closed_zone)
    o = STEMS[open_zone]
    (tmp_path / "leads.csv").write_text(f"lead_id,phone\nring,{o}1801\nnext,{o}4861\n", encoding="utf-8")
    text = path.read_text().replace('policy = "power"', 'policy = "progressive"').replace("ratio = 2.0", "")
    path.write_text(text)
    proc = start_run(path, "--status-every", "0.2")
    try:
        seen = read_until(proc, "ringing 1", 30)
        assert "ringing 1" in seen, seen
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # draining: the call rings on (ring timeout 20 s)
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "draining calls in flight" in seen + err and "1 calls" in out, out
    with Store(tmp_path / "spring.sqlite") as store:
        (attempt,) = store.attempts("spring")  # "next" was never dialed after the first Ctrl-C
        assert attempt.lead_id == "ring" and attempt.state == "done" and attempt.outcome == "no_answer"
