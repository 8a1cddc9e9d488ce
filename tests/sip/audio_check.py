"""Audio facts from WAV files the pjsua2 peer recorded: which 20-ms frames carry a given tone.

Goertzel on each frame, compared with the frame's total energy, so a tone is found by its frequency and not by
loudness alone: the silence, comfort noise or speech that also crosses a bridge does not count.
"""

from __future__ import annotations

import array
import math
import subprocess
import wave
from pathlib import Path

from amd_corpus import _tool

FRAME = 160  # 20 ms at 8 kHz


def tone_wav(path: Path, freq: float, seconds: float) -> Path:
    """A sine tone as an 8-kHz mono 16-bit WAV (the format pjsua2's player and recorder use)."""
    subprocess.run(
        [_tool("sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", str(path), "synth", str(seconds), "sine", str(freq)],
        check=True,
    )
    return path


def pcm_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[array.array[int], int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "expected 16-bit mono"
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    return samples, rate


def tone_frames(path: Path, freq: float, *, share: float = 0.5, floor: float = 1e4) -> list[bool]:
    """For each 20-ms frame: does ``freq`` hold at least ``share`` of the frame's energy (and is it not silence)?"""
    samples, rate = read_wav(path)
    n = rate // 50
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    out = []
    for start in range(0, len(samples) - n + 1, n):
        s1 = s2 = 0.0
        energy = 0.0
        for x in samples[start : start + n]:
            s0 = x + coeff * s1 - s2
            s2, s1 = s1, s0
            energy += x * x
        power = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / n  # the tone's share of the frame energy
        out.append(energy > floor * n and power >= share * energy)
    return out


def first_run(frames: list[bool], length: int = 10) -> int | None:
    """Index of the first frame that starts ``length`` consecutive tone frames (a stray frame is not a tone)."""
    run = 0
    for i, hit in enumerate(frames):
        run = run + 1 if hit else 0
        if run >= length:
            return i - length + 1
    return None
