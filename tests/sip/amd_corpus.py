"""A labelled answering-machine corpus made locally with espeak-ng, sox and NumPy; nothing is downloaded.

Two layers:

* The small fixed set the live SIP test streams (``PEOPLE``, ``MACHINES``, :func:`corpus`, :func:`speak`,
  :func:`to_ulaw`), kept as it was so that test keeps measuring the same thing.
* The varied corpus the accuracy benchmark and test use (:func:`build`): people answering in one word, in one or
  two sentences, a receptionist's business greeting, a "hello" after a long silence, a "hello?" said twice; machines
  with short and long personal greetings, carrier voicemail, and greetings that end with a beep. Each text is spoken
  by several espeak-ng voices at several speeds, placed after a varied silence, scaled to a varied level, and mixed
  with white or low-frequency ("hum") noise at several signal-to-noise ratios. After the greeting comes what the
  line carries while the dialer listens: a person waits in (noisy) silence, a machine plays on or beeps.

The corpus is split by a fixed rule so the detector cannot be tuned on what it is scored on: the **held-out** part
uses texts *and* voices *and* speeds that the **development** part never uses (see ``DEV_*`` and ``HELD_*``).
Everything is deterministic: the variants come from a seeded generator, and the espeak-ng output is cached on disk
keyed by a hash of (espeak-ng version, voice, speed, text), so a second run synthesises nothing.

Audio is 8 kHz mono 16-bit signed PCM, the format a pjsua2 media port delivers.
"""

from __future__ import annotations

import array
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

RATE = 8000
PERSON = "person"
MACHINE = "machine"


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
    """(label, description, pcm) for every utterance and variant of the small fixed set."""
    out: list[tuple[str, str, bytes]] = []
    n = 0
    for label, texts in ((PERSON, PEOPLE), (MACHINE, MACHINES)):
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


# --- the varied corpus -------------------------------------------------------------------------------------------

# category -> (label, development texts, held-out texts). A text with " | " is said as two utterances with a
# person's pause between them (someone who hears nothing and says hello again).
CATEGORIES: dict[str, tuple[str, list[str], list[str]]] = {
    "hello": (
        PERSON,
        ["Hello?", "Hi.", "Yes?", "Speaking.", "Hello.", "Yeah?"],
        ["Hi there.", "Hello!", "Yes, hello?", "Hiya.", "Yep?", "Hallo?"],
    ),
    "sentence": (
        PERSON,
        [
            "Hello, who is this?",
            "Hello, this is Mark speaking.",
            "Yeah, hi, who's calling?",
            "Hi, this is Susan.",
            "Hello, Johnson residence.",
        ],
        [
            "Hello, Peter speaking.",
            "Yes, hello, who is it?",
            "Hi, it's Karen, who's this?",
            "Hello, Miller household.",
            "Yeah, what is it?",
        ],
    ),
    "two_sentences": (
        PERSON,
        ["Hello? Who is this?", "Hi. Can I help you?", "Yes? Hello?", "Hello. Who's calling, please?"],
        ["Hello? Anyone there?", "Yeah. Who's this?", "Hi. What's this about?", "Hello. Yes?"],
    ),
    "hello_again": (
        PERSON,
        ["Hello? | Hello?", "Hi. | Hello, anyone there?", "Yes? | Hello?"],
        ["Hello? | Is anyone there?", "Hello. | Hello?", "Yeah? | Hello, can you hear me?"],
    ),
    "business": (
        PERSON,
        [
            "Good morning, Acme Plumbing, how can I help?",
            "Smith and Sons, Jenny speaking.",
            "Doctor Brown's office, can you hold?",
            "City Dental, good afternoon.",
        ],
        [
            "Good afternoon, Riverside Motors, how may I help you?",
            "Baker's Bakery, Tom speaking.",
            "Hello, Westfield Insurance, this is Anna.",
            "Green Valley Vets, can I help?",
        ],
    ),
    "late": (
        PERSON,
        ["Hello?", "Yes?", "Hello, who is this?"],
        ["Hi?", "Hello, yes?", "Yeah, hello?"],
    ),
    "short_voicemail": (
        MACHINE,
        [
            "Hi, it's Dave, leave a message.",
            "This is Sam, leave a message after the tone.",
            "You've reached Lisa. Leave a message.",
            "Hey, it's Mike, you know what to do.",
        ],
        [
            "Hi, it's Jo, please leave a message.",
            "Ben here, leave me a message.",
            "You've reached Carol, leave your number.",
            "Hey, it's Alex, talk after the beep.",
        ],
    ),
    "long_voicemail": (
        MACHINE,
        [
            "Hi, you have reached John Smith. I am not available right now, please leave a message after the tone.",
            "Hello, this is Mary. Sorry I missed your call, leave your name and number and I will call you back.",
            "Hi, you've reached the Garcia family. We can't come to the phone right now, so leave a message.",
            "Hello, you have reached Robert at Acme Plumbing. I am away from my desk, please leave a message.",
        ],
        [
            "Hello, you've reached Linda Parker. I'm either on the other line or away, please leave a message.",
            "Hi, this is Greg. I can't answer right now, but leave your name and number and I'll get back to you.",
            "Hi there, you've reached the Nguyens. We're out at the moment, leave us a message and we'll call back.",
            "Good day, this is Doctor Patel's office. We are closed for the day, please leave a message.",
        ],
    ),
    "carrier_voicemail": (
        MACHINE,
        [
            "The person you are calling is not available. Please leave your message after the beep.",
            "You have reached the voicemail of extension four two one. Please record your message.",
            "Thank you for calling. Our office is closed. Please call again during business hours.",
        ],
        [
            "The number you have dialled is not available. Please leave a message after the tone.",
            "The subscriber you are calling cannot take your call. Record your message after the tone.",
            "Welcome to the voice mailbox of five five five, one two three four. Please leave a message.",
        ],
    ),
    "beep": (
        MACHINE,
        ["Leave a message.", "Please leave a message after the tone.", "Not here, leave a message."],
        ["Leave your message.", "Message, please.", "Please speak after the tone."],
    ),
}

