"""Crash safety: SIGKILL a real campaign process mid-run, restart it, and audit the store against what it said.

The worker prints each dial after its attempt is committed and each record after it is stored. So after a kill:
every printed dial must be a stored attempt, every printed record a stored outcome, and no (lead, attempt) may be
dialed twice across the two runs. The attempt that was in flight at the kill is closed as interrupted, and its
lead is locked out (the call might have been abandoned), so it is not dialed again in the second run.
"""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from dialer.campaign import import_csv
from dialer.store import open_store

WORKER = Path(__file__).with_name("crash_worker.py")
LEADS = 40
KILL_AFTER_DIALS = 25


def _run(db: str, kill_after: int | None) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    lines: list[str] = []
    dials = 0
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("DIAL"):
                dials += 1
                if kill_after is not None and dials == kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
        lines += [ln.strip() for ln in proc.stdout]  # whatever was in the pipe when it died
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    if kill_after is None:
        assert proc.returncode == 0, err
    else:
        assert proc.returncode == -signal.SIGKILL, err
    return lines


def test_sigkill_mid_campaign_loses_nothing_and_dials_no_attempt_twice(store_location: str) -> None:
    """On both backends: on PostgreSQL the server rolls back the killed process's open transaction."""
    db = store_location
    store = open_store(db)
    csv_text = "phone\n" + "".join(f"+120255501{i:02d}\n" for i in range(LEADS))
    assert import_csv(io.StringIO(csv_text), store, "crash").accepted == LEADS
    store.close()

    first = _run(db, KILL_AFTER_DIALS)
    assert "DONE" not in first
    second = _run(db, None)
    assert second[-1] == "DONE"

    def parse(lines: list[str], kind: str) -> list[tuple[str, ...]]:
        return [tuple(ln.split()[1:]) for ln in lines if ln.startswith(kind + " ")]

    dials = parse(first, "DIAL") + parse(second, "DIAL")
    records = parse(first, "REC") + parse(second, "REC")
    assert len(parse(first, "DIAL")) >= KILL_AFTER_DIALS
    duplicates = [k for k, n in Counter(dials).items() if n > 1]
    assert duplicates == [], "a lead was dialed twice for one attempt"

    store = open_store(db)
    stored = {(a.lead_id, str(a.attempt_no)): a for a in store.attempts("crash")}
    # every dial said is a stored attempt; every record said is a stored outcome
    assert set(dials) <= set(stored)
    for lead_id, attempt, outcome in records:
        row = stored[(lead_id, attempt)]
        assert (row.state, row.outcome) == ("done", outcome)
    # stored attempts beyond the dials said: at most the one claimed just before the kill
    assert len(set(stored) - set(dials)) <= 1
    # the kill interrupted at least one call in flight; those were closed, never left open
    interrupted = [a for a in stored.values() if a.state == "interrupted"]
    assert interrupted and store.open_attempts("crash") == []
    for a in interrupted:
        later = [k for k in parse(second, "DIAL") if k[0] == a.lead_id]
        assert later == [], f"lead {a.lead_id} was redialed inside its lockout after an interrupted call"
        lead = store.lead("crash", a.lead_id)
        assert lead.lockout_until >= a.dialed_at + 72 * 3600
    # calls said to be finished in run 1 are all done in the store, none are interrupted
    for lead_id, attempt, _ in parse(first, "REC"):
        assert stored[(lead_id, attempt)].state == "done"
    # do-not-call numbers were never dialed
    dialed_phones = {stored[k].phone for k in dials}
    assert not dialed_phones & {"+12025550103", "+12025550117"}
    # the 72-hour lockout after an abandoned call held across the restart
    by_lead: dict[str, list] = {}
    for a in sorted(stored.values(), key=lambda a: a.attempt_no):
        by_lead.setdefault(a.lead_id, []).append(a)
    for rows in by_lead.values():
        for earlier, later_ in itertools.pairwise(rows):
            if earlier.abandoned:
                assert later_.dialed_at >= (earlier.ended_at or 0) + 72 * 3600
    assert any(a.abandoned for a in stored.values())
    # nothing dialing is left, and every lead either finished or waits for a retry
    assert store.count_leads("crash").get("dialing", 0) == 0
