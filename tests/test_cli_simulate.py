"""``dialer simulate`` as a user runs it: in a subprocess, through ``python -m dialer.cli`` and the installed
console script. Bad input must end in exactly one line on stderr and exit status 2, never a traceback; ``--json``
must carry the pooled figures the issue lists as numbers.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from dialer_testkit import REPO, dialer_command

from dialer.cli import main

MODULE = [sys.executable, "-m", "dialer.cli"]
SMALL = ["--agents", "4", "--hours", "0.5", "--replications", "2"]
REQUIRED_NUMBERS = (
    "agent_occupancy",
    "talk_fraction",
    "abandon_rate",
    "dials",
    "live_answers",
    "abandoned",
    "connects_per_agent_hour",
)


def run(
    args: list[str], *, cmd: list[str] = MODULE, cwd: Path = REPO, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


def assert_clean_usage_error(proc: subprocess.CompletedProcess[str], must_mention: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dialer") and "error" in lines[0]
    assert must_mention in lines[0], lines[0]
    assert proc.stdout == ""


BAD_FILES: list[tuple[str, str, str]] = [
    ("malformed", "[campaign\nagents = 3\n", "malformed TOML"),
    ("unknown-dist", '[calls]\ntalk_time = { dist = "weibull", mean = 3 }\n', "calls.talk_time.dist"),
    ("unknown-policy", '[campaign]\npolicy = "telepathic"\n', "campaign.policy"),
    ("negative-time", '[calls]\ntalk_time = { dist = "exponential", mean = -5 }\n', "calls.talk_time.mean"),
    (
        "probabilities-over-one",
        "[calls]\nlive_answer_probability = 0.7\nmachine_probability = 0.4\n",
        "calls.busy_probability",
    ),
    ("unknown-key", "[campaign]\nagentz = 3\n", "campaign.agentz"),
    ("unknown-table", "[dialplan]\nx = 1\n", "dialplan"),
]


@pytest.mark.parametrize(("text", "key"), [(t, k) for _, t, k in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_bad_scenario_file_exits_2_with_one_line(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    assert_clean_usage_error(run(["simulate", str(path)]), key)


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["--policy", "telepathic"], "--policy"),
        (["--agents", "0"], "--agents"),
        (["--hours", "-1"], "--hours"),
        (["--replications", "0"], "--replications"),
        (["--target", "2"], "--target"),
        (["--workers", "0"], "--workers"),
        (["--agents", "many"], "--agents"),
        (["--no-such-option"], "--no-such-option"),
        (["/nonexistent/scenario.toml"], "cannot read scenario"),
        (["--plot", "/nonexistent/dir/report.png"], "--plot"),
        (["--plot", "report.notanimage"], "--plot"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], mention: str, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the subprocess cases above and below prove the same path end to end), to keep the suite fast."""
    try:
        status = main(["simulate", *args])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert_clean_usage_error(subprocess.CompletedProcess(args, status, out, err), mention)


def test_bad_option_through_the_console_script() -> None:
    assert_clean_usage_error(run(["simulate", "--agents", "0"], cmd=dialer_command()), "--agents")


def test_json_has_the_pooled_figures_as_numbers_and_a_replications_list() -> None:
    proc = run(["simulate", "--json", "--policy", "progressive", "--seed", "3", *SMALL])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar with --json
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    for key in REQUIRED_NUMBERS:
        assert isinstance(doc[key], (int, float)) and not isinstance(doc[key], bool), key
    assert isinstance(doc["replications"], list) and len(doc["replications"]) == 2
    for rep in doc["replications"]:
        for key in REQUIRED_NUMBERS:
            assert isinstance(rep[key], (int, float)), key
    # Pooled figures are the means over replications.
    for key in REQUIRED_NUMBERS:
        assert doc[key] == pytest.approx(sum(r[key] for r in doc["replications"]) / 2)
    assert doc["policy"] == "progressive" and doc["abandoned"] == 0
    assert 0 < doc["agent_occupancy"] < 1 and doc["dials"] >= doc["live_answers"] > 0


