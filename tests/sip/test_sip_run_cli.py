"""``dialer run CAMPAIGN.toml`` end to end against SIPp customers and a SIPp agent, and its errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sipp_peers import free_rtp_base
from test_sip_runtime import make_message

from dialer.cli import main


def write_campaign(tmp_path: Path, customers_port: int, agent_port: int, **extra: str) -> Path:
    (tmp_path / "leads.csv").write_text(
        "lead_id,phone,name\nA,2000001,Ann\nB,4860001,Bob\nC,2000003,Cy (on the DNC list)\nD,4040001,Di\n"
    )
    (tmp_path / "dnc.txt").write_text("2000003\n")
    make_message(tmp_path)
    body = f"""
[campaign]
leads = "leads.csv"
dnc = "dnc.txt"
abandon_message = "abandon.wav"
ledger = "ledger.csv"
policy = "progressive"
connect_limit = 2.0
ring_timeout = 20
{extra.get("campaign", "")}

[trunk]
port = {customers_port}

[pool]
workers = 1
rtp_port = {free_rtp_base(200)}

[agents]
alice = "sip:alice@127.0.0.1:{agent_port}"
"""
    path = tmp_path / "campaign.toml"
    path.write_text(body)
    return path


def test_run_campaign(sipp_factory: type, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customers = sipp_factory("customers.xml")
    agent = sipp_factory("agent.xml", "-rtp_echo")
    path = write_campaign(tmp_path, customers.port, agent.port)
    assert main(["run", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 calls" in out and "1 leads withheld by do-not-call" in out
    with open(tmp_path / "ledger.csv", newline="") as f:
        rows = {r["lead_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"A", "B", "D"}  # C was never dialed
    assert rows["A"]["outcome"] == "connected" and rows["A"]["agent_id"] == "alice"
    assert rows["B"]["outcome"] == "busy"
    assert rows["D"]["outcome"] == "invalid_number"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace('leads = "leads.csv"', 'leads = "missing.csv"'), "campaign.leads: cannot read"),
        (lambda t: t.replace("ring_timeout = 20", "ring_timeout = 5"), "ring_timeout: must be at least 15"),
        (lambda t: t.replace("[trunk]", "[trunk]\ntransport = 'sctp'"), "trunk.transport"),
        (lambda t: t.replace("[pool]", "[pool]\nworkerz = 2"), "pool: "),
        (lambda t: t.replace('alice = "sip:', 'alice = "tel:'), "agents.alice"),
        (lambda t: t + "\n[bogus]\n", "bogus: unknown section"),
        (lambda t: t.replace("[campaign]", "[campaign"), "not valid TOML"),
        (lambda t: t.replace("[campaign]", "[campaign]\nmachine = 'shout'"), "campaign.machine: must be one of"),
        (lambda t: t.replace("[campaign]", "[campaign]\nmachine = 'message'"), "amd.enabled: must be true"),
        (
            lambda t: t.replace("[campaign]", "[campaign]\nmachine = 'message'") + "\n[amd]\nenabled = true\n",
            "campaign.machine_message",
        ),
        (lambda t: t.replace("[pool]", "[pool]\nsetups_per_worker = 0"), "pool.setups_per_worker"),
    ],
)
def test_bad_campaign_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: object, message: str) -> None:
    path = write_campaign(tmp_path, 5060, 5062)
    path.write_text(mutate(path.read_text()))  # type: ignore[operator]
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
