"""Agent and call states, and every legal transition between them.

Theory of operation (after h11's ``_state.py``): everything that decides whether an event is legal lives in the
two tables below, and nothing here knows about SIP, SimPy or MQTT. The engine looks the current state and the
event type up in a table; a missing entry is an :class:`~dialer.errors.InvalidTransition` raised before anything
changes. Because the moves are data, tests walk every (state, event) pair and docs can draw the diagram.

Some transitions are caused by the engine itself rather than by an input event: connecting a call to an agent,
the connect limit expiring, the ring timeout. Those appear in the tables under the internal triggers below, so
the tables are the complete list of moves.

Inbound calls and preview dialing add tables of their own (``AGENT_INBOUND_TRANSITIONS``, ``INBOUND_TRANSITIONS``,
``AGENT_PREVIEW_TRANSITIONS``, ``OFFER_TRANSITIONS``) rather than rows in the outbound ones, so the outbound tables
and what they promise (every :class:`AgentState` and :class:`CallState` has its row) stay exactly as they were.
An agent previewing a lead or waiting on their own dial is in a :class:`PreviewState`, apart from
:class:`AgentState` for the same reason; such an agent moves by ``AGENT_PREVIEW_TRANSITIONS`` only.
"""

from __future__ import annotations

from enum import StrEnum

from dialer.engine import events as ev


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    PAUSED = "paused"
    READY = "ready"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class CallState(StrEnum):
    DIALING = "dialing"  # launched, no news from the network yet
    RINGING = "ringing"  # far end alerting
    QUEUED = "queued"  # a person answered and waits for an agent (the connect-limit clock runs)
    CONNECTED = "connected"  # matched to an agent; the runtime is bridging it (or has)
    ABANDONING = "abandoning"  # the abandonment message plays
    ENDED = "ended"


class InboundState(StrEnum):
    """An inbound caller: waiting in the queue, talking to (or being bridged to) an agent, or gone."""

    QUEUED = "queued"
    CONNECTED = "connected"
    ENDED = "ended"


class PreviewState(StrEnum):
    """An agent of preview or manual dialing, between ready and on a call (see ``AGENT_PREVIEW_TRANSITIONS``)."""

    PREVIEWING = "previewing"  # a lead is on their screen; nothing dialed yet
    RESERVED = "reserved"  # their own dial rings; the person who answers is theirs at once


#: Any state an agent can be in.
AnyAgentState = AgentState | PreviewState


class OfferState(StrEnum):
    """A lead shown to an agent and not dialed: no call on the wire yet (it holds a trunk slot)."""

    OFFERED = "offered"


class Trigger(StrEnum):
    """Transitions the engine causes itself."""

    CONNECT = "connect"  # an agent and a waiting person were matched
    CONNECT_LIMIT = "connect_limit"  # nobody free within the limit
    RING_TIMEOUT = "ring_timeout"  # we gave up ringing
    AGENT_LOST = "agent_lost"  # the connected agent logged out mid-call


class PreviewTrigger(StrEnum):
    """Transitions of preview dialing the engine causes itself (apart from :class:`Trigger`, whose members are
    every outbound call's)."""

    OFFER = "offer"  # a lead was shown to a ready agent
    PREVIEW_TIMEOUT = "preview_timeout"  # the agent did not press dial in time: the engine dials
    WITHDRAWN = "withdrawn"  # the offer was taken back (dialing stopped, the agent paused or left)


Key = type[ev.Event] | Trigger | PreviewTrigger

AGENT_TRANSITIONS: dict[AgentState, dict[Key, AgentState]] = {
    AgentState.LOGGED_OUT: {ev.AgentLoggedIn: AgentState.PAUSED},
    AgentState.PAUSED: {
        ev.AgentReady: AgentState.READY,
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,
    },
    AgentState.READY: {
        ev.AgentPaused: AgentState.PAUSED,
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,
        Trigger.CONNECT: AgentState.ON_CALL,
    },
    AgentState.ON_CALL: {
        ev.CallEnded: AgentState.WRAP_UP,
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,
        ev.CallBridgeFailed: AgentState.PAUSED,  # their phone failed: no next call until they are made ready
    },
    AgentState.WRAP_UP: {
        ev.WrapUpDone: AgentState.READY,  # or PAUSED when the event asks for a pause
        ev.AgentPaused: AgentState.PAUSED,
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,
    },
}

_UNANSWERED: dict[Key, CallState] = {
    ev.CallAnsweredByPerson: CallState.QUEUED,  # or straight to CONNECTED / ABANDONING, see the engine
    ev.CallAnsweredByMachine: CallState.ENDED,
    ev.CallFailed: CallState.ENDED,
    Trigger.RING_TIMEOUT: CallState.ENDED,
}

CALL_TRANSITIONS: dict[CallState, dict[Key, CallState]] = {
    CallState.DIALING: {
        ev.CallRinging: CallState.RINGING,
        ev.CallPlaced: CallState.DIALING,
        ev.CallNotPlaced: CallState.ENDED,
        **_UNANSWERED,
    },
    # 180 followed by 183 is ordinary SIP, so a second ringing report is harmless.
    CallState.RINGING: {ev.CallRinging: CallState.RINGING, **_UNANSWERED},
    CallState.QUEUED: {
        Trigger.CONNECT: CallState.CONNECTED,
        Trigger.CONNECT_LIMIT: CallState.ABANDONING,
        ev.CallEnded: CallState.ENDED,  # hung up while waiting: still abandoned
    },
    CallState.CONNECTED: {
        ev.CallEnded: CallState.ENDED,
        Trigger.AGENT_LOST: CallState.ENDED,
        ev.CallBridgeFailed: CallState.ABANDONING,  # no live agent after all: abandoned, the message plays
    },
    CallState.ABANDONING: {ev.CallEnded: CallState.ENDED, ev.MessagePlayed: CallState.ABANDONING},
    CallState.ENDED: {},
}


