"""``--scheduler ADDRESS``: run a simulation's replications on a Dask cluster instead of the local process pool.

Why only an executor: the simulator already takes any ``concurrent.futures.Executor`` and puts results back in
replication order, and every replication draws from streams seeded by ``(seed, i)``; so a cluster gives exactly the
figures the local pool gives for the same seed, whatever the number of machines. ``dask.distributed`` (the
``[dask]`` extra) is imported only when a scheduler is named.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor

from dialer.errors import ConfigError


def add_option(parser: object) -> None:
    parser.add_argument(  # type: ignore[attr-defined]
        "--scheduler",
        metavar="ADDRESS",
        help="run replications on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786; [dask] extra)",
    )


@contextlib.contextmanager
def executor(address: str | None) -> Iterator[Executor | None]:
    """The cluster's executor for ``address`` (``None``: the local pool), closed on exit."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler", "needs dask.distributed: pip install 'predictive-dialer[dask]'") from None
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise ConfigError("--scheduler", f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        yield client.get_executor()
    finally:
        client.close()
