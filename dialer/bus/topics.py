"""The topic tree, per campaign, under a versioned root (``dialer/v1`` by default).

Every client on the bus has an identity ``<role>/<name>`` (roles: dispatcher, worker, backend, monitor), which is
its MQTT user name and client id. What a client sends goes under ``from/<its identity>``, what is sent to it under
``to/<its identity>``::

    dialer/v1/<campaign>/event/<category>/<name>                 dispatcher -> all    call lifecycle, agents, pacing
    dialer/v1/<campaign>/state/stats                             dispatcher -> all    campaign.stats, retained
    dialer/v1/<campaign>/state/abandonment                       dispatcher -> all    campaign.abandonment, retained
    dialer/v1/<campaign>/from/<role>/<name>/status               own status, retained, last will, heartbeat
    dialer/v1/<campaign>/from/<role>/<name>/cmd/<category>/<x>   commands (agent.login -> cmd/agent/login)
    dialer/v1/<campaign>/from/worker/<name>/event                a worker's reports on its calls
    dialer/v1/<campaign>/to/<role>/<name>/reply                  the answer to each of that sender's commands
    dialer/v1/<campaign>/to/<role>/<name>/replay                 events sent again on request (events.replay)
    dialer/v1/<campaign>/to/worker/<name>/cmd                    dial offers, hang-up, connect, message for a worker

Why the identity is in the topic: the broker's ACL (``pattern write dialer/v1/+/from/%u/#``,
``pattern read dialer/v1/+/to/%u/#``; see ``docs/deploy/``) lets a client publish only under its own user name
and read only its own inbox, so a receiver knows who sent a message from the topic alone, and a forged ``source``
in the body proves nothing. The role is part of the user name, so it is part of what the broker checks: a backend
cannot publish where a worker's reports go. The version sits in the root so a v2 dialer can run beside v1
consumers during a migration. Every identifier placed in a topic is matched whole against
:data:`~dialer.bus.schema.IDENT_RE`, so no client can inject a wildcard, a level separator or a newline.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialer.bus.schema import MESSAGES, ROLES, SchemaError, is_ident, is_identity

DEFAULT_ROOT = "dialer/v1"
RETAINED = {"campaign.stats": "state/stats", "campaign.abandonment": "state/abandonment"}


def check_ident(value: str, what: str) -> str:
    if not is_ident(value):
        raise SchemaError(f"{what} {value!r} must be 1-128 of A-Z a-z 0-9 _ . : @ -", path=what)
    return value


def check_identity(value: str, what: str = "identity", *, role: str | None = None) -> str:
    """``value`` if it is ``role/name`` (and of ``role`` when given), else :class:`SchemaError`."""
    if not is_identity(value):
        raise SchemaError(f"{what} {value!r} must be role/name, role one of {', '.join(ROLES)}", path=what)
    if role is not None and not value.startswith(role + "/"):
        raise SchemaError(f"{what} {value!r} is not a {role}", path=what)
    return value


def _check_root(root: str) -> str:
    parts = root.split("/")
    if not root or any(not p or "+" in p or "#" in p for p in parts) or root.startswith("$"):
        raise SchemaError(f"bad topic root {root!r}", path="root")
    return root


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names and filters for one campaign."""

    campaign: str
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_ident(self.campaign, "campaign")
        _check_root(self.root)

    @property
    def base(self) -> str:
        return f"{self.root}/{self.campaign}"

    # -- the dispatcher's public stream ------------------------------------------------------------------

    def event(self, type_: str) -> str:
        """Where an outgoing message of ``type_`` goes (retained state types have their own place)."""
        if type_ in RETAINED:
            return f"{self.base}/{RETAINED[type_]}"
        return f"{self.base}/event/{type_.replace('.', '/')}"

    @property
    def events(self) -> str:
        """Filter for every event of the campaign."""
        return f"{self.base}/event/#"

    # -- what a sender publishes under its own identity ------------------------------------------------

    def status(self, identity: str) -> str:
        return f"{self.base}/from/{check_identity(identity, 'source')}/status"

    def statuses(self, role: str = "+") -> str:
        """Filter for the statuses of every identity of ``role`` (``+``: all roles)."""
        return f"{self.base}/from/{role}/+/status"

    def command(self, type_: str, sender: str) -> str:
        """Where ``sender`` publishes a command of ``type_``."""
        if type_ not in MESSAGES or MESSAGES[type_][0] != "in":
            raise SchemaError(f"{type_!r} is not a command", path="type")
        return f"{self.base}/from/{check_identity(sender, 'source')}/cmd/{type_.replace('.', '/')}"

    @property
    def commands(self) -> str:
        """Filter for every command of the campaign, from any sender."""
        return f"{self.base}/from/+/+/cmd/#"

    def worker_event(self, worker: str) -> str:
        return f"{self.base}/from/{check_identity(worker, 'worker', role='worker')}/event"

    @property
    def worker_events(self) -> str:
        return f"{self.base}/from/worker/+/event"

    # -- what is sent to one identity ------------------------------------------------------------------

    def reply(self, identity: str) -> str:
        return f"{self.base}/to/{check_identity(identity, 'source')}/reply"

    def replay(self, identity: str) -> str:
        return f"{self.base}/to/{check_identity(identity, 'source')}/replay"

    def worker_cmd(self, worker: str) -> str:
        return f"{self.base}/to/{check_identity(worker, 'worker', role='worker')}/cmd"

    # -- reading a topic -------------------------------------------------------------------------------

    def sender(self, topic: str) -> str | None:
        """The identity a ``from/<role>/<name>/…`` topic belongs to (what the broker authenticated), or ``None``."""
        prefix = f"{self.base}/from/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) < 3:
            return None
        identity = f"{parts[0]}/{parts[1]}"
        return identity if is_identity(identity) else None

    def command_type(self, topic: str) -> str | None:
        """The command type a ``from/<role>/<name>/cmd/…`` topic names, or ``None`` if it names none."""
        sender = self.sender(topic)
        if sender is None:
            return None
        prefix = f"{self.base}/from/{sender}/cmd/"
        if not topic.startswith(prefix):
            return None
        return topic[len(prefix) :].replace("/", ".")
