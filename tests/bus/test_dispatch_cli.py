"""``dialer dispatch CAMPAIGN.toml`` end to end: real processes, a real mosquitto, the campaign's own store.

The dispatcher and a stand-in ``dialer worker`` run as subprocesses; the test plays the backend (``backend/crm``):
it logs an agent in, makes them ready and ends each wrap-up with ``agent.disposition``, all as bus commands, and
watches ``call.record`` events. Each lead's ``outcome`` column tells the stand-in what happens on its call. Then
SIGTERM: the dispatcher drains, flushes, prints ``dialer run``'s summary and exits 0, and the store holds one
attempt per lead. A bad campaign file, a bad identity and missing credentials are one line and exit 2, before
anything connects.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiomqtt
import pytest
from bus_sip import abandon_wav
from mqtt_broker import Broker

from dialer.cli import main
from dialer.store import Store

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
CAMPAIGN = "disp"
BASE = f"dialer/v1/{CAMPAIGN}"

# Tokyo numbers: the campaign file opens JP all day, so the test does not depend on the wall clock's hour.
OUTCOMES = {"L1": "person", "L2": "busy", "L3": "machine", "L4": "no_answer", "L5": "person", "L6": "invalid_number"}
WANT = {"L1": "connected", "L2": "busy", "L3": "machine", "L4": "no_answer", "L5": "connected",
        "L6": "invalid_number"}  # fmt: skip

CAMPAIGN_FILE = f"""
[campaign]
id = "{CAMPAIGN}"
abandon_message = "abandon.wav"
purpose = "survey"  # exempt from the national registry, which this test does not load
policy = "progressive"
connect_limit = 2.0
ring_timeout = 20

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[hours.JP]
weekday = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"

[trunk]
caller_id = "+12127362000"

[pool]
workers = 1

