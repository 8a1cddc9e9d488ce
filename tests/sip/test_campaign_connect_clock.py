"""The campaign file's ``connect_clock``: where the 2-s clock starts, and detection's defaults that follow it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sip_run_cli import BASE, write_campaign

from dialer.amd import amd_preset
from dialer.errors import ConfigError
from dialer.live.campaign import load_campaign


def test_the_default_clock_is_the_answer_with_the_short_budget(tmp_path: Path) -> None:
    config = load_campaign(write_campaign(tmp_path))
    assert config.pool.connect_clock == "answer"
    assert config.pool.amd.budget == amd_preset("answer")["budget"] <= 1.5


def test_a_greeting_end_campaign_listens_longer_and_the_file_still_wins(tmp_path: Path) -> None:
    body = BASE.replace('policy = "progressive"', 'policy = "progressive"\nconnect_clock = "greeting_end"')
    config = load_campaign(write_campaign(tmp_path, body))
    assert config.pool.connect_clock == "greeting_end"
    assert config.pool.amd.budget == amd_preset("greeting_end")["budget"] > 2.0
    config = load_campaign(write_campaign(tmp_path, body + "\n[amd]\nenabled = true\nbudget = 4.0\n"))
    assert config.pool.amd.budget == 4.0 and config.pool.amd.enabled


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ('connect_clock = "sunrise"', "campaign.connect_clock"),
        ('connect_clock = "answer"\n[pool]\nconnect_clock = "greeting_end"', "pool.connect_clock"),
    ],
)
def test_a_bad_or_misplaced_clock_is_refused_naming_the_key(tmp_path: Path, edit: str, key: str) -> None:
    body = BASE.replace('policy = "progressive"', 'policy = "progressive"\n' + edit.split("\n[pool]")[0])
    if "[pool]" in edit:
        body = body.replace("[pool]\n", "[pool]\n" + edit.split("[pool]\n")[1] + "\n")
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, body))
    assert info.value.key == key
