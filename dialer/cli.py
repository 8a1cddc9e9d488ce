"""The ``dialer`` command.

Each subcommand lives in its own module under :mod:`dialer.commands` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed arguments and returning an exit status. Modules
are imported only to build the parser; their heavy dependencies load when the command runs.

Errors the user can fix (a bad scenario key, a missing file) print one line and exit with status 2; no traceback.

The long-running commands (:data:`LOGGING_COMMANDS`) take ``--log-format {text,json}`` and ``--log-level``, added
here to each of their parsers and applied here before the command runs (:mod:`dialer.logformat`), so the commands
need no code for it. With ``--log-format json`` every log record is one JSON object per line on stderr, and so
are this module's own error lines (an error the user can fix, an interruption, a crash with its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from dialer import logformat
from dialer.errors import DialerError

COMMAND_MODULES: tuple[str, ...] = (
    "dialer.commands.simulate",
    "dialer.commands.sweep",
    "dialer.commands.run",
    "dialer.commands.report",
    "dialer.commands.purge",
    "dialer.commands.worker",
    "dialer.commands.dispatch",
    "dialer.commands.broker_config",
)

# The commands that run long enough to be watched through their logs: they take --log-format and --log-level.
LOGGING_COMMANDS: tuple[str, ...] = ("run", "dispatch", "worker", "simulate", "sweep")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dialer", description="Predictive dialer: simulate, tune and run outbound campaigns.")
    from dialer import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command is not part of this build yet
                continue
            raise
        module.register(sub)
    for name in LOGGING_COMMANDS:
        if name in sub.choices:
            logformat.add_options(sub.choices[name])
    return parser


def _setup_logging(args: argparse.Namespace) -> bool:
    """Apply ``--log-format`` and ``--log-level``; True when records (and error lines) are to be JSON.

    Text with no ``--log-level`` leaves logging to the command, as before (``-v`` where it has one). Otherwise
    the root logger gets the one handler, at ``--log-level``, or info with ``-v``, or warning; a command's own
    ``logging.basicConfig`` then changes nothing."""
    fmt = getattr(args, "log_format", None)
    if fmt is None:
        return False
    level = args.log_level or ("info" if getattr(args, "verbose", False) else "warning")
    if fmt == "text" and args.log_level is None:
        logformat.remove_handler()  # one left by an earlier main() in this process
        return False
    logformat.configure_logging(fmt, level)
    return fmt == "json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not _setup_logging(args):
        return _run(args, as_json=False)
    # JSON: what the command prints on stderr (notes, the status line) becomes records too, one per line; the
    # handler keeps writing to the real stderr. They are shown at the default level, and left out at --log-level error.
    real_stderr = sys.stderr
    console = logformat.ConsoleToLog()
    level = logging.getLogger().level
    logging.getLogger("dialer.console").setLevel(logging.INFO if level <= logging.WARNING else level)
    sys.stderr = console
    try:
        return _run(args, as_json=True)
    finally:
        sys.stderr = real_stderr
        console.close()


def _run(args: argparse.Namespace, *, as_json: bool) -> int:
    log = logging.getLogger("dialer")
    try:
        return int(args.func(args))
    except DialerError as exc:
        if as_json:
            log.error("dialer: error: %s", exc, extra={"exit_status": 2})
        else:
            print(f"dialer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if as_json:
            log.warning("dialer: interrupted", extra={"exit_status": 130})
        else:
            print("dialer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception:
        if not as_json:
            raise
        log.critical("dialer: crashed", exc_info=True, extra={"exit_status": 1})  # the traceback, as one record
        return 1


if __name__ == "__main__":
    sys.exit(main())