[agents]
a1 = "sip:a1@127.0.0.1:5062"
"""


def write_campaign(tmp_path: Path) -> Path:
    rows = "".join(f"{lead},+8131234{2000 + i},{outcome},0.3\n" for i, (lead, outcome) in enumerate(OUTCOMES.items()))
    (tmp_path / "leads.csv").write_text("lead_id,phone,outcome,talk\n" + rows, encoding="utf-8")
    abandon_wav(tmp_path)  # one second of 440 Hz: a message one can hear
    path = tmp_path / "campaign.toml"
    path.write_text(CAMPAIGN_FILE, encoding="utf-8")
    return path


def command(type_: str, **data: object) -> tuple[str, bytes, str]:
    cid = uuid.uuid4().hex
    body = {"v": 1, "id": cid, "type": type_, "campaign": CAMPAIGN, "source": "backend/crm", "ts": 0, "data": data}
    return f"{BASE}/from/backend/crm/cmd/{type_.replace('.', '/')}", json.dumps(body).encode(), cid


async def backend(port: int, records: dict[str, str], timeout: float) -> None:
    """Log agent a1 in and make them ready (each command sent again, same id, until its reply comes: the
    dispatcher may not be subscribed yet), end every wrap-up, and collect ``call.record`` until every lead has one."""
    replies: dict[str, dict[str, object]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="backend/crm", protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(f"{BASE}/to/backend/crm/reply", 1)
        await c.subscribe(f"{BASE}/event/#", 1)

        async def send(type_: str, **data: object) -> None:
            topic, payload, cid = command(type_, **data)
            for _ in range(40):
                await c.publish(topic, payload, 1)
                for _ in range(10):
                    if cid in replies:
                        assert replies[cid]["ok"], replies[cid]
                        return
                    await asyncio.sleep(0.05)
            raise AssertionError(f"no reply to {type_}")

        async def read() -> None:
            async for m in c.messages:
                doc = json.loads(bytes(m.payload))
                if doc["type"] == "reply":
                    replies[doc["data"]["command_id"]] = doc["data"]
                elif doc["type"] == "call.record":
                    records[doc["data"]["lead_id"]] = doc["data"]["outcome"]
                elif doc["type"] == "agent.state" and doc["data"]["state"] == "wrap_up":
                    topic, payload, _ = command(
                        "agent.disposition", agent_id=doc["data"]["agent_id"], disposition="sale"
                    )
                    await c.publish(topic, payload, 1)

        reader = asyncio.create_task(read())
        try:
            await send("agent.login", agent_id="a1")
            await send("agent.ready", agent_id="a1")

            async def every_lead() -> None:
                while set(records) != set(OUTCOMES):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(every_lead(), timeout)
        finally:
            reader.cancel()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("ending", ["sigterm", "no_lead_due"])
def test_dispatch_runs_a_campaign_through_a_worker(broker: Broker, tmp_path: Path, ending: str) -> None:
    """``sigterm``: with ``--keep-going`` the dispatcher waits for the busy leads' retries until SIGTERM.
    ``no_lead_due``: without it, it stops on its own once every lead has had its call and none is due, as
    ``dialer run`` does (with status lines on stderr meanwhile)."""
    path = write_campaign(tmp_path)
    mode = ["--keep-going", "--quiet"] if ending == "sigterm" else ["--status-every", "0.2"]
    out = open(tmp_path / "dispatch.out", "wb")  # noqa: SIM115
    err = open(tmp_path / "dispatch.err", "wb")  # noqa: SIM115
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "dispatch", str(path), "--broker-port", str(broker.port), "--insecure",
         *mode],
        stdout=out, stderr=err, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "worker", "--stand-in", "--insecure", "--campaign", CAMPAIGN,
         "--worker-id", "w1", "--broker-port", str(broker.port), "--capacity", "3"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.err", "wb"), env=ENV,  # noqa: SIM115
    )  # fmt: skip
    records: dict[str, str] = {}
    try:
        asyncio.run(backend(broker.port, records, timeout=30))
        if ending == "sigterm":
            assert dispatcher.poll() is None, (tmp_path / "dispatch.err").read_text()  # busy leads wait to retry
            dispatcher.send_signal(signal.SIGTERM)
        assert dispatcher.wait(20) == 0, (tmp_path / "dispatch.err").read_text()
    finally:
        stop(dispatcher)
        stop(worker)
        out.close()
        err.close()
    assert records == WANT
    text = (tmp_path / "dispatch.out").read_text()
    assert "leads.csv: 6 rows: 6 accepted" in text, text
    assert "6 calls: busy 1, connected 2, invalid_number 1, machine 1, no_answer 1" in text, text
    assert "abandoned 0 of 2 live answers" in text, text
    assert ("stopped: interrupted" if ending == "sigterm" else "stopped: no lead is due now") in text, text
    if ending == "no_lead_due":
        assert "agents ready" in (tmp_path / "dispatch.err").read_text()  # the status line

    # The store is the ledger: one attempt per lead, each with the outcome the worker reported.
    with Store(tmp_path / "campaign.sqlite") as store:
        attempts = store.attempts(CAMPAIGN)
    assert sorted((a.lead_id, a.outcome) for a in attempts) == sorted(WANT.items())
    assert all(a.call_id is not None and a.call_id > 10**15 for a in attempts)  # ids from the clock (fresh_call_ids)
    assert (tmp_path / "campaign.outbox.sqlite").is_file()  # the durable outbox beside the store
    evidence = [json.loads(line) for line in (tmp_path / "campaign.evidence.jsonl").read_text().splitlines()]
    assert sorted(e["data"]["lead_id"] for e in evidence if e["kind"] == "call") == sorted(OUTCOMES)


def _one_line_exit_2(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "dispatch", *args], capture_output=True, env=ENV, cwd=cwd, timeout=30
    )
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("dialer: error: "), proc.stderr
    return lines[0]


def test_bad_campaign_file_is_one_line_and_exit_2(broker: Broker, tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    path.write_text(CAMPAIGN_FILE.replace("ring_timeout = 20", "ring_timeout = 5"), encoding="utf-8")
    line = _one_line_exit_2([str(path), "--broker-port", str(broker.port), "--insecure"], tmp_path)
    assert "campaign.ring_timeout" in line
    assert not (tmp_path / "campaign.sqlite").exists()  # refused before the store was opened


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (["--name", "a/b", "--insecure"], "--name"),
        (["--retention", "-1", "--insecure"], "--retention"),
        (["--lease", "0.5", "--insecure"], "--lease"),
        (["--username", "dispatcher/other"], "--username"),  # the user name must be the identity
        (["--password-env", "DIALER_TEST_UNSET_VARIABLE"], "--password-env"),
        (["--tls-key", "nokey.pem", "--insecure"], "--tls-key"),  # a key without its certificate
        ([], "--insecure"),  # user name dispatcher/main, but the broker lets anyone in: refused
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], key: str
) -> None:
    path = write_campaign(tmp_path)
    assert main(["dispatch", str(path), "--broker-port", str(broker.port), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"dialer: error: {key}:"), err
