"""The Python examples in the README and docs run as written (docs by example only help if the examples work)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/engine.md", "docs/simulation.md"]
# Examples that need a service this machine does not run (a Dask scheduler) are not executed.
NEEDS_SERVICE = ("from distributed import",)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for name in DOCS:
        text = (ROOT / name).read_text(encoding="utf-8")
        for i, match in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            code = match.group(1)
            if not any(marker in code for marker in NEEDS_SERVICE):
                found.append((name, i, code))
    return found


@pytest.mark.parametrize(("doc", "index", "code"), _blocks(), ids=lambda v: str(v)[:20] if isinstance(v, str) else v)
def test_example_runs(doc: str, index: int, code: str) -> None:
    code = code.replace("replications=20", "replications=2, hours=0.5")  # same call, smaller run
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(code, f"{doc}[{index}]", "exec"), namespace)


def test_there_are_examples() -> None:
    assert len(_blocks()) >= 4
