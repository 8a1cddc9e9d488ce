"""``dialer run CAMPAIGN.toml``: the campaign file, checked key by key, and the start refused when a gate cannot work.

Every bad file is one line on stderr naming the key, exit status 2, no traceback, and nothing dialed (these tests
start no SIP peer: a run that got as far as dialing would fail on the unreachable trunk). The live run itself is in
``test_sip_live_campaign.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_sip_runtime import make_message

from dialer.cli import main
from dialer.compliance import NationalRegistry
from dialer.errors import ConfigError
from dialer.live.campaign import LiveCampaign, load_campaign

BASE = """
[campaign]
id = "autumn"
abandon_message = "abandon.wav"
purpose = "survey"  # exempt from the national registry, which these tests do not load
policy = "progressive"
connect_limit = 2.0
ring_timeout = 20

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[trunk]
port = 5060
caller_id = "+12127362000"

[pool]
workers = 1

[agents]
alice = "sip:alice@127.0.0.1:5062"
"""


def write_campaign(tmp_path: Path, body: str = BASE) -> Path:
    (tmp_path / "leads.csv").write_text("lead_id,phone,name,tz,crm\nA,+12127362001,Ann,,7\nB,bogus,Bob,,8\n")
    make_message(tmp_path)
    path = tmp_path / "campaign.toml"
    path.write_text(body)
    return path


def test_valid_file_opens_store_imports_and_defaults(tmp_path: Path) -> None:
    config = load_campaign(write_campaign(tmp_path))
    assert config.campaign_id == "autumn" and config.store == tmp_path / "campaign.sqlite"
    assert config.rejects_file == tmp_path / "leads.rejects.csv" and config.pool.abandon_wav.endswith("abandon.wav")
    assert config.retry is not None and config.retry.abandon_lockout == 72 * 3600.0
    campaign = LiveCampaign.open(config)
    try:
        assert campaign.imported.accepted == 1 and len(campaign.imported.rejected) == 1
        lead = campaign.store.lead("autumn", "A")  # lead_id and name found in the header, other columns passed
        assert (lead.phone, lead.name, dict(lead.fields)) == ("+12127362001", "Ann", {"tz": "", "crm": "7"})
    finally:
        campaign.close()
    assert (tmp_path / "leads.rejects.csv").read_text().splitlines()[1].startswith("3,")


def test_campaign_hours_narrow_builtin_rules_and_add_regions(tmp_path: Path) -> None:
    body = BASE + '\n[hours.US]\nweekday = "10:00-17:00"\nsunday = "closed"\n[hours.JP]\nweekday = "09:00-20:00"\n'
    windows = load_campaign(write_campaign(tmp_path, body)).windows()
    ny, tokyo = "+12127362001", "+81312342001"
    monday_noon_ny = 1767632400.0  # 2026-01-05 12:00 New York (a Monday)
    assert windows.allows(ny, monday_noon_ny)
    assert not windows.allows(ny, monday_noon_ny + 5.5 * 3600)  # 17:30: narrowed from the federal 21:00
    assert not windows.allows(ny, monday_noon_ny - 86400)  # Sunday noon: closed by the campaign
    assert windows.allows(ny, monday_noon_ny - 2 * 86400)  # Saturday noon: the built-in hours still apply
    tokyo_monday_ten = 1767574800.0  # 2026-01-05 10:00 Tokyo
    assert windows.allows(tokyo, tokyo_monday_ten)
    assert not windows.allows(tokyo, tokyo_monday_ten - 86400 * 2)  # Saturday: not given, so closed


Mutation = Callable[[str], str]


def _sub(old: str, new: str) -> Mutation:
    def mutate(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_sub('file = "leads.csv"', 'file = "missing.csv"'), "leads.file: cannot read"),
        (_sub('file = "leads.csv"', "file = 3"), "leads.file: must be a file path"),
        (_sub("ring_timeout = 20", "ring_timeout = 5"), "campaign.ring_timeout: must be at least 15"),
        (_sub("ring_timeout = 20", 'ring_timeout = "long"'), "campaign.ring_timeout: must be a number"),
        (_sub("connect_limit = 2.0", "connect_limit = -1"), "campaign.connect_limit: must be >= 0"),
        (_sub("[trunk]", "[trunk]\ntransport = 'sctp'"), "trunk.transport"),
        (_sub("port = 5060", 'port = "5060"'), "trunk.port: must be an integer"),
        (_sub("[pool]", "[pool]\nworkerz = 2"), "pool.workerz: unknown key"),
        (_sub("[pool]", "[retry]\nabandon_lockout_hours = 1\n\n[pool]"), "retry.abandon_lockout_hours: must be at"),
        (_sub("[pool]", "[pool]\nsetups_per_worker = 0"), "pool.setups_per_worker"),
        (_sub("[pool]", "[pool]\ntrunk = 1"), "pool.trunk: unknown key"),
        (_sub('alice = "sip:', 'alice = "tel:'), "agents.alice"),
        (lambda t: t + "\n[bogus]\n", "bogus: unknown section"),
        (_sub("[campaign]", "[campaign"), "not valid TOML"),
        (_sub("[campaign]", "[campaign]\ncolour = 'red'"), "campaign.colour: unknown key"),
        (_sub("[campaign]", "[campaign]\nmachine = 'shout'"), "campaign.machine: must be one of"),
        (_sub("[campaign]", "[campaign]\nmachine = 'message'"), "amd.enabled: must be true"),
        (
            lambda t: t.replace("[campaign]", "[campaign]\nmachine = 'message'") + "\n[amd]\nenabled = true\n",
            "campaign.machine_message",
        ),
        (_sub("[campaign]", "[campaign]\nopt_out_digit = '99'"), "campaign.opt_out_digit"),
        (_sub('abandon_message = "abandon.wav"', 'abandon_message = "nope.wav"'), "campaign.abandon_message"),
        (_sub('policy = "progressive"', 'policy = "psychic"'), "campaign.policy: unknown policy"),
        # preview and manual run in the engine and the simulator only: live, the offered leads would wait forever
        (_sub('policy = "progressive"', 'policy = "preview"'), "campaign.policy: 'preview' runs in the engine"),
        (_sub('policy = "progressive"', 'policy = "manual"'), "campaign.policy: 'manual' runs in the engine"),
        (lambda t: t.replace('"progressive"', '"power"') + "\n[policy]\nratio = 20\n", "policy.ratio: must be"),
        (lambda t: t + "\n[policy]\nratoi = 2\n", "policy: bad parameters"),
        # the first file format's keys say where their job went
        (_sub("[campaign]", '[campaign]\nleads = "leads.csv"'), "campaign.leads: moved to leads.file"),
        (_sub("[campaign]", '[campaign]\nledger = "l.csv"'), "campaign.ledger: the ledger is now the store"),
        (_sub("[campaign]", '[campaign]\ndnc = "dnc.txt"'), "campaign.dnc: moved to dnc.internal"),
        (lambda t: t + '\n[window]\nstart = "09:00"\n', "window: replaced by [hours.REGION]"),
        # leads
        (_sub('file = "leads.csv"', 'file = "leads.csv"\n[leads.columns]\nphone = "tel"'), "column(s) ['tel']"),
        (_sub('file = "leads.csv"', 'file = "leads.csv"\ndefault_region = "ZZ"'), "leads.default_region"),
        (_sub('file = "leads.csv"', 'file = "leads.csv"\ndelimiter = ";;"'), "leads.delimiter"),
        # do-not-call: fail closed
        (_sub("registry_required = false", ""), "dnc.registry: is required (dnc.registry_required = true)"),
        (_sub("registry_required = false", 'registry = "nowhere"'), "dnc.registry: "),
        (_sub("registry_required = false", 'registry_required = "no"'), "dnc.registry_required: must be true"),
        (_sub("registry_required = false", 'internal = "absent.txt"'), "dnc.internal: "),
        (_sub("registry_required = false", 'registry_required = false\nregions = ["Mars"]'), "dnc.regions"),
        # calling hours and retries
        (lambda t: t + '\n[hours.JP]\nsaturday = "09:00-12:00"\n', "hours.JP.weekday: is required"),
        (lambda t: t + '\n[hours.US]\nweekday = "9-5"\n', "hours.US.weekday"),
        (lambda t: t + '\n[hours.US]\nweekday = "20:00-09:00"\n', "hours.US.weekday: 20:00-09:00 is empty"),
        (lambda t: t + '\n[hours.US]\nholiday = "x"\n', "hours.US.holiday: unknown key"),
        (lambda t: t + '\n[hours.XX]\nweekday = "09:00-17:00"\n', "hours.XX: 'XX' is not a region code"),
        (lambda t: t + "\n[retry]\nmax_attempts = 0\n", "retry.max_attempts: must be >= 1"),
        (lambda t: t + "\n[retry.bored]\ndelay = 5\n", "retry.bored: unknown outcome"),
        (lambda t: t + "\n[retry.busy]\ndelay = -5\n", "retry.busy.delay: must be >= 0"),
    ],
)
def test_bad_campaign_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Mutation, message: str) -> None:
    path = write_campaign(tmp_path)
    path.write_text(mutate(path.read_text()))
    assert main(["run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "calls" not in captured.out  # nothing dialed


def test_stale_registry_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    NationalRegistry.create(tmp_path / "registry", as_of=time.time() - 40 * 86400).close()
    path = write_campaign(tmp_path, BASE.replace("registry_required = false", 'registry = "registry"'))
    assert main(["run", str(path), "--quiet"]) == 2
    assert "dnc.registry: its data is 40 days old" in capsys.readouterr().err


def test_bad_line_in_company_list_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dnc.txt").write_text("+12127362001\nnot a number\n")
    path = write_campaign(
        tmp_path, BASE.replace("registry_required = false", 'registry_required = false\ninternal = ["dnc.txt"]')
    )
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "dnc.internal:" in err and "line 2" in err, err


def test_unreadable_call_list_stores_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_campaign(tmp_path)
    (tmp_path / "leads.csv").write_text('lead_id,phone\nA,+12127362001\nB,"+1212736\n')
    assert main(["run", str(path), "--quiet"]) == 2
    assert "leads.file:" in capsys.readouterr().err
    config = load_campaign(path)
    from dialer.store import Store

    with Store(config.store) as store:
        assert store.leads("autumn") == []


@pytest.mark.parametrize(
    ("edit", "ok"),
    [
        ("", False),  # telemarketing to the US with no registry: refused
        ('purpose = "charity"', True),  # exempt from the national registry
        ('purpose = "survey"\n', True),
    ],
)
def test_a_telemarketing_campaign_cannot_call_the_us_without_the_registry(tmp_path: Path, edit: str, ok: bool) -> None:
    body = BASE.replace('purpose = "survey"  # exempt from the national registry, which these tests do not load', edit)
    if ok:
        assert load_campaign(write_campaign(tmp_path, body)).purpose in ("charity", "survey")
        return
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, body))
    assert info.value.key == "dnc.registry_required"
    other = body.replace("registry_required = false", 'registry_required = false\nregions = ["CA"]')
    assert load_campaign(write_campaign(tmp_path, other)).registry_regions == ("CA",)
