"""Log records as text or as JSON lines, for the long-running commands' ``--log-format``.

``--log-format json`` writes one JSON object per line on stderr, which log shippers (Loki, Fluent Bit, Vector,
journald's ``--output=json`` consumers) read without a parsing rule::

    {"ts": "2026-12-05T02:31:07.412Z", "level": "WARNING", "logger": "dialer.live", "message": "trunk silent",
     "call_id": 17}

Keys: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message`` (the formatted message), then any
structured extras the call passed (``log.warning("...", extra={"call_id": 17})``), and ``exception`` /
``stack`` with the traceback's text when there is one. Values JSON cannot carry are written as their ``repr``.

Only the standard library is used (``logging`` and ``json``): the formatter is thirty lines, and a dependency
(python-json-logger, structlog) would buy nothing the commands use.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import sys
from typing import Any, TextIO

FORMATS: tuple[str, ...] = ("text", "json")
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # what the commands have always written

# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is written as a key.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``ts``, ``level``, ``logger``, ``message``, the record's extras,
    and ``exception`` / ``stack`` when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=repr, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs, so a second call replaces it instead of adding another."""


def configure_logging(fmt: str = "text", level: int | str = logging.WARNING, stream: TextIO | None = None) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stderr) as ``fmt`` (``text`` or
    ``json``, replacing the handler an earlier call installed (other handlers, such as a test's capture, stay);
    with ``json``, Python's warnings are logged too (logger ``py.warnings``) instead of printed as text."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    remove_handler()
    root = logging.getLogger()
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(fmt == "json")


class ConsoleToLog(io.TextIOBase):
    """Stands in for ``sys.stderr`` under ``--log-format json``: each line a command prints there (its notes, the
    status line ``dialer run`` redraws with ``\\r``) becomes a record of logger ``dialer.console`` at INFO, so
    stderr carries nothing but JSON lines. The records are written to the stream the handler was given, never
    back through this object."""

    def __init__(self, logger: str = "dialer.console") -> None:
        super().__init__()
        self._log = logging.getLogger(logger)
        self._pending = ""
        self._busy = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._busy:  # logging reporting its own failure: drop it rather than loop
            return len(text)
        self._pending += text
        *lines, self._pending = re.split(r"[\r\n]", self._pending)
        self._emit(lines)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Log what is left of an unfinished line."""
        self._emit([self._pending])
        self._pending = ""
        super().close()

    def _emit(self, lines: list[str]) -> None:
        self._busy = True
        try:
            for line in lines:
                if line.strip():
                    self._log.info(line.rstrip())
        finally:
            self._busy = False


def remove_handler() -> None:
    """Take out the handler :func:`configure_logging` installed, if any (and stop capturing warnings)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
            old.close()
    logging.captureWarnings(False)


def add_options(parser: Any) -> None:
    """``--log-format`` and ``--log-level`` on a command's parser."""
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="log records as text (default) or as JSON, one object per line on stderr (ts, level, logger, message, "
        "extras, exception)",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        help="least severe level logged (default: warning; info with -v where a command has it)",
    )