def test_console_script_runs_a_scenario_file_and_prints_a_table(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(
        '[campaign]\nagents = 3\npolicy = "power"\nratio = 1.2\nhours = 0.5\nreplications = 2\nseed = 9\n'
        '[calls]\ntalk_time = { dist = "gamma", mean = 90, shape = 2 }\n'
    )
    proc = run(["simulate", str(path), "--workers", "1"], cmd=dialer_command(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "3 agents, policy power" in out
    for label in ("Agent occupancy", "Abandonment rate", "Dials", "Connects per agent-hour", "95% CI"):
        assert label in out, label
    assert proc.stderr == ""  # not a terminal: no progress bar


def test_print_default_shows_the_embedded_scenario() -> None:
    proc = run(["simulate", "--print-default"])
    assert proc.returncode == 0
    assert "[campaign]" in proc.stdout and "[calls]" in proc.stdout


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    proc = run(["simulate", "--json", "--plot", str(out), *SMALL])
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.loads(proc.stdout)


def test_progress_bar_appears_on_a_terminal_only() -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*MODULE, "simulate", *SMALL],
            stdout=subprocess.PIPE,
            stderr=slave,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"simulating [" in b"".join(chunks)
    assert b"Agent occupancy" in proc.stdout


# --- issue 15 items 3 and 4, as the user meets them -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("", ("sets no key", "--print-default")),
        ("# nothing yet\n[campaign]\n", ("sets no key",)),
        ("# mine\n[campaign]\nagents = 4\nreplicatons = 2\n", ("campaign.replicatons", "line 4", "'replications'")),
        ('[calls]\n\ntalk_time = { dist = "exponential", mean = -5 }\n', ("calls.talk_time.mean", "line 3")),
    ],
    ids=["empty", "only-a-header", "typo", "bad-value"],
)
def test_scenario_file_errors_say_the_line_and_a_suggestion(
    tmp_path: Path, text: str, mentions: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    status = main(["simulate", str(path)])
    out, err = capsys.readouterr()
    for mention in mentions:
        assert_clean_usage_error(subprocess.CompletedProcess([], status, out, err), mention)
    assert str(path) in err


def test_print_default_comments_every_key_and_a_file_of_one_key_matches_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--print-default"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert " # " in line or lines[i - 1].startswith("# "), f"uncommented key: {line!r}"
    full = tmp_path / "full.toml"
    full.write_text(printed)
    one = tmp_path / "one.toml"
    one.write_text("[campaign]\nagents = 20\n")
    args = ["simulate", "--json", "--hours", "0.25", "--replications", "2", "--workers", "1"]
    docs = []
    for path in (full, one):
        assert main([*args, str(path)]) == 0
        doc = json.loads(capsys.readouterr().out)
        doc.pop("wall_seconds")
        docs.append(doc)
    assert docs[0] == docs[1]  # the same campaign: machines, wrap-up and breaks included
    assert docs[1]["machine_answers"] > 0 and docs[1]["scenario"]["calls"]["wrap_time"]["value"] == 15


def test_json_intervals_are_clipped_and_flag_few_replications(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--json", "--policy", "power", "--ratio", "3", *SMALL, "--workers", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["too_few_replications"] is True
    for name, ci in doc["ci95"].items():
        assert ci["low"] >= 0 and ci["too_few"] is True and ci["n"] == 2, name
        if name.endswith(("_rate", "_fraction", "_occupancy")):
            assert ci["high"] <= 1, name


BLENDED = """
[campaign]
agents = 12
hours = 1
policy = "blended"

[inbound]
rate_per_hour = 120
handle_time = { dist = "exponential", mean = 180 }
patience = { dist = "exponential", mean = 120 }
service_level_seconds = 20
service_level_target = 0.8

[groups]
blended = 12
"""


def test_a_blended_floor_reports_its_inbound_figures_in_the_table_and_the_json(tmp_path: Path) -> None:
    """Issue 16: `dialer simulate` on a blended scenario shows the inbound service level, speed of answer and
    abandonment with intervals, and outbound talk apart from inbound talk; --json carries them under
    "inbound" (every other key as before)."""
    path = tmp_path / "blended.toml"
    path.write_text(BLENDED, encoding="utf-8")
    table = run(["simulate", str(path), "--replications", "3", "--seed", "5"])
    assert table.returncode == 0, table.stderr
    assert "Inbound: " in table.stdout
    for label in ("Inbound service level", "Inbound avg speed of answer (s)", "Inbound abandoned", "Outbound talk"):
        assert label in table.stdout, table.stdout
    proc = run(["simulate", str(path), "--replications", "3", "--seed", "5", "--json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    inbound = doc["inbound"]
    for key in ("service_level", "asa", "abandon_rate", "outbound_talk_fraction"):
        iv = inbound[key]
        assert iv["low"] <= iv["mean"] <= iv["high"], (key, iv)
    assert (
        0 < inbound["service_level"]["mean"] <= 1 and inbound["outbound_talk_fraction"]["mean"] < doc["talk_fraction"]
    )
    plain = json.loads(run(["simulate", "--json", "--policy", "progressive", "--seed", "3", *SMALL]).stdout)
    assert "inbound" not in plain
