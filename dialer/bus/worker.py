"""Moved: the dispatcher is :mod:`dialer.distributed.dispatcher`, the remote dial worker
:mod:`dialer.distributed.dial_worker`. This module keeps old imports working."""

from dialer.distributed.dial_worker import CallPlacer, DialRequest, DialWorker, Report, StandInPlacer
from dialer.distributed.dispatcher import Dispatcher

Worker = DialWorker  # the old name

__all__ = ["CallPlacer", "DialRequest", "DialWorker", "Dispatcher", "Report", "StandInPlacer", "Worker"]
