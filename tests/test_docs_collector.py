"""Every example in README.md and docs/ runs in the test suite exactly as written.

A collector over the fenced code blocks of README.md and docs/**/*.md, one test per block, named ``file:line``:

* ``python``: written to a file in a fresh directory and run with ``python`` (PYTHONPATH = the checkout).
* ``bash``/``sh``/``console``: run when every command is ``dialer ...`` or ``python[3] -m/-c ...`` (``console``
  blocks: the ``$`` lines; what follows them is output); other shell (``apt-get``, ``openssl``, ``systemctl``) is
  listed as not run.
* ``toml``: a scenario file is loaded with ``sim.scenario.loads``, a campaign file with
  ``dialer.live.campaign.load_campaign``; a fragment of either is loaded on top of a minimal file.
* ``json``: a bus message is decoded with ``dialer.bus.schema.decode``, the library's own schema.

An example that needs something around it (a file it opens, a broker) gets it from a fixture below, keyed by a
line of the block; the text is never changed to fit the test. A block that is output or a fragment carries
``<!-- doc-example: skip (reason) -->`` on the line before its fence; a skip without a reason fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tomllib
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bus"))

sys.path.insert(0, str(ROOT / "tests"))

from mqtt_broker import Broker  # noqa: E402
from sipp_runner import Sipp  # noqa: E402


class AgentPeer(Sipp):
    scenarios = ROOT / "tests" / "sip" / "scenarios"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGS = {"python", "bash", "sh", "console", "toml", "json"}
SKIP = re.compile(r"^<!--\s*doc-example:\s*skip\b\s*(?:\((?P<reason>[^)]*)\))?\s*-->\s*$")
TIMEOUT = 60
# Examples that are slow as written (seconds of CPU on 2 cores, plus headroom), keyed by a line of the block.
SLOW = {("docs/simulation.md", "replications=20"): 180}

# Pages whose owners keep their own text: a block there that cannot run here is listed with its reason (keyed
# by a line of the block) until the page carries a skip marker of its own.
FOREIGN_SKIPS = {
    ("docs/embedding.md", "dialer broker-config /etc/mosquitto/dialer"): "writes under /etc (run as root)",
    ("docs/deploy/README.md", "dialer broker-config /etc/mosquitto/dialer"): "writes under /etc (run as root)",
    ("docs/deploy/README.md", "dialer worker --worker-id w1 --password-env"): "fragment (`...` stands for options)",
    ("docs/embedding.md", "seen = Deduplicator(size=10_000)"): "fragment (doc and handle are the reader's)",
    ("docs/embedding.md", "dialer worker --broker mqtt.example.com"): "needs a remote broker and a SIP trunk",
    ("docs/embedding.md", "async def replay(after: int)"): "needs a dispatcher that keeps events to replay",
}


# A block of a page owned elsewhere that fails as written: expected to fail (strictly: the test says so when the
# page is fixed) and reported to the page's owner, rather than edited here.
FOREIGN_FAILURES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Block:
    path: str  # relative to ROOT
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def collect() -> list[Block]:
    blocks = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        rel = doc.relative_to(ROOT).as_posix()
        i = 0
        while i < len(lines):
            fence = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
            if not fence:
                i += 1
                continue
            indent, lang = fence.group(1), fence.group(2)
            j = i + 1
            while not re.match(r"^\s*```\s*$", lines[j]):
                j += 1
            body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j])
            skip = None
            marker = SKIP.match(lines[i - 1].strip()) if i else None
            if marker:
                skip = (marker.group("reason") or "").strip()
                if not skip:
                    raise AssertionError(f"{rel}:{i + 1}: a doc-example skip needs a reason: skip (why)")
            if lang in LANGS:
                blocks.append(Block(rel, i + 1, lang, body + "\n", skip))
            i = j + 1
    return blocks


BLOCKS = collect()


def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block: each ``$`` line of a console block, every line of a bash/sh block, with
    continuation lines joined."""
    lines = block.code.splitlines()
    if block.lang == "console":
        commands, current = [], None
        for line in lines:
            if current is not None:
                current += "\n" + line
            elif line.startswith("$ "):
                current = line[2:]
            else:
                continue
            if not current.endswith("\\"):
                commands.append(current)
                current = None
        return commands
    text = "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return [c for c in re.split(r"(?<!\\)\n", text) if c.strip()]


def runnable_shell(command: str) -> bool:
    words = command.split()
    if words[0] == "dialer":
        return True
    if words[0] in ("python", "python3") and len(words) > 1 and words[1] in ("-m", "-c"):
        return True
    return words[:1] == ["echo"] and words[1:2] == ["$?"]


