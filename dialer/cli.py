"""The ``dialer`` command.

Each subcommand lives in its own module under :mod:`dialer.commands` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed arguments and returning an exit status. Modules
are imported only to build the parser; their heavy dependencies load when the command runs.

Errors the user can fix (a bad scenario key, a missing file) print one line and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except DialerError as exc:
        print(f"dialer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dialer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
