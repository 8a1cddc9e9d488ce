"""The worker pool: calls spread over processes, a killed worker restarted with its calls accounted for, and a
worker's real call limit detected rather than assumed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from sip_helpers import Recorder, pool, run, started

from dialer.engine.events import FailureReason
from dialer.errors import ConfigError
from dialer.sip import Answered, Ended, Failed, PoolConfig


def test_crashed_worker_is_restarted_and_its_calls_reported(sipp_factory: type) -> None:
    sipp = sipp_factory("customers.xml")

    async def scenario() -> tuple[Recorder, list[dict[str, object]], list[dict[str, object]]]:
        rec = Recorder()
        driver = await started(pool(sipp.port, workers=2), rec)
        try:
            before = driver.workers
            for cid in range(1, 5):
                await driver.dial(cid, f"200000{cid}", 20)
            await driver.dial(5, "1800005", 20)  # still ringing when its worker dies
            for cid in range(1, 5):
                await rec.wait(lambda e, c=cid: isinstance(e, Answered) and e.call_id == c)
            assert sorted(w["calls"] for w in driver.workers) == [2, 3]  # spread, not piled on one
            victim = next(w for w in driver.workers if w["calls"] == 3)
            os.kill(int(victim["pid"]), signal.SIGKILL)  # a real crash, as the wheel's aborts are
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 5)
            for _ in range(200):
                if all(w["alive"] for w in driver.workers):
                    break
                await asyncio.sleep(0.05)
            after = driver.workers
            await driver.dial(6, "2000006", 20)
            await rec.wait(lambda e: isinstance(e, Answered) and e.call_id == 6)
            for cid in (1, 2, 3, 4, 6):
                driver.hangup(cid)
            for cid in (1, 2, 3, 4, 6):
                await rec.wait(lambda e, c=cid: isinstance(e, Ended) and e.call_id == c)
            assert driver.stats["restarts"] == 1
        finally:
            await driver.close()
        return rec, before, after

    rec, before, after = run(scenario())
    crashed = [e for e in rec.events if isinstance(e, Ended) and e.by == "crash"]
    assert len(crashed) == 2  # the two answered calls of the dead worker
    lost = rec.of(5)[-1]
    assert isinstance(lost, Failed) and lost.outcome.reason is FailureReason.NETWORK
    assert all(w["alive"] for w in after)
    assert {w["pid"] for w in before} != {w["pid"] for w in after}
    for cid in range(1, 7):  # every call got exactly one final outcome
        finals = [e for e in rec.of(cid) if isinstance(e, Ended | Failed)]
        assert len(finals) == 1, (cid, rec.of(cid))


def test_real_call_limit_is_detected(sipp_factory: type) -> None:
    """Configured for 6 calls, the PyPI wheel holds 4: the 5th is re-placed once a slot frees, not lost."""
    sipp = sipp_factory("customers.xml")

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(sipp.port, calls_per_worker=6, rtp_ports_per_worker=200), rec)
        try:
            for cid in range(1, 6):
                await driver.dial(cid, f"200000{cid}", 20)
            for cid in range(1, 5):
                await rec.wait(lambda e, c=cid: isinstance(e, Answered) and e.call_id == c)
            await asyncio.sleep(0.3)
            assert driver.workers[0]["slots"] == 4
            assert driver.stats["toomany"] >= 1
            assert not rec.of(5)
            driver.hangup(1)
            await rec.wait(lambda e: isinstance(e, Answered) and e.call_id == 5)
            for cid in (2, 3, 4, 5):
                driver.hangup(cid)
            for cid in (1, 2, 3, 4, 5):
                await rec.wait(lambda e, c=cid: isinstance(e, Ended) and e.call_id == c)
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert [type(e).__name__ for e in rec.of(5)] == ["Placed", "Ringing", "Answered", "Ended"]


def test_setup_rate_is_capped_per_worker(sipp_factory: type) -> None:
    """The wheel aborts a process near 60 setups/s: each worker starts at most ``setups_per_worker`` per second,
    however fast calls are offered (and the cap is not 'a wait before each call': the first goes out at once)."""
    sipp = sipp_factory("customers.xml")

    async def scenario() -> tuple[float, float, Recorder]:
        rec = Recorder()
        driver = await started(pool(sipp.port, setups_per_worker=5.0), rec)
        loop = asyncio.get_running_loop()
        try:
            t0 = loop.time()
            for cid in range(1, 6):
                await driver.dial(cid, f"486000{cid}", 20)  # busy at once: slots never run short
            for cid in range(1, 6):
                await rec.wait(lambda e, c=cid: isinstance(e, Failed) and e.call_id == c)
            spread = loop.time() - t0
        finally:
            await driver.close()
        return spread, driver.config.setups_per_worker, rec

    spread, cap, rec = run(scenario())
    assert spread >= 4 / cap  # five setups at 5/s: the last INVITE leaves 0.8 s after the first, at the earliest
    assert all(e.outcome.reason is FailureReason.BUSY for e in rec.events if isinstance(e, Failed))


def test_setup_rate_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"pool\.setups_per_worker"):
        PoolConfig(setups_per_worker=0)
    with pytest.raises(ConfigError, match=r"pool\.setups_per_worker"):
        PoolConfig(setups_per_worker=float("nan"))
