"""Roles over the bus: the dispatcher next to the engine, and the remote dial workers that place its calls.

:mod:`dialer.bus` is the transport (client, schema, topics, outbox); this package is what runs on it. Modules
import aiomqtt, so import them directly (``from dialer.distributed.dispatcher import Dispatcher``).
"""
