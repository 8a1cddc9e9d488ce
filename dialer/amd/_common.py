"""Constants shared by the detectors: verdicts and the frame format a pjsua2 media port delivers."""

from __future__ import annotations

PERSON = "person"
MACHINE = "machine"
UNSURE = "unsure"

SAMPLE_RATE = 8000
FRAME_SECONDS = 0.02
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECONDS) * 2
