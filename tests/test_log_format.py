"""``--log-format json`` (issue 15, item 6): one JSON object per stderr line, with ts, level, logger, message,
the record's extras and the exception's text; a bad value is argparse's exit 2; text stays what it was."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from dialer_testkit import REPO

from dialer import logformat
from dialer.cli import LOGGING_COMMANDS, _setup_logging, build_parser, main

SMALL = ["--agents", "3", "--hours", "0.25", "--replications", "2"]

# A campaign dispatch accepts and prints two notes about (wrap_up, no registry) before it finds no broker.
CAMPAIGN = """
[campaign]
id = "lf"
abandon_message = "abandon.wav"
wrap_up = 5
purpose = "survey"
policy = "progressive"

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[hours.JP]
weekday = "00:00-24:00"
saturday = "00:00-24:00"
sunday = "00:00-24:00"

[trunk]
caller_id = "+12127362000"

[agents]
a1 = "sip:a1@127.0.0.1:5062"
"""


def _records(stderr: str) -> list[dict[str, object]]:
    lines = stderr.splitlines()
    assert lines, "nothing logged"
    records = [json.loads(line) for line in lines]  # every line, not some: a shipper parses them all
    for rec in records:
        assert {"ts", "level", "logger", "message"} <= set(rec), rec
        ts = dt.datetime.fromisoformat(str(rec["ts"]).replace("Z", "+00:00"))
        assert ts.utcoffset() == dt.timedelta(0)
    return records


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    logformat.remove_handler()
    root.setLevel(level)


def test_simulate_logs_json_lines_on_stderr() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "simulate",
            *SMALL,
            "--json",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stderr)
    assert [r["logger"] for r in records] == ["dialer.simulate", "dialer.simulate"]
    assert {r["level"] for r in records} == {"INFO"}
    start, done = records
    assert start["replications"] == 2 and start["policy"] == "predictive"  # extras are keys of their own
    assert isinstance(done["wall_seconds"], float) and "simulated 2 replication(s)" in str(done["message"])
    json.loads(proc.stdout)  # the report itself is untouched on stdout


def test_an_error_is_a_json_record_too_and_still_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "simulate", "--agents", "0", "--log-format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (record,) = _records(proc.stderr)
    assert record["level"] == "ERROR" and record["logger"] == "dialer" and record["exit_status"] == 2
    assert "--agents" in str(record["message"]) and "Traceback" not in proc.stderr


def test_dispatch_notes_and_its_error_are_json_lines(tmp_path: Path) -> None:
    (tmp_path / "campaign.toml").write_text(CAMPAIGN, encoding="utf-8")
    (tmp_path / "leads.csv").write_text("lead_id,phone\nL1,+81312342000\n", encoding="utf-8")
    with wave.open(str(tmp_path / "abandon.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 8000)
    argv = ["dispatch", str(tmp_path / "campaign.toml"), "--broker-port", "1", "--insecure", "--log-format", "json"]
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2  # no broker on port 1
    records = _records(proc.stderr)
    notes = [r for r in records if r["logger"] == "dialer.console"]
    assert any("campaign.wrap_up is not used" in str(r["message"]) for r in notes), records
    assert records[-1]["level"] == "ERROR" and "--broker" in str(records[-1]["message"])


def test_console_lines_become_records_one_per_line(restore_logging: None) -> None:
    buf = io.StringIO()
    logformat.configure_logging("json", "warning", stream=buf)
    logging.getLogger("dialer.console").setLevel(logging.INFO)
    console = logformat.ConsoleToLog()
    print("note: two\nlines", file=console)
    console.write("\rcalls   1 (ringing 1)   ")
    console.write("\rcalls   2 (ringing 2)   ")  # dialer run's status line, redrawn in place
    console.close()
    messages = [json.loads(line)["message"] for line in buf.getvalue().splitlines()]
    assert messages == ["note: two", "lines", "calls   1 (ringing 1)", "calls   2 (ringing 2)"]


def test_main_puts_stderr_back(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    before = sys.stderr
    assert main(["simulate", *SMALL, "--json", "--log-format", "json"]) == 0
    assert sys.stderr is before
    assert capsys.readouterr().err == ""  # nothing at warning and above


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate"],
        ["sweep", "s.toml"],
        ["run", "c.toml"],
        ["dispatch", "c.toml"],
        ["worker", "--campaign", "spring"],
    ],
)
def test_a_bad_log_format_is_refused_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--log-format", "yaml"])
    assert exc.value.code == 2
    assert "--log-format: invalid choice: 'yaml'" in capsys.readouterr().err


def test_every_long_running_command_takes_the_options() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(LOGGING_COMMANDS) <= set(sub.choices)
    for name in LOGGING_COMMANDS:
        options = {s for a in sub.choices[name]._actions for s in a.option_strings}
        assert {"--log-format", "--log-level"} <= options, name


def test_formatter_writes_extras_and_the_exception(restore_logging: None) -> None:
    buf = io.StringIO()
    logformat.configure_logging("json", "debug", stream=buf)
    log = logging.getLogger("dialer.test")
    log.debug("dial %d", 7, extra={"call_id": 7, "lead": object(), "nom": "Zoë"})
    try:
        raise RuntimeError("trunk gone")
    except RuntimeError:
        log.exception("placing failed")
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["message"] == "dial 7" and first["call_id"] == 7 and first["level"] == "DEBUG"
    assert str(first["lead"]).startswith("<object object")  # what JSON cannot carry is its repr
    assert first["nom"] == "Zoë" and "exception" not in first
    assert second["level"] == "ERROR" and "RuntimeError: trunk gone" in second["exception"]
    assert "Traceback" in second["exception"]
    # configuring again replaces the handler instead of adding a second one
    logformat.configure_logging("json", "info", stream=buf)
    assert sum(isinstance(h, logformat._Handler) for h in logging.getLogger().handlers) == 1


def test_verbose_means_info_and_text_is_left_to_the_command(restore_logging: None) -> None:
    ns = argparse.Namespace(log_format="json", log_level=None, verbose=True)
    assert _setup_logging(ns) is True
    assert logging.getLogger().level == logging.INFO
    ns = argparse.Namespace(log_format="json", log_level="error", verbose=True)
    _setup_logging(ns)
    assert logging.getLogger().level == logging.ERROR
    ns = argparse.Namespace(log_format="text", log_level=None, verbose=False)
    assert _setup_logging(ns) is False  # the command's own basicConfig, as before
    assert not any(isinstance(h, logformat._Handler) for h in logging.getLogger().handlers)
    with pytest.raises(ValueError, match="log format"):
        logformat.configure_logging("xml")
