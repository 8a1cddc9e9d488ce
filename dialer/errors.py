"""The library's own exception types.

Every failure the library raises on purpose derives from :class:`DialerError`, so an embedding backend can
catch one type. Like h11, errors say whose fault they are: :class:`InvalidTransition` means the caller fed the
engine an event that makes no sense in the current state (a runtime bug or a misbehaving peer), and the engine's
state is unchanged; :class:`ConfigError` means a configuration or scenario value is wrong and names the key.
"""

from __future__ import annotations


class DialerError(Exception):
    """Base class of every error the library raises deliberately."""


class InvalidTransition(DialerError):
    """An event that is not legal in the current state; the engine state is left exactly as it was."""


class ConfigError(DialerError, ValueError):
    """A configuration value is missing, of the wrong type or out of range.

    ``key`` is the dotted path of the offending value (``calls.talk_time.mean``) so command-line tools can print
    one line that tells the user what to fix.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)