DEV_VOICES = ("en-us", "en+f3", "en-gb+m3")
HELD_VOICES = ("en-gb-scotland", "en-029+f4", "en+m5")
DEV_SPEEDS = (150, 180)
HELD_SPEEDS = (140, 165, 195)
SNRS: tuple[float | None, ...] = (None, 25.0, 15.0, 10.0)  # dB; None: a clean line
NOISE_KINDS = ("white", "hum")
TAIL_SECONDS = 3.0  # what the line carries after the greeting: waiting silence, or the machine's beep and quiet


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled call: what the detector hears from answer on."""

    label: str
    category: str
    part: str  # "dev" or "held"
    text: str
    voice: str
    speed: int
    lead: float  # seconds of line silence before the first word
    snr: float | None
    noise: str
    pcm: bytes

    def describe(self) -> str:
        snr = "clean" if self.snr is None else f"{self.noise} {self.snr:.0f} dB"
        return f"{self.category} {self.text!r} {self.voice} s{self.speed} +{self.lead:.1f}s {snr}"


def cache_dir() -> Path:
    """Where synthesised utterances are kept: ``$AMD_CORPUS_CACHE`` or ``<tmp>/predictive-dialer-amd``."""
    path = Path(os.environ.get("AMD_CORPUS_CACHE") or Path(tempfile.gettempdir()) / "predictive-dialer-amd")
    path.mkdir(parents=True, exist_ok=True)
    return path


_VERSION: list[str] = []


def _espeak_version() -> str:
    if not _VERSION:
        out = subprocess.run([_tool("espeak-ng"), "--version"], check=True, capture_output=True, text=True).stdout
        _VERSION.append(out.strip())
    return _VERSION[0]


def synth(text: str, voice: str, speed: int) -> bytes:
    """``text`` spoken by espeak-ng ``voice`` at ``speed`` words per minute, as 8-kHz PCM, cached by content."""
    key = hashlib.sha256(f"{_espeak_version()}\0{voice}\0{speed}\0{text}".encode()).hexdigest()[:24]
    path = cache_dir() / f"{key}.s16"
    if path.exists():
        return path.read_bytes()
    espeak = subprocess.run(
        [_tool("espeak-ng"), "-v", voice, "-s", str(speed), "--stdout", text], check=True, capture_output=True
    )
    sox = subprocess.run(
        [_tool("sox"), "-t", "wav", "-", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed", "-t", "raw", "-"],
        input=espeak.stdout,
        check=True,
        capture_output=True,
    )
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(sox.stdout)
    tmp.replace(path)  # atomic: parallel test runs never read half a file
    return sox.stdout


def beep(seconds: float = 0.5, hz: float = 1000.0) -> Any:
    """The voicemail tone (as ``sox synth 0.5 sine 1000`` makes it), float samples in [-1, 1]."""
    import numpy as np

    t = np.arange(int(RATE * seconds)) / RATE
    return 0.5 * np.sin(2 * np.pi * hz * t)


def _trim(x: Any) -> Any:
    """espeak-ng pads its output with silence; cut it so ``lead`` alone sets when speech starts."""
    import numpy as np

    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _noise(rng: Any, kind: str, n: int) -> Any:
    import numpy as np

    white = rng.standard_normal(n)
    if kind == "white":
        return white
    # "hum": mains hum plus low-passed rumble, the kind of noise a cheap line or a car carries
    t = np.arange(n) / RATE
    rumble = np.convolve(white, np.ones(16) / 16, mode="same") * 4
    return rumble + 0.7 * np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6.28))


def render(
    label: str, category: str, text: str, voice: str, speed: int, rng: Any, snr: float | None, noise: str
) -> tuple[bytes, float]:
    """The call's audio from answer on and the lead silence used (all random choices from ``rng``)."""
    import numpy as np

    parts = [_trim(np.frombuffer(synth(t.strip(), voice, speed), dtype="<i2") / 32768.0) for t in text.split("|")]
    lead = float(rng.uniform(1.0, 2.2) if category == "late" else rng.uniform(0.1, 0.8))
    level = float(10 ** (rng.uniform(-16, -4) / 20))  # peak level of the voice, dBFS
    chunks = [np.zeros(int(lead * RATE))]
    for i, p in enumerate(parts):
        if i:
            chunks.append(np.zeros(int(rng.uniform(0.8, 1.5) * RATE)))  # a person waiting, then trying again
        chunks.append(p / max(np.max(np.abs(p)), 1e-9) * level)
    if label == MACHINE and category in ("beep", "short_voicemail", "carrier_voicemail"):
        chunks.append(np.zeros(int(rng.uniform(0.2, 0.6) * RATE)))
        chunks.append(beep() * level)
    chunks.append(np.zeros(int(TAIL_SECONDS * RATE)))
    x = np.concatenate(chunks)
    if snr is not None:
        speech_power = float(np.mean(np.concatenate(parts) ** 2)) * (level / max(np.max(np.abs(parts[0])), 1e-9)) ** 2
        n = _noise(rng, noise, len(x))
        n *= np.sqrt(speech_power / 10 ** (snr / 10) / max(float(np.mean(n**2)), 1e-12))
        x = x + n
    return (np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()), lead


