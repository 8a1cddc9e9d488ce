"""predictive-dialer: pacing, a sans-I/O dialing engine, and the runtimes that drive it.

``import dialer`` stays light: the simulator (SimPy, NumPy), SIP (pjsua2) and plotting load only when used.
"""

from dialer.engine import (
    Action,
    AgentState,
    Alert,
    CallRecord,
    CallState,
    ConnectCall,
    DialLead,
    Engine,
    EngineConfig,
    HangUp,
    Outcome,
    PlayAbandonMessage,
    RecordCall,
    Snapshot,
    events,
)
from dialer.engine.events import InvalidEvent
from dialer.errors import ConfigError, DialerError, InvalidTransition
from dialer.leads import Lead, LeadSource, ListLeads, SyntheticLeads
from dialer.pacing import PacingPolicy, make_policy

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AgentState",
    "Alert",
    "CallRecord",
    "CallState",
    "ConfigError",
    "ConnectCall",
    "DialLead",
    "DialerError",
    "Engine",
    "EngineConfig",
    "HangUp",
    "InvalidEvent",
    "InvalidTransition",
    "Lead",
    "LeadSource",
    "ListLeads",
    "Outcome",
    "PacingPolicy",
    "PlayAbandonMessage",
    "RecordCall",
    "Snapshot",
    "SyntheticLeads",
    "events",
    "make_policy",
]
