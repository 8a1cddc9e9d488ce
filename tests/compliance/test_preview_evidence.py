"""Preview and manual dials in the evidence log: an auditor must tell a lead shown and skipped from a call that
failed, and see whom a hand-dialed call was dialed for. Paced calls' entries keep exactly their old keys."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from dialer.compliance.evidence import entries, verify
from dialer.engine.records import CallRecord, Outcome
from dialer.leads import Lead
from dialer.live.campaign import LiveCampaign, load_campaign


def _campaign_file(tmp_path: Path) -> Path:
    with wave.open(str(tmp_path / "abandon.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.35))) for i in range(800)))
    (tmp_path / "leads.csv").write_text("lead_id,phone\nL1,+12127362001\nL2,+12127362002\n", encoding="utf-8")
    path = tmp_path / "c.toml"
    path.write_text(
        """
[campaign]
abandon_message = "abandon.wav"
purpose = "survey"
policy = "preview"

[leads]
file = "leads.csv"

[dnc]
registry_required = false

[trunk]
caller_id = "+12127362000"

[agents]
alice = "sip:alice@127.0.0.1:5062"
""",
        encoding="utf-8",
    )
    return path


def test_skipped_and_reserved_calls_say_so_in_the_evidence(tmp_path: Path) -> None:
    campaign = LiveCampaign.open(load_campaign(_campaign_file(tmp_path)))
    try:
        lead1, lead2 = (Lead("L1", "+12127362001"), Lead("L2", "+12127362002"))
        skipped = CallRecord(
            1, lead1, Outcome.NETWORK, dialed_at=10.0, ended_at=12.0, placed=False, reserved_for="alice",
            offered_at=10.0, skipped="wrong contact",
        )  # fmt: skip
        dialed = CallRecord(
            2, lead2, Outcome.CONNECTED, dialed_at=20.0, ended_at=80.0, answered_at=25.0, connected_at=25.1,
            agent_id="alice", wait=0.1, reserved_for="alice",
        )  # fmt: skip
        paced = CallRecord(3, lead2, Outcome.NO_ANSWER, dialed_at=90.0, ended_at=115.0)
        for record in (skipped, dialed, paced):
            campaign.evidence(record, {})
        path = campaign.evidence_path
    finally:
        campaign.close()
    calls = [e for e in entries(path) if e.get("kind") == "call"]
    assert verify(path).ok
    by_id = {e["data"]["call_id"]: e["data"] for e in calls}
    assert by_id[1]["placed"] is False and by_id[1]["skipped"] == "wrong contact"
    assert by_id[1]["reserved_for"] == "alice"
    assert by_id[2]["reserved_for"] == "alice" and "skipped" not in by_id[2]
    assert "reserved_for" not in by_id[3] and "skipped" not in by_id[3]  # a paced call reads as before
