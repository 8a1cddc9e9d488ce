"""Live calls over SIP: a pool of pjsua2 worker processes behind one asyncio driver.

Importing this package does not import pjsua2; only worker processes do.
"""

from dialer.sip.config import AmdConfig, PoolConfig, TrunkConfig
from dialer.sip.driver import (
    Answered,
    Bridged,
    BridgeFailed,
    DriverEvent,
    Dtmf,
    Ended,
    Failed,
    MessageStarted,
    NotPlaced,
    Placed,
    Ringing,
    SipDriver,
    SipError,
    VoicemailStarted,
)
from dialer.sip.outcomes import SipOutcome, classify

__all__ = [
    "AmdConfig",
    "Answered",
    "BridgeFailed",
    "Bridged",
    "DriverEvent",
    "Dtmf",
    "Ended",
    "Failed",
    "MessageStarted",
    "NotPlaced",
    "Placed",
    "PoolConfig",
    "Ringing",
    "SipDriver",
    "SipError",
    "SipOutcome",
    "TrunkConfig",
    "VoicemailStarted",
    "classify",
]
