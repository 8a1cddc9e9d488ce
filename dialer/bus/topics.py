"""The topic tree, per campaign, under a versioned root (``dialer/v1`` by default).

::

    dialer/v1/<campaign>/event/<category>/<name>   out   call lifecycle, agent state, pacing (QoS 1)
    dialer/v1/<campaign>/state/stats               out   campaign.stats, retained
    dialer/v1/<campaign>/state/abandonment         out   campaign.abandonment, retained
    dialer/v1/<campaign>/status/<source>           out   dialer.status of a dialer or worker, retained, last will
    dialer/v1/<campaign>/cmd/<category>/<name>     in    commands (agent.login -> cmd/agent/login)
    dialer/v1/<campaign>/reply/<source>            out   the answer to each command from <source>
    dialer/v1/<campaign>/work/dial                 work  dial requests, taken by one worker (shared subscription)
    dialer/v1/<campaign>/worker/<id>/cmd           work  hangup / connect / message for the worker owning a call
    dialer/v1/<campaign>/worker/<id>/event         work  what happened to the worker's calls

The version sits in the root so a v2 dialer can run beside v1 consumers during a migration. Topic per message
type (rather than one topic with the type in the payload) lets a broker ACL give, say, agent desktops the right to
publish ``cmd/agent/#`` and nothing else. Every identifier placed in a topic is checked against
:data:`~dialer.bus.schema.IDENT_RE`, so no client can inject a wildcard or a level separator.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialer.bus.schema import IDENT_RE, MESSAGES, SchemaError

DEFAULT_ROOT = "dialer/v1"
RETAINED = {"campaign.stats": "state/stats", "campaign.abandonment": "state/abandonment"}


def check_ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not IDENT_RE.match(value):
        raise SchemaError(f"{what} {value!r} must be 1-128 of A-Z a-z 0-9 _ . : @ -", path=what)
    return value


def _check_root(root: str) -> str:
    parts = root.split("/")
    if not root or any(not p or "+" in p or "#" in p for p in parts) or root.startswith("$"):
        raise SchemaError(f"bad topic root {root!r}", path="root")
    return root


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names for one campaign."""

    campaign: str
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_ident(self.campaign, "campaign")
        _check_root(self.root)

    @property
    def base(self) -> str:
        return f"{self.root}/{self.campaign}"

    def event(self, type_: str) -> str:
        """Where an outgoing message of ``type_`` goes (retained state types have their own place)."""
        if type_ in RETAINED:
            return f"{self.base}/{RETAINED[type_]}"
        return f"{self.base}/event/{type_.replace('.', '/')}"

    @property
    def events(self) -> str:
        """Filter for every event of the campaign."""
        return f"{self.base}/event/#"

    def status(self, source: str) -> str:
        return f"{self.base}/status/{check_ident(source, 'source')}"

    def command(self, type_: str) -> str:
        if type_ not in MESSAGES or MESSAGES[type_][0] != "in":
            raise SchemaError(f"{type_!r} is not a command", path="type")
        return f"{self.base}/cmd/{type_.replace('.', '/')}"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/#"

    def command_type(self, topic: str) -> str | None:
        """The command type a topic names, or ``None`` if it is not under ``cmd/``."""
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix):
            return None
        return topic[len(prefix) :].replace("/", ".")

    def reply(self, source: str) -> str:
        return f"{self.base}/reply/{check_ident(source, 'source')}"

    @property
    def dial(self) -> str:
        return f"{self.base}/work/dial"

    def dial_shared(self, group: str = "workers") -> str:
        """The MQTT 5 shared subscription that spreads dial requests over a group of workers."""
        return f"$share/{check_ident(group, 'group')}/{self.dial}"

    def worker_cmd(self, worker_id: str) -> str:
        return f"{self.base}/worker/{check_ident(worker_id, 'worker_id')}/cmd"

    def worker_event(self, worker_id: str) -> str:
        return f"{self.base}/worker/{check_ident(worker_id, 'worker_id')}/event"

    @property
    def worker_events(self) -> str:
        return f"{self.base}/worker/+/event"

    @property
    def statuses(self) -> str:
        return f"{self.base}/status/+"
