"""The Python example in docs/embedding.md runs, against a real broker, and prints what the page says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mqtt_broker import Broker

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "embedding.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_embedding_example_runs_and_prints_the_documented_output(broker: Broker, tmp_path: Path) -> None:
    example = _blocks("python")[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {**os.environ, "MQTT_PORT": str(broker.port), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    documented = re.search(r"It prints:\n\n```\n(.*?)```", DOC.read_text(), flags=re.S)
    assert documented is not None
    assert proc.stdout.split() == documented.group(1).split()


def test_documented_message_types_match_the_schema() -> None:
    from dialer.bus.schema import MESSAGES

    text = DOC.read_text()
    for type_ in MESSAGES:
        assert f"`{type_}`" in text, type_
