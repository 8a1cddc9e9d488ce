"""One worker placing real calls to a SIPp UAS, and SIP outcomes mapped to engine failure reasons."""

from __future__ import annotations

import asyncio

import pytest
from sip_helpers import Recorder, pool, run, started

from dialer.engine.events import FailureReason
from dialer.errors import ConfigError
from dialer.sip import Answered, Ended, Failed, Placed, Ringing, SipDriver, TrunkConfig, classify
from dialer.sip.config import PoolConfig


@pytest.mark.parametrize(
    ("status", "reason", "congestion"),
    [
        (486, FailureReason.BUSY, False),
        (600, FailureReason.BUSY, False),
        (480, FailureReason.NO_ANSWER, False),
        (408, FailureReason.NO_ANSWER, False),
        (487, FailureReason.NO_ANSWER, False),
        (404, FailureReason.INVALID_NUMBER, False),
        (484, FailureReason.INVALID_NUMBER, False),
        (410, FailureReason.INVALID_NUMBER, False),
        (503, FailureReason.NETWORK, True),
        (500, FailureReason.NETWORK, True),
        (599, FailureReason.NETWORK, True),
        (403, FailureReason.REJECTED, False),
        (603, FailureReason.REJECTED, False),
    ],
)
def test_classify(status: int, reason: FailureReason, congestion: bool) -> None:
    outcome = classify(status)
    assert (outcome.reason, outcome.congestion) == (reason, congestion)


def test_local_timeout_is_congestion_not_no_answer() -> None:
    assert classify(408, local_timeout=True) == classify(0)
    assert classify(0).congestion and classify(0).reason is FailureReason.NETWORK


def test_trunk_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"trunk\.transport"):
        TrunkConfig(transport="sctp")
    with pytest.raises(ConfigError, match=r"trunk\.username"):
        TrunkConfig(register=True)
    with pytest.raises(ConfigError, match=r"trunk\.caller_id"):
        TrunkConfig(caller_id="a b")
    for word in ("dialer", "2125550123", "+1555555010", "+12125550123;x=1"):
        with pytest.raises(ConfigError, match=r"trunk\.caller_id"):
            TrunkConfig(caller_id=word)  # a word, no country code, not a valid number, not only digits
    with pytest.raises(ConfigError, match=r"trunk\.caller_id"):
        SipDriver(PoolConfig(), lambda event: None)  # no caller ID at all: no driver
    assert TrunkConfig(caller_id="+442071234567").caller_id == "+442071234567"
    with pytest.raises(ConfigError, match=r"pool\.calls_per_worker"):
        PoolConfig(calls_per_worker=1, agent_legs=True)
    with pytest.raises(ConfigError, match=r"lead\.phone"):
        TrunkConfig().uri("555;x=1@evil")
    assert TrunkConfig(port=5070, transport="tcp").uri("+15550001") == "sip:+15550001@127.0.0.1:5070;transport=tcp"


def test_outcomes_against_sipp(sipp_factory: type, capfd: pytest.CaptureFixture[str]) -> None:
    sipp = sipp_factory("customers.xml")

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(sipp.port), rec)
        try:
            await driver.dial(1, "2000001", 20)
            await driver.dial(2, "4860001", 20)
            await driver.dial(3, "4040001", 20)
            await driver.dial(4, "5030001", 20)
            await rec.wait(lambda e: isinstance(e, Answered) and e.call_id == 1)
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 4)
            driver.hangup(1)
            await rec.wait(lambda e: isinstance(e, Ended) and e.call_id == 1)
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 3)
            assert driver.active == 0
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    kinds = [type(e) for e in rec.of(1)]
    assert kinds == [Placed, Ringing, Answered, Ended]
    assert rec.of(1)[-1] == Ended(1, "local")
    by_call = {e.call_id: e for e in rec.events if isinstance(e, Failed)}
    assert by_call[2].outcome.reason is FailureReason.BUSY and by_call[2].status == 486
    assert by_call[3].outcome.reason is FailureReason.INVALID_NUMBER and by_call[3].status == 404
    assert by_call[4].outcome.reason is FailureReason.NETWORK and by_call[4].outcome.congestion
    assert not sipp.aborted()
    # The worker process shares our stdout: pjlib's start-up and shut-down lines must not reach it.
    out = capfd.readouterr().out
    assert "pjlib" not in out and "pjsua_core" not in out, out


def test_remote_hangup_cancel_and_bad_number(sipp_factory: type) -> None:
    sipp = sipp_factory("customers.xml")

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(sipp.port), rec)
        try:
            await driver.dial(1, "2010001", 20)  # answers, then hangs up by itself
            await driver.dial(2, "1800001", 20)  # rings until we CANCEL
            await driver.dial(3, "55 5;evil", 20)  # never reaches the network
            await rec.wait(lambda e: isinstance(e, Ringing) and e.call_id == 2)
            driver.hangup(2)
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 2)
            await rec.wait(lambda e: isinstance(e, Ended) and e.call_id == 1)
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert rec.of(1)[-1] == Ended(1, "remote")
    cancelled = rec.of(2)[-1]
    assert isinstance(cancelled, Failed) and cancelled.status == 487
    assert cancelled.outcome.reason is FailureReason.NO_ANSWER
    bad = rec.of(3)
    assert len(bad) == 1 and isinstance(bad[0], Failed) and bad[0].outcome.reason is FailureReason.INVALID_NUMBER


def test_congestion_lowers_capacity_and_backs_off(sipp_factory: type) -> None:
    sipp = sipp_factory("customers.xml")
    capacities: list[int] = []

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(sipp.port), rec, on_capacity=capacities.append)
        try:
            await driver.dial(2, "5030001", 20)
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 2)
            assert driver.capacity == 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await driver.dial(3, "4860001", 20)  # held back until the back-off has passed
            assert loop.time() - t0 > 0.3
            await rec.wait(lambda e: isinstance(e, Failed) and e.call_id == 3)
        finally:
            await driver.close()
        return rec

    run(scenario())
    assert capacities[0] == 4 and min(capacities) < 4
    assert capacities[-1] > min(capacities)  # a clean outcome after congestion restores capacity


def test_tcp_transport(sipp_factory: type) -> None:
    sipp = sipp_factory("customers.xml", transport="t1")

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(sipp.port, trunk_transport="tcp"), rec)
        try:
            await driver.dial(1, "2000001", 20)
            await rec.wait(lambda e: isinstance(e, Answered))
            driver.hangup(1)
            await rec.wait(lambda e: isinstance(e, Ended))
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert [type(e) for e in rec.of(1)] == [Placed, Ringing, Answered, Ended]
