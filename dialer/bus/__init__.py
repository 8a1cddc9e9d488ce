"""The event bus: the dialer's events out and commands in, as versioned JSON over MQTT.

Schema, topics and the outbox are plain standard library; the MQTT parts (``MqttBus``, ``CampaignBus``, the
worker protocol) import aiomqtt, so they load only when first used and ``import dialer.bus`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dialer.bus.outbox import Deduplicator, Outbox, OutboxError
from dialer.bus.schema import COMMANDS, MESSAGES, SCHEMA_VERSION, Message, SchemaError, decode, encode, make
from dialer.bus.topics import Topics

if TYPE_CHECKING:
    from dialer.bus.bridge import CampaignBus
    from dialer.bus.client import BusConfig, BusError, MqttBus, TlsConfig
    from dialer.distributed.dial_worker import DialWorker, StandInPlacer
    from dialer.distributed.dial_worker import DialWorker as Worker
    from dialer.distributed.dispatcher import Dispatcher
    from dialer.distributed.sip_placer import SipPlacer

_LAZY = {
    "BusConfig": "dialer.bus.client",
    "BusError": "dialer.bus.client",
    "MqttBus": "dialer.bus.client",
    "TlsConfig": "dialer.bus.client",
    "CampaignBus": "dialer.bus.bridge",
    "Dispatcher": "dialer.distributed.dispatcher",
    "DialWorker": "dialer.distributed.dial_worker",
    "SipPlacer": "dialer.distributed.sip_placer",
    "StandInPlacer": "dialer.distributed.dial_worker",
    "Worker": "dialer.bus.worker",  # the old name of DialWorker
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dialer.bus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "COMMANDS",
    "MESSAGES",
    "SCHEMA_VERSION",
    "BusConfig",
    "BusError",
    "CampaignBus",
    "Deduplicator",
    "DialWorker",
    "Dispatcher",
    "Message",
    "MqttBus",
    "Outbox",
    "OutboxError",
    "SchemaError",
    "SipPlacer",
    "StandInPlacer",
    "TlsConfig",
    "Topics",
    "Worker",
    "decode",
    "encode",
    "make",
]
