"""The bus's message schema: one versioned JSON envelope, one field table per message type.

Every message on the bus, in either direction, is a JSON object of this shape::

    {"v": 1, "id": "9f1c…", "type": "call.dialed", "campaign": "spring", "source": "dialer-1",
     "ts": 1767225600.25, "data": {...}}

``v`` is the schema version (a consumer that sees a higher major version it does not know must not guess),
``id`` is unique per message and is what consumers deduplicate on (delivery is at least once), ``source`` names
the sender (a dialer, a worker, a backend), ``ts`` is the sender's clock in epoch seconds, and ``data`` holds the
type's fields.

The field tables below are the single source of truth: :func:`validate` checks messages against them and
:func:`json_schema` renders them as JSON Schema for consumers in other languages, so the documentation cannot
drift from what the code accepts. Validation is strict (unknown fields, wrong types and oversized strings are
rejected) because commands arrive from other programs and a bad command must change nothing.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dialer.errors import DialerError

SCHEMA_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_STRING: Final = 1024

# Identifiers end up inside MQTT topics, so they may not contain '/', '+', '#' or control characters. ``\Z``, not
# ``$``: ``$`` also matches before a trailing newline, and "w1\n" would pass into a topic the broker then refuses.
IDENT_RE: Final = re.compile(r"\A[A-Za-z0-9_.:@-]{1,128}\Z")

#: The roles an identity on the bus can have (see :mod:`dialer.bus.topics` for what each may do).
ROLES: Final = ("dispatcher", "worker", "backend", "monitor")

# A sender's identity: its role and name, "worker/w1". It is the MQTT user name and client id, and it is the
# level of the topic tree the broker lets that client publish under, which is what receivers trust.
IDENTITY_RE: Final = re.compile(r"\A(dispatcher|worker|backend|monitor)/[A-Za-z0-9_.:@-]{1,128}\Z")


def is_ident(value: object) -> bool:
    """A whole-string match of :data:`IDENT_RE` (safe as one topic level)."""
    return isinstance(value, str) and IDENT_RE.fullmatch(value) is not None


def is_identity(value: object) -> bool:
    """A whole-string match of :data:`IDENTITY_RE` (``role/name``)."""
    return isinstance(value, str) and IDENTITY_RE.fullmatch(value) is not None


class SchemaError(DialerError, ValueError):
    """A message that does not match the schema. ``code`` is the machine-readable reason sent in error replies."""

    def __init__(self, message: str, *, code: str = "invalid", path: str = "") -> None:
        self.code = code
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True, slots=True)
class F:
    """One field of a message's ``data``.

    ``kind`` is one of ``str``, ``ident`` (a string safe inside a topic), ``int``, ``num`` (int or float, finite),
    ``bool``, ``obj`` (a JSON object with string keys and scalar values), ``any`` (any JSON value, for records).
    ``choices`` restricts a string; ``lo``/``hi`` bound a number; ``null`` allows JSON null.
    """

    kind: str
    required: bool = True
    null: bool = False
    choices: tuple[str, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    doc: str = ""


def _opt(kind: str, **kw: Any) -> F:
    return F(kind, required=False, null=True, **kw)


AGENT_STATES = ("logged_out", "paused", "ready", "on_call", "wrap_up")
CALL_STATES = ("dialing", "ringing", "queued", "connected", "abandoning", "ended")
FAILURE_REASONS = ("busy", "no_answer", "rejected", "invalid_number", "network")
OUTCOMES = ("connected", "abandoned", "machine", *FAILURE_REASONS)
WORK_KINDS = (
    "accepted",
    "rejected",
    "placed",
    "not_placed",
    "ringing",
    "answered_person",
    "answered_machine",
    "failed",
    "ended",
    "message",
    "dtmf",
    "bridge_failed",
)

_CALL = {"call_id": F("int", lo=1)}
_AGENT = {"agent_id": F("ident")}

#: Messages the dialer publishes (``direction`` "out"), commands it accepts ("in"), and the worker protocol.
MESSAGES: Final[dict[str, tuple[str, dict[str, F], str]]] = {
    # -- out: call lifecycle -----------------------------------------------------------------------------
    "call.dialed": (
        "out",
        {**_CALL, "lead_id": F("str"), "ring_timeout": _opt("num", lo=0)},
        "The engine launched a call to a lead.",
    ),
    "call.ringing": ("out", dict(_CALL), "The far end is alerting."),
    "call.answered": (
        "out",
        {**_CALL, "by": F("str", choices=("person", "machine")), "answered_at": _opt("num")},
        "A person or a machine answered.",
    ),
    "call.connected": ("out", {**_CALL, **_AGENT}, "An answered call was bridged to an agent."),
    "call.abandoned": ("out", dict(_CALL), "No agent within the connect limit: the abandonment message plays."),
    "call.hangup": ("out", {**_CALL, "reason": F("str")}, "The dialer hung up (machine, ring timeout, agent lost)."),
    "call.failed": ("out", {**_CALL, "reason": F("str", choices=FAILURE_REASONS)}, "The dial reached nobody."),
    "call.ended": ("out", dict(_CALL), "The far end or the runtime hung up an answered call."),
    "call.record": (
        "out",
        {
            **_CALL,
            "lead_id": F("str"),
            "outcome": F("str", choices=OUTCOMES),
            "dialed_at": F("num"),
            "ended_at": F("num"),
            "answered_at": _opt("num"),
            "connected_at": _opt("num"),
            "agent_id": _opt("str"),
            "message_at": _opt("num"),
            "wait": _opt("num"),
            "abandoned": F("bool"),
            "customer_hung_up": F("bool"),
            "agent_lost": F("bool"),
            # Optional so that producers written before it (and their fixtures) stay valid; the dialer always sends it.
            "bridge_failed": F("bool", required=False),
            # Preview and manual dialing (optional, as bridge_failed is): ``placed`` false when nothing left the
            # dialer (a skipped or withdrawn preview: the lead went back undialed, ``outcome`` is then ``network``
            # as for any call that never left), ``skipped`` the agent's reason or ``withdrawn: <why>``,
            # ``reserved_for`` the agent the call was dialed for.
            "placed": F("bool", required=False),
            "skipped": _opt("str"),
            "reserved_for": _opt("str"),
        },
        "A call is over: its complete record, emitted exactly once per dialed call (and once per previewed lead "
        "that was never dialed, with ``placed`` false).",
    ),
    # -- out: agents, pacing, campaign -----------------------------------------------------------------
    "agent.state": (
        "out",
        {**_AGENT, "state": F("str", choices=AGENT_STATES), "call_id": _opt("int")},
        "An agent changed state.",
    ),
    "call.disposition": (
        "out",
        {**_AGENT, "call_id": _opt("int"), "disposition": F("str")},
        "An agent's disposition of a call, as received (echoed for consumers that keep the lead history).",
    ),
    "pacing.decision": (
        "out",
        {
            "policy": F("str"),
            "launched": F("int", lo=0),
            "ready": F("int", lo=0),
            "ringing": F("int", lo=0),
            "queued": F("int", lo=0),
            "connected": F("int", lo=0),
            "in_flight": F("int", lo=0),
            "estimates": F("obj", required=False),
        },
        "Pacing launched calls; the counts it decided on and the policy's current estimates.",
    ),
    "campaign.stats": (
        "out",
        {
            "dialing": F("bool"),
            "state": F("str", choices=("running", "paused", "stopped")),
            "agents": F("obj"),
            "calls": F("obj"),
            "totals": F("obj"),
        },
        "Periodic campaign statistics (retained: a new subscriber sees the latest at once).",
    ),
    "campaign.abandonment": (
        "out",
        {
            "cap": F("num", lo=0, hi=1),
            "day": F("int"),
            "day_abandoned": F("int", lo=0),
            "day_live_answers": F("int", lo=0),
            "day_rate": F("num", lo=0),
            "total_abandoned": F("int", lo=0),
            "total_live_answers": F("int", lo=0),
            "total_rate": F("num", lo=0),
            "over_cap": F("bool"),
        },
        "Abandonment-window status against the cap (retained).",
    ),
    "dialer.status": (
        "out",
        {
            "online": F("bool"),
            "role": F("str", choices=ROLES),
            "capacity": _opt("int", lo=0),
            "calls": _opt("int", lo=0),
            "lease": _opt("num", lo=0),
            "epoch": _opt("ident"),
            "beat": _opt("int", lo=0),
        },
        "A dispatcher, worker or client came online or went offline (retained; the offline message is the MQTT "
        "last will). Live ones repeat it as a heartbeat: ``beat`` counts up. A worker says its free ``capacity`` and "
        "the ``calls`` it holds; a dispatcher says its ``epoch`` (one per process start) and ``lease``, the seconds "
        "its workers keep dialing for it without hearing from it again.",
    ),
    "reply": (
        "out",
        {
            "command_id": F("str"),
            "command_type": F("str"),
            "ok": F("bool"),
            "code": _opt("str"),
            "error": _opt("str"),
            "result": F("obj", required=False),
        },
        "The answer to one command: ok, or an error code and message (the command then changed nothing). "
        "``result`` holds what a command returns (``events.replay``: how many follow, the oldest kept ``seq``).",
    ),
    # -- out: preview and manual dialing (an agent's desktop shows the lead and answers for the agent) ----------
    "preview.offer": (
        "out",
        {
            **_AGENT,
            **_CALL,
            "lead_id": F("str"),
            "phone": F("str"),
            "name": F("str", required=False),
            "fields": F("obj", required=False),
            "dial_at": F("num", null=True),
        },
        "Preview mode: this lead is shown to ``agent_id``, who is reserved for it; nothing is dialed yet. Answer "
        "with ``preview.dial`` or ``preview.skip`` naming ``call_id`` (the future call's id). ``dial_at`` (epoch "
        "seconds) is when the dialer dials it by itself if neither came; null: it waits for the agent.",
    ),
    "preview.withdrawn": (
        "out",
        {**_CALL, **_AGENT, "reason": F("str")},
        "The lead offered as ``call_id`` was taken back undialed (``reason``: ``dialing_stopped``, "
        "``agent_paused``, ``agent_logged_out``): clear it from the agent's screen; a press for it is refused.",
    ),
    "dial.refused": (
        "out",
        {**_AGENT, "lead_id": _opt("str"), "phone": _opt("str"), "reason": F("str")},
        "An agent's ``manual.dial`` was not dialed (``reason``: the lead source's gate that refused it, e.g. "
        "``do-not-call``, ``not a lead of this campaign``, ``lead L7 is not due until ...``; or ``dialing stopped``, "
        "``trunk full``). The agent stays ready.",
    ),
    # -- in: commands ---------------------------------------------------------------------------------------
    "agent.login": ("in", dict(_AGENT), "An agent joins the campaign (paused)."),
    "agent.ready": ("in", dict(_AGENT), "A paused agent takes calls."),
    "agent.pause": ("in", dict(_AGENT), "An agent stops taking calls."),
    "agent.logout": ("in", dict(_AGENT), "An agent leaves, even mid-call."),
    "agent.disposition": (
        "in",
        {**_AGENT, "call_id": _opt("int", lo=1), "disposition": F("str"), "pause": F("bool", required=False)},
        "An agent finished wrap-up with a disposition; ready again unless ``pause``.",
    ),
    "campaign.start": ("in", {}, "Launch calls (again)."),
    "campaign.pause": ("in", {}, "Stop launching calls for now; calls in flight finish."),
    "campaign.stop": ("in", {}, "Stop launching calls until the next start; calls in flight finish."),
    "pacing.target": (
        "in",
        {
            "abandon_rate": F("num", required=False, lo=0, hi=1),
            "ratio": F("num", required=False, lo=1, hi=10),
            "max_level": F("num", required=False, lo=1, hi=10),
        },
        "Change the policy's target: abandonment rate (predictive, VICIdial), ratio (power), max level.",
    ),
    "lead.callback": (
        "in",
        {"lead_id": F("str"), "phone": F("str"), "at": F("num"), "agent_id": _opt("ident")},
        "Schedule a callback to a lead at an epoch time, optionally for one agent.",
    ),
    "lead.opt_out": (
        "in",
        {"phone": F("str"), "lead_id": _opt("str"), "reason": _opt("str")},
        "Do not call this number again (an opt-out taken on a call takes effect at once).",
    ),
    "events.replay": (
        "in",
        {"after": F("int", lo=0), "limit": F("int", required=False, lo=1, hi=100_000)},
        "Send me again every event and record with ``seq`` > ``after`` that the dispatcher's outbox still keeps, "
        "on ``to/<role>/<name>/replay``, oldest first (a consumer back from an outage resumes from the last "
        "``seq`` it saw). Read-only: monitors may ask too.",
    ),
    "preview.dial": (
        "in",
        {**_AGENT, **_CALL},
        "The agent pressed dial on the lead offered to them as ``call_id`` (``preview.offer``): it is dialed with "
        "the agent reserved, and whoever answers is bridged to them at once. Refused (``no_offer``) if that offer "
        "is not this agent's, and (``offer_closed``) if the dialer already dialed it at ``dial_at`` or withdrew it.",
    ),
    "preview.skip": (
        "in",
        {**_AGENT, **_CALL, "reason": _opt("str")},
        "The agent will not dial the lead offered as ``call_id``: it goes back to the list undialed (``reason`` is "
        "kept in its record) and the agent is offered the next one. Refused as ``preview.dial`` is.",
    ),
    "manual.dial": (
        "in",
        {**_AGENT, "lead_id": _opt("str"), "phone": _opt("str")},
        "A ready agent dials a lead of the campaign themselves, named by ``lead_id`` or by ``phone`` (any "
        "spelling; at least one of the two). Every gate of a paced dial applies; a refusal is the reply "
        "``dial_refused`` with the reason, and a ``dial.refused`` event. On success ``result`` has the "
        "``call_id`` and the ``lead_id`` dialed.",
    ),
    # -- worker protocol (scale-out) ------------------------------------------------------------------------
    "work.dial": (
        "work",
        {
            **_CALL,
            "lead_id": F("str"),
            "phone": F("str"),
            "ring_timeout": _opt("num", lo=0),
            "deadline": F("num"),
            "fields": F("obj", required=False),
        },
        "Dispatcher to one worker (its inbox): place this call, unless ``deadline`` has passed.",
    ),
    "work.hangup": ("work", {**_CALL, "reason": F("str")}, "Dispatcher to the owning worker: hang up."),
    "work.connect": (
        "work",
        {**_CALL, **_AGENT, "agent_uri": _opt("str")},
        "Dispatcher to the owning worker: bridge the call to the agent (at ``agent_uri``, or the worker's own map).",
    ),
    "work.play_message": ("work", dict(_CALL), "Dispatcher to the owning worker: play the abandonment message."),
    "work.release": (
        "work",
        dict(_CALL),
        "A restarted dispatcher to the worker that held a call of its predecessor: finish it safely on your own "
        "(as when the lease lapses) and report everything you know of it again, also if it has already ended.",
    ),
    "work.event": (
        "work",
        {
            **_CALL,
            "kind": F("str", choices=WORK_KINDS),
            "reason": _opt("str"),
            "answered_at": _opt("num"),
            "at": _opt("num"),
        },
        "Worker to dispatcher: what happened to a call it holds (``reason``: why it failed or was not placed, the "
        "``dtmf`` digit, or for ``bridge_failed`` the agent leg's SIP status, the call then waiting for "
        "``work.play_message``; ``at``: when the INVITE left for ``placed``, when the first sound went out for "
        "``message``, on the worker's clock).",
    ),
}

COMMANDS: Final = frozenset(name for name, (direction, _, _) in MESSAGES.items() if direction == "in")

#: The commands each role's sender may give the dispatcher; the role is read from the command's topic, which the
#: broker's ACL ties to the sender's user name. Workers give none: they report on ``from/worker/<name>/event``.
COMMAND_ROLES: Final[dict[str, frozenset[str]]] = {
    "backend": COMMANDS,
    "dispatcher": COMMANDS,
    "monitor": frozenset({"events.replay"}),
    "worker": frozenset(),
}


def _check(name: str, spec: F, value: Any) -> Any:
    if value is None:
        if spec.null:
            return None
        raise SchemaError("may not be null", path=name)
    kind = spec.kind
    if kind in ("str", "ident", "identity"):
        if not isinstance(value, str):
            raise SchemaError("must be a string", path=name)
        if len(value) > MAX_STRING:
            raise SchemaError(f"longer than {MAX_STRING} characters", path=name)
        if kind == "ident" and not is_ident(value):
            raise SchemaError("must be 1-128 of A-Z a-z 0-9 _ . : @ -", path=name)
        if kind == "identity" and not is_identity(value):
            raise SchemaError(f"must be role/name, role one of {', '.join(ROLES)}", path=name)
        if spec.choices is not None and value not in spec.choices:
            raise SchemaError(f"must be one of {', '.join(spec.choices)}", path=name)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise SchemaError("must be true or false", path=name)
        return value
    if kind in ("int", "num"):
        # bool is an int in Python but not a number in JSON.
        ok = isinstance(value, int) if kind == "int" else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            raise SchemaError("must be an integer" if kind == "int" else "must be a number", path=name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError("must be finite", path=name)
        if spec.lo is not None and value < spec.lo:
            raise SchemaError(f"must be >= {spec.lo:g}", path=name)
        if spec.hi is not None and value > spec.hi:
            raise SchemaError(f"must be <= {spec.hi:g}", path=name)
        return value
    if kind == "obj":
        if not isinstance(value, dict):
            raise SchemaError("must be an object", path=name)
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 128:
                raise SchemaError("keys must be short strings", path=name)
            if item is not None and not isinstance(item, str | int | float | bool):
                raise SchemaError("values must be scalars", path=f"{name}.{key}")
        return value
    return value  # "any": already valid JSON


@dataclass(frozen=True, slots=True)
class Message:
    """A validated message. ``data`` is a plain dict of JSON values."""

    type: str
    data: Mapping[str, Any]
    campaign: str
    source: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)
    v: int = SCHEMA_VERSION
    seq: int | None = None  # the sender's outbox sequence number (events and state): what a replay resumes from

    def to_json(self) -> bytes:
        return encode(self)


def validate_data(type_: str, data: Any) -> dict[str, Any]:
    """Check ``data`` against the field table of ``type_`` and return it as a fresh dict."""
    entry = MESSAGES.get(type_)
    if entry is None:
        raise SchemaError(f"unknown message type {type_!r}", code="unknown_type", path="type")
    if not isinstance(data, dict):
        raise SchemaError("must be an object", path="data")
    fields = entry[1]
    unknown = set(data) - set(fields)
    if unknown:
        raise SchemaError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}", path="data")
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.required:
                raise SchemaError("is required", path=f"data.{name}")
            continue
        out[name] = _check(f"data.{name}", spec, data[name])
    return out


def make(type_: str, campaign: str, source: str, /, **data: Any) -> Message:
    """Build and validate a message (raises :class:`SchemaError` on a programming mistake, never sends junk)."""
    return Message(type_, validate_data(type_, data), campaign, source)


def encode(message: Message) -> bytes:
    doc = {
        "v": message.v,
        "id": message.id,
        "type": message.type,
        "campaign": message.campaign,
        "source": message.source,
        "ts": message.ts,
        "data": dict(message.data),
    }
    if message.seq is not None:
        doc["seq"] = message.seq
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def decode(payload: bytes | bytearray | str, *, expect: frozenset[str] | None = None) -> Message:
    """Parse and validate one message; ``expect`` restricts the accepted types (e.g. :data:`COMMANDS`)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message larger than {MAX_MESSAGE_BYTES} bytes", code="too_large")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"not JSON: {exc}", code="bad_json") from None
    if not isinstance(doc, dict):
        raise SchemaError("a message must be a JSON object", code="bad_json")
    v = doc.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise SchemaError("missing schema version", path="v")
    if v != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema version {v} (this dialer speaks {SCHEMA_VERSION})", code="version")
    unknown = set(doc) - {"v", "id", "type", "campaign", "source", "ts", "data", "seq"}
    if unknown:
        raise SchemaError(f"unknown envelope field(s) {', '.join(sorted(map(str, unknown)))}")
    for name in ("id", "campaign"):
        _check(name, F("ident"), doc.get(name))
    _check("source", F("identity"), doc.get("source"))
    seq = _check("seq", F("int", null=True, lo=1), doc.get("seq"))
    type_ = _check("type", F("str"), doc.get("type"))
    if type_ not in MESSAGES:
        raise SchemaError(f"unknown message type {type_!r}", code="unknown_type", path="type")
    if expect is not None and type_ not in expect:
        raise SchemaError(f"{type_!r} is not accepted here", code="unknown_type", path="type")
    ts = _check("ts", F("num"), doc.get("ts"))
    data = validate_data(type_, doc.get("data", {}))
    return Message(type_, data, doc["campaign"], doc["source"], id=doc["id"], ts=float(ts), v=v, seq=seq)