def not_run_reason(block: Block) -> str | None:
    if block.skip:
        return block.skip
    for (path, line), reason in FOREIGN_SKIPS.items():
        if block.path == path and line in block.code:
            return reason
    if block.lang in ("bash", "sh", "console"):
        commands = shell_commands(block)
        if not commands:
            return "output only"
        others = sorted({c.split()[0] for c in commands if not runnable_shell(c)})
        if others:
            return f"not a dialer/python command: {', '.join(others)}"
    return None


# --- what examples need around them ------------------------------------------------------------------------

Setup = Callable[[Path, dict[str, str], "pytest.FixtureRequest"], None]
SETUPS: dict[tuple[str, str], Setup] = {}


def needs(path: str, line: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        SETUPS[(path, line)] = fn
        return fn

    return register


LEADS_CSV = (
    "Phone,Name,TZ,CRM id,State\n"
    "+12125550100,Ann,America/New_York,c-1,NY\n"
    "+12125550101,Bob,America/New_York,c-2,NY\n"
    "+13125550102,Cy,America/Chicago,c-3,IL\n"
    "+12125550100,Ann again,America/New_York,c-4,NY\n"
    "not a number,Dee,America/New_York,c-5,NY\n"
)


def _wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:  # one second of a 440 Hz tone, 8 kHz mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(
                int(8000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
                for i in range(8000)
            )
        )


def _registry(tmp: Path) -> None:
    from dialer.compliance import NationalRegistry

    (tmp / "full.txt").write_text("212,5550101\n")
    NationalRegistry.prepare(tmp / "dnc", [tmp / "full.txt"])


def _campaign_files(tmp: Path) -> None:
    _registry(tmp)
    (tmp / "company-dnc.txt").write_text("+13125550102\n")
    (tmp / "leads.csv").write_text(LEADS_CSV)