# The agent's side of an inbound call, apart from AGENT_TRANSITIONS so that the outbound table (and what it
# promises) stays exactly as it was. ``Trigger.CONNECT`` (ready -> on_call) is shared with outbound connects.
AGENT_INBOUND_TRANSITIONS: dict[AgentState, dict[Key, AgentState]] = {
    AgentState.ON_CALL: {
        ev.InboundEnded: AgentState.WRAP_UP,
        ev.InboundAbandoned: AgentState.READY,  # the caller hung up before the bridge: the agent never talked
        ev.InboundBridgeFailed: AgentState.PAUSED,  # their phone failed, as for an outbound bridge
    },
}

INBOUND_TRANSITIONS: dict[InboundState, dict[Key, InboundState]] = {
    InboundState.QUEUED: {
        Trigger.CONNECT: InboundState.CONNECTED,
        ev.InboundAbandoned: InboundState.ENDED,
    },
    InboundState.CONNECTED: {
        ev.InboundEnded: InboundState.ENDED,
        ev.InboundAbandoned: InboundState.ENDED,  # hung up as the engine connected them: still abandoned
        ev.InboundBridgeFailed: InboundState.QUEUED,  # back in the queue, in their old place
        Trigger.AGENT_LOST: InboundState.ENDED,
    },
    InboundState.ENDED: {},
}


# Preview and manual dialing (issue 16 item 3): the agent is reserved for the call before it is dialed, so a
# person who answers always has their agent. ``READY`` and ``ON_CALL`` are the outbound states: a preview call,
# once answered, is an outbound call like any other (``CallEnded`` -> wrap-up, and so on).
AGENT_PREVIEW_TRANSITIONS: dict[AnyAgentState, dict[Key, AnyAgentState]] = {
    AgentState.READY: {
        PreviewTrigger.OFFER: PreviewState.PREVIEWING,
        ev.ManualDial: PreviewState.RESERVED,
    },
    PreviewState.PREVIEWING: {
        ev.PreviewDial: PreviewState.RESERVED,
        PreviewTrigger.PREVIEW_TIMEOUT: PreviewState.RESERVED,
        ev.PreviewSkip: AgentState.READY,  # the lead goes back to its source undialed
        PreviewTrigger.WITHDRAWN: AgentState.READY,  # dialing stopped: the lead goes back, the agent is free
        ev.AgentPaused: AgentState.PAUSED,  # the lead goes back
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,  # the lead goes back
    },
    PreviewState.RESERVED: {
        Trigger.CONNECT: AgentState.ON_CALL,  # a person answered: theirs at once
        Trigger.CONNECT_LIMIT: AgentState.READY,  # answered, but detection had used up the connect limit
        ev.CallAnsweredByMachine: AgentState.READY,  # the dial reached nobody: free again
        ev.CallFailed: AgentState.READY,
        ev.CallNotPlaced: AgentState.READY,
        Trigger.RING_TIMEOUT: AgentState.READY,
        ev.AgentLoggedOut: AgentState.LOGGED_OUT,  # the call loses its agent (see the engine)
    },
}

# A lead on an agent's screen, before it is a call. Its targets are call states: dialed, it is a call in DIALING
# (in ``CALL_TRANSITIONS`` from then on); skipped or withdrawn, it ends with a record saying it was never placed.
OFFER_TRANSITIONS: dict[OfferState, dict[Key, CallState]] = {
    OfferState.OFFERED: {
        ev.PreviewDial: CallState.DIALING,
        PreviewTrigger.PREVIEW_TIMEOUT: CallState.DIALING,
        ev.PreviewSkip: CallState.ENDED,
        PreviewTrigger.WITHDRAWN: CallState.ENDED,
    },
}


def agent_next(state: AnyAgentState, key: Key) -> AnyAgentState | None:
    """The state an agent moves to, or ``None`` if ``key`` is not legal in ``state``."""
    new: AnyAgentState | None = None
    if type(state) is AgentState:
        new = AGENT_TRANSITIONS[state].get(key)
        if new is None:
            row = AGENT_INBOUND_TRANSITIONS.get(state)
            if row is not None:
                new = row.get(key)
    if new is None:
        prow = AGENT_PREVIEW_TRANSITIONS.get(state)
        if prow is not None:
            new = prow.get(key)
    return new


def offer_next(key: Key) -> CallState | None:
    """Where an offered lead goes on ``key``, or ``None`` if ``key`` is not legal for an offer."""
    return OFFER_TRANSITIONS[OfferState.OFFERED].get(key)


def inbound_next(state: InboundState, key: Key) -> InboundState | None:
    """The state an inbound call moves to, or ``None`` if ``key`` is not legal in ``state``."""
    return INBOUND_TRANSITIONS[state].get(key)


def call_next(state: CallState, key: Key) -> CallState | None:
    """The state a call moves to, or ``None`` if ``key`` is not legal in ``state``."""
    return CALL_TRANSITIONS[state].get(key)
