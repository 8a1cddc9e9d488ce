"""The whole distributed dialer on the shipped deployment: mosquitto running what ``dialer broker-config`` wrote
(no anonymous clients, the ACL of docs/deploy), ``dialer dispatch`` and a ``dialer worker`` with their passwords
from the environment, a backend and a monitor with theirs. A campaign runs end to end, each role can do its part
and no more, and a monitor catches up by replay. test_bus_acl.py proves the broker's half identity by identity;
this proves the dialer's own processes work inside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
from test_bus_acl import Deployment, deploy  # noqa: F401  (the fixture)
from test_dispatch_cli import BASE, CAMPAIGN, ENV, OUTCOMES, WANT, stop, write_campaign

from dialer.commands.broker_config import env_var


def _cmd(identity: str, type_: str, cid: str | None = None, **data: Any) -> tuple[str, bytes, str]:
    cid = cid or uuid.uuid4().hex
    body = {"v": 1, "id": cid, "type": type_, "campaign": CAMPAIGN, "source": identity, "ts": 0, "data": data}
    return f"{BASE}/from/{identity}/cmd/{type_.replace('.', '/')}", json.dumps(body).encode(), cid


async def _session(d: Deployment, identity: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", d.broker.port, identifier=identity, username=identity,
                          password=d.passwords[identity], protocol=aiomqtt.ProtocolVersion.V5)  # fmt: skip


def test_a_campaign_runs_on_the_shipped_deployment_and_each_role_stays_in_its_lane(
    deploy: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    d: Deployment = deploy()
    path = write_campaign(tmp_path)
    env = {**ENV, **{env_var(i): p for i, p in d.passwords.items()}}
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "dispatch", str(path), "--broker-port", str(d.broker.port),
         "--password-env", env_var("dispatcher/main"), "--keep-going", "--quiet"],
        stdout=open(tmp_path / "dispatch.out", "wb"), stderr=open(tmp_path / "dispatch.err", "wb"),  # noqa: SIM115
        env=env, cwd=tmp_path,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "worker", "--stand-in", "--campaign", CAMPAIGN, "--worker-id", "w1",
         "--broker-port", str(d.broker.port), "--password-env", env_var("worker/w1"), "--capacity", "3"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.err", "wb"), env=env,  # noqa: SIM115
    )  # fmt: skip

    async def main() -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]], bool]:
        records: dict[str, str] = {}
        seqs: list[int] = []
        replies: dict[str, dict[str, Any]] = {}
        async with await _session(d, "backend/crm") as crm, await _session(d, "monitor/m1") as mon:
            await crm.subscribe(f"{BASE}/to/backend/crm/reply", 1)
            await crm.subscribe(f"{BASE}/event/#", 1)
            await mon.subscribe(f"{BASE}/to/monitor/m1/#", 1)

            async def read_crm() -> None:
                async for m in crm.messages:
                    doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if doc["type"] == "reply":
                        replies[doc["data"]["command_id"]] = doc["data"]
                    elif doc["type"] == "call.record":
                        records[doc["data"]["lead_id"]] = doc["data"]["outcome"]
                        seqs.append(doc["seq"])
                    elif doc["type"] == "agent.state" and doc["data"]["state"] == "wrap_up":
                        topic, body, _ = _cmd("backend/crm", "agent.disposition", agent_id="a1", disposition="ok")
                        await crm.publish(topic, body, 1)

            replayed: list[dict[str, Any]] = []

            async def read_mon() -> None:
                async for m in mon.messages:
                    doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    (replayed.append(doc) if m.topic.matches(f"{BASE}/to/monitor/m1/replay") else
                     replies.__setitem__(doc["data"]["command_id"], doc["data"]))  # fmt: skip

            tasks = [asyncio.create_task(read_crm()), asyncio.create_task(read_mon())]

            async def send(client: aiomqtt.Client, identity: str, type_: str, **data: Any) -> dict[str, Any]:
                topic, body, cid = _cmd(identity, type_, **data)
                for _ in range(100):  # the dispatcher may still be starting: the same command again, same id
                    await client.publish(topic, body, 1)
                    for _ in range(5):
                        await asyncio.sleep(0.05)
                        if cid in replies:
                            return replies[cid]
                raise AssertionError(f"no reply to {identity} {type_}")

            assert (await send(crm, "backend/crm", "agent.login", agent_id="a1"))["ok"]
            refused = await send(mon, "monitor/m1", "agent.ready", agent_id="a1")  # a monitor may not
            assert refused["code"] == "forbidden", refused
            assert (await send(crm, "backend/crm", "agent.ready", agent_id="a1"))["ok"]

            async def every_lead() -> None:
                while set(records) != set(OUTCOMES):
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(every_lead(), 40)
            replay = await send(mon, "monitor/m1", "events.replay", after=0)  # read-only: allowed
            await asyncio.wait_for(_until(lambda: len(replayed) >= replay["result"]["count"]), 10)
            for task in tasks:
                task.cancel()
        anonymous_refused = False
        try:
            async with aiomqtt.Client("127.0.0.1", d.broker.port, identifier="probe-anon"):
                pass
        except aiomqtt.MqttError:
            anonymous_refused = True
        return records, replay, replayed, anonymous_refused

    try:
        records, replay, replayed, anonymous_refused = asyncio.run(main())
    finally:
        stop(dispatcher)
        stop(worker)
    assert records == WANT, ((tmp_path / "dispatch.err").read_text(), (tmp_path / "worker.err").read_text())
    assert replay["ok"] and replay["result"]["complete"] is True
    assert {doc["data"]["lead_id"] for doc in replayed if doc["type"] == "call.record"} == set(OUTCOMES)
    assert anonymous_refused
    assert os.path.exists(tmp_path / "campaign.dispatch.sqlite")


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.05)