_JSON_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "maxLength": MAX_STRING},
    # ECMA-262 patterns (JSON Schema's dialect): there "$" without the multiline flag is the very end.
    "ident": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"},
    "identity": {"type": "string", "pattern": "^(dispatcher|worker|backend|monitor)/[A-Za-z0-9_.:@-]{1,128}$"},
    "int": {"type": "integer"},
    "num": {"type": "number"},
    "bool": {"type": "boolean"},
    "obj": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
    "any": {},
}


def json_schema(type_: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message type, envelope included, for consumers in any language."""
    direction, fields, doc = MESSAGES[type_]
    props: dict[str, Any] = {}
    for name, spec in fields.items():
        prop = dict(_JSON_TYPES[spec.kind])
        if spec.choices is not None:
            prop["enum"] = list(spec.choices)
        if spec.lo is not None:
            prop["minimum"] = spec.lo
        if spec.hi is not None:
            prop["maximum"] = spec.hi
        if spec.null:
            prop = {"anyOf": [prop, {"type": "null"}]}
        props[name] = prop
    ident = _JSON_TYPES["ident"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": type_,
        "description": doc,
        "x-direction": direction,
        "type": "object",
        "additionalProperties": False,
        "required": ["v", "id", "type", "campaign", "source", "ts", "data"],
        "properties": {
            "v": {"const": SCHEMA_VERSION},
            "id": ident,
            "type": {"const": type_},
            "campaign": ident,
            "source": _JSON_TYPES["identity"],
            "ts": {"type": "number"},
            "seq": {"type": "integer", "minimum": 1},
            "data": {
                "type": "object",
                "additionalProperties": False,
                "required": [n for n, s in fields.items() if s.required],
                "properties": props,
            },
        },
    }