def _plan(part: str, sample_every: int = 1) -> Iterator[tuple[str, str, str, str, int, int]]:
    """(label, category, text, voice, speed, seed) of every call in ``part``; every ``sample_every``-th only."""
    voices, speeds = (DEV_VOICES, DEV_SPEEDS) if part == "dev" else (HELD_VOICES, HELD_SPEEDS)
    n = 0
    for category, (label, dev_texts, held_texts) in CATEGORIES.items():
        for text in dev_texts if part == "dev" else held_texts:
            for voice in voices:
                for speed in speeds:
                    n += 1
                    if (n - 1) % sample_every == 0:
                        yield label, category, text, voice, speed, n


def build(part: str, *, sample_every: int = 1, seed: int = 12) -> list[Sample]:
    """Every call of ``part`` ("dev" or "held"), each text x voice x speed once, with a seeded noise condition.

    ``sample_every=k`` keeps every k-th text/voice/speed combination (a smaller sample for a quick test).
    Synthesis runs in a few threads (espeak-ng and sox are separate processes); the cache makes reruns instant.
    """
    import numpy as np

    if part not in ("dev", "held"):
        raise ValueError(f"part must be 'dev' or 'held', not {part!r}")
    plan = list(_plan(part, sample_every))
    wanted = {(t.strip(), v, s) for _, _, text, v, s, _ in plan for t in text.split("|")}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(lambda a: synth(*a), sorted(wanted)))
    out: list[Sample] = []
    for label, category, text, voice, speed, n in plan:
        rng = np.random.default_rng([seed, 0 if part == "dev" else 1, n])
        snr = SNRS[int(rng.integers(len(SNRS)))]
        noise = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        pcm, lead = render(label, category, text, voice, speed, rng, snr, noise)
        out.append(Sample(label, category, part, text, voice, speed, lead, snr, noise, pcm))
    return out
