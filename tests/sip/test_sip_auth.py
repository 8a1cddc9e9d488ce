"""Registration and digest authentication against a SIPp trunk that challenges REGISTER and INVITE (401)."""

from __future__ import annotations

import pytest
from sip_helpers import Recorder, pool, run, started

from dialer.sip import Answered, Ended, Placed, Ringing, SipError


def test_register_and_call_with_digest_auth(sipp_factory: type) -> None:
    trunk = sipp_factory("registrar.xml")

    async def scenario() -> Recorder:
        rec = Recorder()
        config = pool(trunk.port, trunk_register=True, trunk_username="alice", trunk_password="secret")
        driver = await started(config, rec)  # returns only once the worker's REGISTER got its 200
        try:
            await driver.dial(1, "2000001", 20)  # challenged too, answered with the same credentials
            await rec.wait(lambda e: isinstance(e, Answered))
            driver.hangup(1)
            await rec.wait(lambda e: isinstance(e, Ended))
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert [type(e) for e in rec.of(1)] == [Placed, Ringing, Answered, Ended]
    assert not trunk.aborted()


def test_wrong_password_fails_start_with_a_clear_error(sipp_factory: type) -> None:
    trunk = sipp_factory("registrar.xml")

    async def scenario() -> None:
        config = pool(trunk.port, trunk_register=True, trunk_username="alice", trunk_password="wrong")
        await started(config, Recorder())

    with pytest.raises(SipError, match=r"registration failed: 40[13]"):
        run(scenario())
