"""Subcommands of the ``dialer`` command, one module each (see :mod:`dialer.cli`)."""
