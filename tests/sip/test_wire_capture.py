"""The wire capture measures what it claims: proven against SIPp peers whose timing and audio are known.

The issue's timing rules (ring time counted from the first 180/183, answer to first sound within 2 s) are to be
checked from packets; an instrument that misreads a dialog or calls silence sound would pass a broken dialer.
So a SIPp caller calls a SIPp callee that rings 2.0 s after the INVITE and answers 1.0 s after the 180; the
callee then streams speech and the caller streams μ-law silence. The tolerances are tight enough that a capture
reading the wrong packet or the wrong clock cannot meet them by accident; they measure a known peer, they are
not speed requirements.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from amd_corpus import speak, to_ulaw
from wire import WireCapture, parse_sip, payload_rms

RING_PAUSE = 2.0  # wire_uas.xml: INVITE -> 180
ANSWER_PAUSE = 1.0  # wire_uas.xml: 180 -> 200


def _audio(workdir: Path) -> None:
    """speech.ulaw (the callee's stream: real sound) and silence.ulaw (the caller's: 3 s of 0xFF)."""
    pcm = speak("Hello, this is your agent speaking. How can I help you today?", workdir, 0)
    to_ulaw(pcm, workdir, "speech.ulaw")
    (workdir / "silence.ulaw").write_bytes(b"\xff" * 8000 * 3)


def _call(sipp_factory: type, tmp_path: Path, transport: str, start_after: float = 0.0) -> tuple:
    """One call from wire_uac.xml to wire_uas.xml, captured on the callee's ports; returns (wire, uas, uac).
    With ``start_after`` the capture starts that long after the caller, mid-dialog (1.2 s: after the INVITE,
    before the 180)."""
    _audio(tmp_path)
    uas = sipp_factory("wire_uas.xml", "-m", "1", transport=transport)
    wire = WireCapture({uas.port, uas.media_port})
    if not start_after:
        wire.start()
    try:
        uac = sipp_factory("wire_uac.xml", f"127.0.0.1:{uas.port}", "-m", "1", transport=transport)
        if start_after:
            time.sleep(start_after)
            wire.start()
        assert uac.proc.wait(30) == 0, f"the SIPp call failed: {uac.errors()[-2000:]}"
        assert uas.proc.wait(10) == 0, f"the SIPp callee failed: {uas.errors()[-2000:]}"
    finally:
        wire.stop()
    return wire, uas, uac


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_dialog_ring_and_answer_timing_and_audio(sipp_factory: type, tmp_path: Path, transport: str) -> None:
    """INVITE, 180, 200, ACK, BYE, 200 of one Call-ID in order, with tags, CSeq and SDP ports read right; the
    2.0-s ring and 1.0-s answer pauses measured from packets; the callee's speech is sound, the caller's
    silence is not, and each RTP flow is linked to the dialog through its SDP ports."""
    before = time.monotonic()
    wire, uas, uac = _call(sipp_factory, tmp_path, transport)
    after = time.monotonic()
    assert wire.errors == 0, wire.last_error
    (cid,) = wire.call_ids()
    dialog = wire.dialog(cid)
    kinds = [m.kind for m in dialog]
    deduped = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]  # UDP INVITE retransmissions
    assert deduped == ["INVITE", "180", "200", "ACK", "BYE", "200"], kinds
    assert all(m.call_id == cid for m in dialog)
    assert all(m.transport == ("tcp" if transport == "t1" else "udp") for m in dialog)
    assert [m.time for m in dialog] == sorted(m.time for m in dialog)
    assert before < dialog[0].time < dialog[-1].time < after, "capture times are not on time.monotonic()'s clock"
    assert abs((dialog[0].wall - dialog[0].time) - (time.time() - time.monotonic())) < 0.5

    invite, ringing, ok = dialog[0], wire.first(call_id=cid, status=180), wire.first(call_id=cid, status=200)
    assert ringing is not None and ok is not None
    assert (invite.src[1], invite.dst[1]) == (uac.port, uas.port)
    assert (ok.src[1], ok.dst[1]) == (uas.port, uac.port)
    assert invite.cseq == 1 and invite.cseq_method == "INVITE" and ok.cseq_method == "INVITE"
    assert invite.from_tag and not invite.to_tag and ok.to_tag and ok.from_tag == invite.from_tag
    bye = wire.first(call_id=cid, method="BYE")
    assert bye is not None and bye.cseq == 2 and bye.to_tag == ok.to_tag
    assert wire.first(call_id=cid, status=200, cseq_method="BYE") is not None
    assert wire.cancel_time(cid) is None

    invite_t, ring_t, answer_t = wire.invite_time(cid), wire.ringing_time(cid), wire.answer_time(cid)
    assert invite_t is not None and ring_t is not None and answer_t is not None
    ring_delay, answer_delay = ring_t - invite_t, answer_t - ring_t
    print(f"\n{transport}: INVITE->180 {ring_delay:.3f} s, 180->200 {answer_delay:.3f} s; {wire.summary()}")
    assert RING_PAUSE - 0.1 <= ring_delay <= RING_PAUSE + 0.3, ring_delay
    assert ANSWER_PAUSE - 0.1 <= answer_delay <= ANSWER_PAUSE + 0.3, answer_delay

    link = wire.media(cid)
    assert link.caller == ("127.0.0.1", invite.media_port) and link.callee == ("127.0.0.1", ok.media_port)
    assert invite.media_port == uac.media_port and ok.media_port == uas.media_port
    to_caller, to_callee = wire.rtp_for(cid, "caller"), wire.rtp_for(cid, "callee")
    assert len(to_caller) > 50 and len(to_callee) > 50, (len(to_caller), len(to_callee))
    assert all(p.payload_type == 0 and len(p.payload) == 160 for p in to_caller + to_callee)
    assert len({p.ssrc for p in to_caller}) == 1 and len({p.seq for p in to_caller}) == len(to_caller)
    assert to_callee[0].time >= answer_t, "RTP linked to the dialog before its answer"

    speech = wire.first_audible_to(cid, "caller")
    assert speech is not None, "the callee's speech was not found audible"
    assert 0 <= speech.time - answer_t < 1.0  # streamed from the ACK; espeak-ng leads with a little silence
    assert sum(p.audible() for p in to_caller) > len(to_caller) // 2
    assert wire.first_audible_to(cid, "callee") is None, "mu-law silence (0xFF) was taken for sound"
    assert wire.answer_to_audio(cid) is None
    assert wire.first_audible_rtp(dst_port=uac.media_port, after=answer_t) == speech


@pytest.mark.slow
def test_capture_started_mid_dialog(sipp_factory: type, tmp_path: Path) -> None:
    """A capture that starts after the INVITE still reads the rest of the dialog and its RTP: no INVITE time,
    the 180 -> 200 pause measured, the callee's speech found by its port. Over TCP, so the capture joins a
    connection already open (its stream is picked up at the next SIP start line) and no INVITE retransmission
    lands inside it, as one would over UDP."""
    wire, uas, _ = _call(sipp_factory, tmp_path, "t1", start_after=1.2)
    assert wire.errors == 0, wire.last_error
    (cid,) = wire.call_ids()
    assert [m.kind for m in wire.dialog(cid)][-4:] == ["200", "ACK", "BYE", "200"]
    assert wire.first(call_id=cid, method="INVITE") is None and wire.invite_time(cid) is None
    ring_t, answer_t = wire.ringing_time(cid), wire.answer_time(cid)
    assert ring_t is not None and answer_t is not None
    assert ANSWER_PAUSE - 0.1 <= answer_t - ring_t <= ANSWER_PAUSE + 0.3
    assert wire.media(cid).callee == ("127.0.0.1", uas.media_port)
    assert wire.first_audible_rtp(src_port=uas.media_port, after=answer_t) is not None


def test_malformed_packets_are_counted_never_raised() -> None:
    """Garbage on a watched port is counted (or ignored) by the thread, which keeps capturing afterwards."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (rx, tx, other):
            s.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        good = (
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\ni: good-1\r\nCSeq: 7 OPTIONS\r\nf: <sip:a@b>;tag=t1\r\n"
            b"t: <sip:x@127.0.0.1>\r\nl: 0\r\n\r\n"
        )
        garbage = [
            b"\x80",  # too short for RTP
            b"SIP/2.0 abc\r\n\r\n",  # a broken status line
            b"INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n",  # no Call-ID
            bytes([0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]),  # RTP claiming an extension it does not have
            bytes(40),  # version 0
            b"\r\n\r\n",  # a SIP keep-alive
        ]
        with WireCapture({port}) as wire:
            for g in garbage:
                tx.sendto(g, ("127.0.0.1", port))
            other.sendto(good.replace(b"good-1", b"unwatched"), ("127.0.0.1", other.getsockname()[1]))
            tx.sendto(good, ("127.0.0.1", port))
            assert wire.wait_for(lambda w: w.call_ids() == ["good-1"], 5)
            assert wire.running
        assert wire.errors == 3, wire.last_error
        assert wire.other == 3 and wire.rtp == []  # the short packet, version 0, the keep-alive
        (msg,) = wire.sip
        assert (msg.method, msg.cseq, msg.cseq_method, msg.from_tag, msg.dst[1]) == (
            "OPTIONS",
            7,
            "OPTIONS",
            "t1",
            port,
        )
    finally:
        for s in (rx, tx, other):
            s.close()


def test_audible_means_sound_not_silence() -> None:
    """G.711 silence (PCMU 0xFF/0x7F, PCMA 0xD5/0x55), comfort noise and unknown codecs are not sound."""
    assert payload_rms(0, b"\xff" * 160) == 0.0
    assert payload_rms(0, b"\x7f" * 160) == 0.0
    assert payload_rms(8, b"\xd5" * 160) < 10 and payload_rms(8, b"\x55" * 160) < 10
    assert payload_rms(13, b"\x40") is None and payload_rms(101, bytes(4)) is None
    loud = bytes([0x80, 0x00]) * 80  # full-scale mu-law square wave
    assert payload_rms(0, loud) > 30000
    assert payload_rms(8, bytes([0xAA, 0x2A]) * 80) > 30000
    msg = parse_sip(
        b"SIP/2.0 183 Session Progress\r\nCall-ID: x\r\nCSeq: 3 INVITE\r\nTo: <sip:a@b>;tag=9\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: 37\r\n\r\nc=IN IP4 10.0.0.1\r\nm=audio 4002 RTP/AVP 0\r\n"
    )
    assert (msg.status, msg.kind, msg.to_tag, msg.media) == (183, "183", "9", ("10.0.0.1", 4002))
