"""The SIP tests' packet capture: re-exports :mod:`benchmarks.wire_capture`, so tests and benchmarks measure
timing rules (ring time, answer to first sound) with one parser, from what crossed ``lo``.

Usage: ``with WireCapture({trunk_port, media_port}) as wire: ...`` then ``wire.answer_to_audio(call_id)``.
Needs root (a raw ``AF_PACKET`` socket); :meth:`WireCapture.start` raises ``PermissionError`` without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # benchmarks/ is not an installed package; it lives next to tests/
    sys.path.insert(0, _REPO)

from benchmarks.wire_capture import (  # noqa: E402
    AUDIBLE_RMS,
    MediaLink,
    RtpPacket,
    SipMessage,
    WireCapture,
    alaw_to_linear,
    parse_sip,
    payload_rms,
    ulaw_to_linear,
)

__all__ = [
    "AUDIBLE_RMS",
    "MediaLink",
    "RtpPacket",
    "SipMessage",
    "WireCapture",
    "alaw_to_linear",
    "parse_sip",
    "payload_rms",
    "ulaw_to_linear",
]
