"""The sans-I/O engine core: events in, actions out, no clock or socket inside."""

from dialer.engine.actions import Action, Alert, ConnectCall, DialLead, HangUp, PlayAbandonMessage, RecordCall
from dialer.engine.core import Engine, EngineConfig
from dialer.engine.records import CallRecord, Outcome
from dialer.engine.snapshot import Snapshot
from dialer.engine.state import AGENT_TRANSITIONS, CALL_TRANSITIONS, AgentState, CallState, Trigger

__all__ = [
    "AGENT_TRANSITIONS",
    "CALL_TRANSITIONS",
    "Action",
    "AgentState",
    "Alert",
    "CallRecord",
    "CallState",
    "ConnectCall",
    "DialLead",
    "Engine",
    "EngineConfig",
    "HangUp",
    "Outcome",
    "PlayAbandonMessage",
    "RecordCall",
    "Snapshot",
    "Trigger",
]
