"""A labelled answering-machine corpus made with espeak-ng and sox: short "Hello?"-style answers from people,
long voicemail greetings from machines, each with initial-silence and background-noise variants.

Used by the AMD tests and by ``benchmarks/sip_throughput.py``'s companions; everything is generated, nothing is
downloaded. Audio is 8 kHz mono 16-bit signed PCM, the format a pjsua2 media port delivers.
"""

from __future__ import annotations

import array
import random
import shutil
import subprocess
from pathlib import Path

PEOPLE = [
    "Hello?",
    "Hi.",
    "Yes?",
    "Hello, who is this?",
    "Speaking.",
    "Hi there.",
]
MACHINES = [
    "Hi, you have reached John Smith. I am not available right now, please leave a message after the tone.",
    "The person you are calling is not available. Please leave your message after the beep.",
    "Hello, this is Mary. Sorry I missed your call, leave your name and number and I will call you back.",
    "You have reached the voicemail of extension four two one. Please record your message.",
    "Thank you for calling. Our office is closed. Please call again during business hours.",
    "Hey, it's Dave, can't talk now, you know what to do.",
]
LEAD_SILENCES = (0.1, 0.6)
NOISE_LEVELS = (0, 300)  # peak amplitude of added white noise (of 32767)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (apt-get install espeak-ng sox)"
    return path


def speak(text: str, workdir: Path, index: int) -> bytes:
    """``text`` as 8-kHz 16-bit PCM."""
    wav = workdir / f"utt{index}.wav"
    raw = workdir / f"utt{index}.raw"
    subprocess.run([_tool("espeak-ng"), "-w", str(wav), text], check=True)
    subprocess.run([_tool("sox"), str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(raw)], check=True)
    return raw.read_bytes()


def variant(pcm: bytes, lead_silence: float, noise: int, seed: int) -> bytes:
    samples = array.array("h", bytes(int(8000 * lead_silence) * 2) + pcm)
    if noise:
        rng = random.Random(seed)
        for i in range(len(samples)):
            samples[i] = max(-32768, min(32767, samples[i] + rng.randint(-noise, noise)))
    return samples.tobytes()


def corpus(workdir: Path) -> list[tuple[str, str, bytes]]:
    """(label, description, pcm) for every utterance and variant."""
    out: list[tuple[str, str, bytes]] = []
    n = 0
    for label, texts in (("person", PEOPLE), ("machine", MACHINES)):
        for text in texts:
            pcm = speak(text, workdir, n)
            for lead in LEAD_SILENCES:
                for noise in NOISE_LEVELS:
                    n += 1
                    out.append((label, f"{text!r} +{lead}s noise={noise}", variant(pcm, lead, noise, n)))
    return out


def to_ulaw(pcm: bytes, workdir: Path, name: str) -> Path:
    """Raw mu-law for SIPp's ``rtp_stream``."""
    raw = workdir / f"{name}.s16"
    raw.write_bytes(pcm)
    out = workdir / name
    subprocess.run(
        [
            _tool("sox"),
            "-t",
            "raw",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed",
            str(raw),
            "-t",
            "ul",
            str(out),
        ],
        check=True,
    )
    return out