@needs("docs/compliance.md", 'store = Store("spring.sqlite")')
def _twenty_lines(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    _campaign_files(tmp)


@needs("docs/compliance.md", "reg = NationalRegistry.prepare(")
def _registry_files(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    (tmp / "full-201.txt").write_text("201,5550100\n201,5550101\n")
    (tmp / "full-202.txt").write_text("202,5550100\n")
    (tmp / "changes-2026-03-01.txt").write_text("201,5550102,A\n201,5550100,D\n")
    (tmp / "deletions.txt").write_text("202,5550100\n")


def _spring_store(tmp: Path) -> None:
    """spring.sqlite as the twenty-line campaign in docs/compliance.md leaves it."""
    from dialer.campaign import ColumnMapping, import_csv
    from dialer.compliance import DoNotCall, NationalRegistry, load_internal_list
    from dialer.store import Store

    _campaign_files(tmp)
    store = Store(str(tmp / "spring.sqlite"))
    dnc = DoNotCall(NationalRegistry.open(tmp / "dnc"), internal=load_internal_list(tmp / "company-dnc.txt"))
    mapping = ColumnMapping(phone="Phone", name="Name", time_zone="TZ", lead_id="CRM id", state="State")
    import_csv(str(tmp / "leads.csv"), store, "spring", mapping, default_region="US", dnc=dnc)
    store.close()


for _line in ("dialer report compliance spring.sqlite --csv", "dialer report compliance spring.sqlite --audit"):
    needs("docs/compliance.md", _line)(lambda tmp, env, request: _spring_store(tmp))
needs("docs/compliance.md", "dialer purge spring.sqlite --dry-run")(lambda tmp, env, request: _spring_store(tmp))


@needs("docs/compliance.md", 'config = load_campaign("spring.toml")')
def _live_campaign(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    _campaign_files(tmp)
    (tmp / "agent.ulaw").write_bytes(b"\xff" * 8000)
    agent = AgentPeer("agent_session.xml", tmp)  # alice's softphone answers the agent leg
    request.addfinalizer(agent.stop)
    _wav(tmp / "msg.wav")
    (tmp / "spring.toml").write_text(
        '[campaign]\nabandon_message = "msg.wav"\n'
        '[leads]\nfile = "leads.csv"\ndefault_region = "US"\n'
        '[leads.columns]\nphone = "Phone"\nname = "Name"\ntime_zone = "TZ"\nlead_id = "CRM id"\nstate = "State"\n'
        '[dnc]\nregistry = "dnc/"\ninternal = ["company-dnc.txt"]\n'
        '[trunk]\ncaller_id = "+12125550123"\n'
        f'[agents]\nalice = "sip:alice@127.0.0.1:{agent.port}"\n'
        '[hours.US]\nweekday = "closed"\nsaturday = "closed"\nsunday = "closed"\n'  # nothing due: run returns
    )


@needs("docs/pacing.md", "dialer sweep my-campaign.toml")
def _my_campaign(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    # the reader's own scenario: a small one, so that the sweep's 24 points x 10 replications take seconds
    (tmp / "my-campaign.toml").write_text("[campaign]\nagents = 3\nhours = 0.25\n")


@needs("docs/embedding.md", "import aiomqtt")
def _broker(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    broker = Broker(tmp)
    broker.start()
    request.addfinalizer(broker.stop)
    env["MQTT_PORT"] = str(broker.port)


@needs("docs/embedding.md", 'password=os.environ["DIALER_MQTT_PASSWORD"]')
def _password(tmp: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    env["DIALER_MQTT_PASSWORD"] = "secret"


def _setups(block: Block) -> Iterator[Setup]:
    for (path, line), fn in SETUPS.items():
        if block.path == path and line in block.code:
            yield fn


# --- running -----------------------------------------------------------------------------------------------


def _run(argv: list[str], tmp: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"did not finish in {timeout} s: {exc.stdout!r} {exc.stderr!r}")


def _timeout(block: Block) -> float:
    return max([TIMEOUT, *(t for (path, line), t in SLOW.items() if block.path == path and line in block.code)])


def _params() -> list[object]:
    params: list[object] = []
    for block in BLOCKS:
        if not_run_reason(block) is not None:
            continue
        marks = [
            pytest.mark.xfail(strict=True, reason=f"{path}: {reason}")
            for (path, line), reason in FOREIGN_FAILURES.items()
            if block.path == path and line in block.code
        ]
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


def _merge(base: dict[str, object], extra: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _toml(data: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    out = []

    def table(prefix: str, d: dict[str, object]) -> None:
        scalars = {k: v for k, v in d.items() if not (isinstance(v, dict) and _is_table(k, v))}
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if k not in scalars:
                table(f"{prefix}.{k}" if prefix else k, v)  # type: ignore[arg-type]

    table("", data)
    return "\n".join(out) + "\n"


def _is_table(key: str, value: dict[str, object]) -> bool:
    # distributions ({ dist = ... }) stay inline; every other dict is a table
    return "dist" not in value


def _check_toml(block: Block, tmp: Path, env: dict[str, str]) -> None:
    data = tomllib.loads(block.code)
    campaign = data.get("campaign", {})
    is_campaign = any(k in data for k in ("leads", "dnc", "trunk", "hours", "retry")) or "purpose" in campaign
    if is_campaign:
        from dialer.live.campaign import load_campaign

        base: dict[str, object] = {
            "campaign": {"abandon_message": "msg.wav"},
            "leads": {"file": "leads.csv"},
            "trunk": {"caller_id": "+12125550123"},
            "agents": {"alice": "sip:alice@127.0.0.1:5099"},
            "dnc": {"registry": "dnc/"},
        }
        for name in ("msg.wav", "vm.wav"):
            _wav(tmp / name)
        for name in ("company-dnc.txt", "us-2026.txt"):
            (tmp / name).write_text("")
        (tmp / "leads.csv").write_text(LEADS_CSV)
        _registry(tmp)
        path = tmp / "campaign.toml"
        path.write_text(block.code if "abandon_message" in campaign else _toml(_merge(base, data)))
        load_campaign(path)
    else:
        from sim import scenario

        scenario.loads(block.code)


def _check_json(block: Block) -> None:
    from dialer.bus.schema import decode

    decode(block.code)


@pytest.mark.parametrize("block", _params())
def test_doc_example(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    for setup in _setups(block):
        setup(tmp_path, env, request)
    if block.lang == "python":
        (tmp_path / "example.py").write_text(block.code)
        proc = _run([sys.executable, "example.py"], tmp_path, env, _timeout(block))
        assert proc.returncode == 0, f"{block.id}\n{proc.stdout}\n{proc.stderr}"
    elif block.lang in ("bash", "sh", "console"):
        for command in shell_commands(block):
            if command.split()[:2] == ["echo", "$?"]:
                continue  # the status of the command before is checked below
            proc = _run(["bash", "-c", command], tmp_path, env, _timeout(block))
            assert proc.returncode == 0, f"{block.id}: {command}\n{proc.stdout}\n{proc.stderr}"
    elif block.lang == "toml":
        _check_toml(block, tmp_path, env)
    elif block.lang == "json":
        _check_json(block)


def test_every_skip_has_a_reason_and_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    not_run = [(b.id, not_run_reason(b)) for b in BLOCKS if not_run_reason(b) is not None]
    assert all(reason for _, reason in not_run)
    with capsys.disabled():
        print(f"\n{len(BLOCKS)} doc blocks, {len(BLOCKS) - len(not_run)} run, {len(not_run)} not run:")
        for block_id, reason in not_run:
            print(f"  {block_id}: {reason}")


def test_collector_finds_the_examples() -> None:
    assert len(BLOCKS) >= 40
    # every fixture and foreign skip still matches a block (a rewritten example must not lose its setup)
    for path, line in [*SETUPS, *FOREIGN_SKIPS, *FOREIGN_FAILURES, *SLOW]:
        assert any(b.path == path and line in b.code for b in BLOCKS), (path, line)
