"""Watching the floor: the status page in a real headless Chromium, and /metrics, while a campaign runs.

The campaign is the distributed one (a dispatcher in this process, stand-in worker processes over a real
mosquitto), held in a steady state so what the page shows can be compared with the engine: three agents on calls
with three connected people, one agent paused. Chromium (Debian's ``chromium``; CI installs it) loads the page,
runs its script (which polls ``/status.json``), and the DOM it renders is read back; a screenshot is written under
the test's output directory.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from mqtt_broker import Broker
from test_bus_workers import dialer, start_workers, stop_workers, until

from dialer import Lead
from dialer.engine import events as ev
from dialer.live.status import FloorStatus, StatusServer


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (apt-get install chromium); CI installs it")
    return exe


def _browse(url: str, out: Path) -> str:
    """The DOM after the page's script ran (virtual time lets its 1-s poll run), and a screenshot."""
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=4000", f"--user-data-dir={out / 'chromium-profile'}"]  # fmt: skip
    subprocess.run([*base, "--window-size=1200,900", f"--screenshot={out / 'status.png'}", url],
                   capture_output=True, timeout=60, check=False)  # fmt: skip
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, timeout=60, check=True)
    return dom.stdout.decode()


def _cell(dom: str, cell_id: str) -> str:
    m = re.search(rf'id="{re.escape(cell_id)}"[^>]*>([^<]*)<', dom)
    assert m is not None, (cell_id, dom[:3000])
    return m.group(1)


def test_the_status_page_and_metrics_show_the_running_floor(broker: Broker, tmp_path: Path) -> None:
    leads = [Lead(f"L{i}", f"+1555000{i:04d}", fields={"outcome": "hold"}) for i in range(6)]

    async def main() -> tuple[str, str, dict[str, int], dict[str, int]]:
        async with dialer(broker, leads) as (runtime, dispatcher):
            status = FloorStatus(runtime, campaign="c1", dispatcher=dispatcher)
            server = StatusServer(status)
            server.start(interval=0.2)
            try:
                await until(lambda: any(dispatcher.live(w) for w in dispatcher.workers.values()))
                for i in range(4):
                    runtime.submit(ev.AgentLoggedIn, agent_id=f"a{i}")
                for i in range(3):
                    runtime.submit(ev.AgentReady, agent_id=f"a{i}")
                engine = runtime.engine
                await until(lambda: sum(c.state.value == "connected" for c in engine.calls.values()) == 3)
                await asyncio.sleep(0.5)  # a refresh of the snapshot
                agents = {s.value: n for s, n in engine.agent_counts.items()}
                calls = {s.value: n for s, n in engine.call_counts.items()}
                dom = await asyncio.to_thread(_browse, server.url, tmp_path)
                metrics = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
                )
            finally:
                await server.stop()
                runtime.close()
            return dom, metrics, agents, calls

    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs.update(start_workers(broker, ["s1"], 6, tmp_path))
        dom, metrics, agents, calls = asyncio.run(main())
    finally:
        stop_workers(procs)
    assert agents.get("on_call") == 3 and agents.get("paused") == 1 and calls.get("connected") == 3
    assert _cell(dom, "agents-on_call") == "3" and _cell(dom, "agents-paused") == "1"
    assert _cell(dom, "agents-ready") == "0" and _cell(dom, "calls-connected") == "3"
    assert _cell(dom, "workers-live") == "1"
    assert _cell(dom, "abandon-day").startswith("0.00%")
    assert _cell(dom, "updated").startswith("updated ")  # the script fetched status.json, no error shown
    assert (tmp_path / "status.png").stat().st_size > 1000  # the screenshot, for a person to look at
    assert 'dialer_agents{state="on_call"} 3.0' in metrics
    assert 'dialer_calls{state="connected"} 3.0' in metrics
    assert 'dialer_workers{health="live"} 1.0' in metrics
    assert "dialer_decision_seconds_count" in metrics


def test_dialer_dispatch_serves_its_metrics(broker: Broker, tmp_path: Path) -> None:
    """``dialer dispatch --status-port``: the operations team's scrape target, from the real command."""
    import sys
    import time

    from mqtt_broker import free_port
    from test_dispatch_cli import ENV, write_campaign

    path = write_campaign(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "dispatch", str(path), "--broker-port", str(broker.port), "--insecure",
         "--keep-going", "--status-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "dispatch.err", "wb"), env=ENV, cwd=tmp_path,  # noqa: SIM115
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
    finally:
        proc.terminate()
        proc.wait(20)
    assert 'dialer_workers{health="live"} 0.0' in text, (tmp_path / "dispatch.err").read_text()
    assert "dialer_abandonment_cap 0.03" in text and "dialer_dials_total 0.0" in text
    assert "<title>dialer: floor status</title>" in page
    assert f"status page: http://127.0.0.1:{port}/" in (tmp_path / "dispatch.err").read_text()
