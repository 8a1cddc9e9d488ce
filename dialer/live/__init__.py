"""Live runtimes: the engine core driven by asyncio and the wall clock."""

from dialer.live.runtime import AsyncRuntime

__all__ = ["AsyncRuntime"]
