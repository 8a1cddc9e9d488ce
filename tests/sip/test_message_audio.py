"""Message audio checked and converted at start (issue 12, part 5).

pjsua2's player refuses every WAV but 16-bit PCM (``PJMEDIA_EWAVEUNSUPP``) only when the first person is
abandoned, so before this a float or 24-bit message, or a text file named ``.wav``, gave that person silence.
Here: every common WAV converts to a 16-kHz mono 16-bit copy that pjsua2 plays and that reaches a callee as audio;
whatever no caller could hear stops ``dialer run`` and ``dialer worker`` with one line naming the key and exit
status 2, before any call is placed or any store is touched; the copy outlives the user's file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from audio_check import first_run, tone_frames
from sip_helpers import Recorder, pool, run, started
from sipp_runner import free_port
from test_sip_run_cli import BASE, write_campaign

from dialer.cli import main
from dialer.errors import ConfigError
from dialer.live.campaign import LiveCampaign, load_campaign
from dialer.sip import Ended, MessageStarted
from dialer.sip.message_audio import BRIDGE_RATE, prepare_message

ROOT = Path(__file__).resolve().parents[2]
TONE = 700.0


def tone(path: Path, rate: int, *, channels: int = 1, subtype: str = "PCM_16", container: str = "WAV",
         seconds: float = 1.0, amplitude: float = 0.5) -> Path:  # fmt: skip
    """A sine tone written by libsndfile in exactly the container and sample format asked for."""
    t = np.arange(int(rate * seconds)) / rate
    mono = amplitude * np.sin(2 * np.pi * TONE * t)
    sf.write(str(path), np.repeat(mono[:, None], channels, axis=1), rate, subtype=subtype, format=container)
    return path


FORMATS: dict[str, dict[str, Any]] = {
    "float-48k-stereo": dict(rate=48000, channels=2, subtype="FLOAT"),
    "double-44k1-stereo": dict(rate=44100, channels=2, subtype="DOUBLE"),
    "pcm24-44k1": dict(rate=44100, subtype="PCM_24"),
    "pcm32-32k-stereo": dict(rate=32000, channels=2, subtype="PCM_32"),
    "pcm8-11k025": dict(rate=11025, subtype="PCM_U8"),
    "pcm16-8k": dict(rate=8000, subtype="PCM_16"),
    "pcm16-16k": dict(rate=16000, subtype="PCM_16"),
    "ulaw-8k": dict(rate=8000, subtype="ULAW"),
    "extensible-float-48k": dict(rate=48000, channels=2, subtype="FLOAT", container="WAVEX"),
    "extensible-pcm24-22k05": dict(rate=22050, subtype="PCM_24", container="WAVEX"),
}


def _is_bridge_wav(path: Path) -> float:
    """The length in seconds of a WAV in the format the bridge plays; fails on anything else."""
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getcomptype()) == (1, 2, BRIDGE_RATE, "NONE")
        return w.getnframes() / BRIDGE_RATE


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_common_wav_converts_to_what_the_bridge_plays(tmp_path: Path, name: str) -> None:
    source = tone(tmp_path / f"{name}.wav", **FORMATS[name])
    prepared = prepare_message(source, key="campaign.abandon_message")
    seconds = _is_bridge_wav(prepared.path)
    assert abs(seconds - 1.0) < 0.002 and abs(prepared.seconds - 1.0) < 0.002
    assert FORMATS[name]["subtype"] in prepared.source_format and prepared.source_rate == FORMATS[name]["rate"]
    assert prepared.path.parent != source.parent and prepared.path.name.endswith(f"-{name}.wav")
    hits = tone_frames(prepared.path, TONE)
    assert sum(hits) >= len(hits) - 2, "".join("#" if h else "." for h in hits)  # the tone, at its pitch
    assert -7.0 < prepared.peak_dbfs < -5.0  # 0.5 of full scale, mixed down without gain or loss


def test_full_scale_float_is_scaled_down_not_clipped(tmp_path: Path) -> None:
    """A float file may exceed full scale, and resampling a full-scale tone overshoots: the copy is attenuated
    just enough, since clipping would be audible distortion."""
    prepared = prepare_message(tone(tmp_path / "loud.wav", 48000, subtype="FLOAT", amplitude=1.5), key="k")
    assert -3.6 < prepared.gain_db < -3.4
    samples = np.frombuffer(prepared.path.read_bytes()[44:], dtype="<i2")
    assert samples.max() <= 32767 and np.count_nonzero(np.abs(samples.astype(int)) >= 32767) < 20


def test_pjsua2_plays_every_converted_copy_and_none_of_the_originals_but_pcm16(tmp_path: Path) -> None:
    """The reason for all this, in pjsua2's own words: its player opens each copy, and of the originals only the
    16-bit PCM and mu-law ones (8-bit, 24-bit, 32-bit and float are PJMEDIA_EWAVEUNSUPP)."""
    originals = {n: tone(tmp_path / f"{n}.wav", **f) for n, f in FORMATS.items()}
    copies = {n: prepare_message(p, key="k").path for n, p in originals.items()}
    script = (
        "import sys, pjsua2 as pj\n"
        "ep = pj.Endpoint(); ep.libCreate(); c = pj.EpConfig(); c.logConfig.level = 0; c.logConfig.consoleLevel = 0\n"
        "ep.libInit(c); ep.libStart(); ep.audDevManager().setNullDev()\n"
        "for f in sys.argv[1:]:\n"
        "    p = pj.AudioMediaPlayer()\n"
        "    try:\n"
        "        p.createPlayer(f, pj.PJMEDIA_FILE_NO_LOOP); print('ok', f)\n"
        "    except pj.Error as e:\n"
        "        print('refused', f)\n"
        "    del p\n"
    )
    paths = [str(p) for p in [*copies.values(), *originals.values()]]
    out = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=60).stdout
    verdict = {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in out.splitlines() if " /" in line}
    assert all(verdict[str(p)] == "ok" for p in copies.values()), out
    refused = {n for n, p in originals.items() if verdict[str(p)] == "refused"}
    assert refused == set(FORMATS) - {"pcm16-8k", "pcm16-16k", "ulaw-8k"}, out


def _silent(path: Path) -> None:
    sf.write(str(path), np.zeros((16000, 2), dtype=np.float32), 48000, subtype="FLOAT")


def _header_only(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)


def _truncated_header(path: Path) -> None:
    tone(path, 8000)
    path.write_bytes(path.read_bytes()[:30])


BAD: dict[str, tuple[Callable[[Path], object], str]] = {
    "text renamed .wav": (lambda p: p.write_text("hello, this is not audio\n" * 20), "is not a readable WAV file"),
    "empty file": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "truncated header": (_truncated_header, "is not a readable WAV file"),
    "zero-length WAV": (_header_only, "holds no audio"),
    "all-zero float audio": (_silent, "is silent (only zeros)"),
    "near-silent 16-bit": (lambda p: tone(p, 8000, amplitude=0.0005), "is silent (its loudest sample is -66 dBFS)"),
    "FLAC renamed .wav": (lambda p: tone(p, 16000, container="FLAC"), "is FLAC (Free Lossless Audio Codec) audio"),
    "over a minute": (lambda p: tone(p, 8000, seconds=61.0), "lasts 61 s; a message must be at most 60 s"),
    "4-kHz rate": (lambda p: tone(p, 4000), "sampled at 4000 Hz"),
    "a directory": (lambda p: p.mkdir(), "is not a file"),
    "missing": (lambda p: None, "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unplayable_files_are_refused_naming_the_key(tmp_path: Path, case: str) -> None:
    make, words = BAD[case]
    path = tmp_path / "message.wav"
    make(path)
    with pytest.raises(ConfigError) as info:
        prepare_message(path, key="campaign.abandon_message")
    assert info.value.key == "campaign.abandon_message" and words in info.value.message, info.value.message
    assert str(path) in info.value.message and "\n" not in str(info.value)


def test_the_copy_outlives_the_original(tmp_path: Path) -> None:
    source = tone(tmp_path / "abandon.wav", 44100, subtype="PCM_24")
    prepared = prepare_message(source, key="campaign.abandon_message")
    before = hashlib.sha256(prepared.path.read_bytes()).hexdigest()
    source.write_text("replaced by something else")
    assert hashlib.sha256(prepared.path.read_bytes()).hexdigest() == before
    source.unlink()
    assert hashlib.sha256(prepared.path.read_bytes()).hexdigest() == before
    _is_bridge_wav(prepared.path)


def test_copies_are_private_and_removed_at_exit(tmp_path: Path) -> None:
    source = tone(tmp_path / "abandon.wav", 8000)
    code = (
        "import os, sys, dialer, dialer.live.campaign, dialer.commands.worker\n"
        "assert 'soundfile' not in sys.modules and 'soxr' not in sys.modules, 'import dialer must stay light'\n"
        "from dialer.sip.message_audio import prepare_message\n"
        "p = prepare_message(sys.argv[1], key='k').path\n"
        "print(p, oct(os.stat(p.parent).st_mode & 0o777), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(source)], capture_output=True, text=True, env=env, check=True)
    copy, mode = out.stdout.split()
    assert mode == oct(stat.S_IRWXU)  # owner only: nobody else can swap the message under a running campaign
    assert not Path(copy).exists() and not Path(copy).parent.exists()


# -- at the boundary: dialer run and dialer worker ----------------------------------------------------------


def test_campaign_plays_a_converted_copy_and_keeps_the_users_path(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    tone(tmp_path / "abandon.wav", 48000, channels=2, subtype="FLOAT")
    config = load_campaign(path)
    assert config.abandon_message == tmp_path / "abandon.wav"
    assert Path(config.pool.abandon_wav).parent != tmp_path and config.pool.abandon_wav.endswith("abandon.wav")
    _is_bridge_wav(Path(config.pool.abandon_wav))


def _store_files(tmp_path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in tmp_path.iterdir()
        if p.is_file() and (p.name.startswith("campaign.sqlite") or p.name.endswith(".rejects.csv"))
    }  # campaign.sqlite.owners/ holds a running dispatcher's lock file, removed when it closes


MACHINE = """machine = "message"
machine_message = "vm.wav"
"""


@pytest.mark.parametrize(
    ("which", "make", "words"),
    [
        ("abandon.wav", BAD["text renamed .wav"][0], "campaign.abandon_message: "),
        ("abandon.wav", _silent, "campaign.abandon_message: "),
        ("abandon.wav", _truncated_header, "campaign.abandon_message: "),
        ("vm.wav", BAD["text renamed .wav"][0], "campaign.machine_message: "),
        ("vm.wav", BAD["empty file"][0], "campaign.machine_message: "),
    ],
)
@pytest.mark.parametrize("existing_store", [False, True])
def test_dialer_run_refuses_a_bad_message_before_anything(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
    make: Callable[[Path], object],
    words: str,
    existing_store: bool,
) -> None:
    body = BASE.replace("[campaign]\n", "[campaign]\n" + MACHINE) + "\n[amd]\nenabled = true\n"
    path = write_campaign(tmp_path, body)
    tone(tmp_path / "vm.wav", 44100, subtype="PCM_24")
    if existing_store:  # a store from an earlier run: left exactly as it was
        LiveCampaign.open(load_campaign(path)).close()
    before = _store_files(tmp_path)
    assert bool(before) is existing_store
    (tmp_path / which).unlink()
    make(tmp_path / which)
    assert main(["run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"dialer: error: {words}{tmp_path / which}"), captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.out == ""  # not even the import summary: nothing was read into the store, no call placed
    assert _store_files(tmp_path) == before


def test_dialer_worker_refuses_a_bad_message_before_the_pool_or_the_broker(tmp_path: Path) -> None:
    """No broker listens on the port given and no trunk exists: a worker that got past the check would hang in
    its reconnect loop or fail differently. It exits 2 at once with the one line."""
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    cmd = [sys.executable, "-m", "dialer.cli", "worker", "--broker-port", str(free_port()), "--campaign", "c1",
           "--worker-id", "w1", "--trunk-host", "127.0.0.1", "--trunk-port", str(free_port()),
           "--caller-id", "+12127362000", "--abandon-wav", str(bad)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path)
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"dialer: error: --abandon-wav: {bad} is not a readable WAV file"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


# -- on the wire ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float-48k-stereo", "pcm24-44k1"])
def test_converted_message_reaches_the_callee_as_audio(pj_peer: type, tmp_path: Path, name: str) -> None:
    """A float (or 24-bit) 700-Hz message, which pjsua2 refuses as it is, played to an answered call through the
    worker pool: the callee (pj_peer.py's softphone, since SIPp cannot record) records the tone for the whole
    message. The worker hangs up when the message ends."""
    source = tone(tmp_path / f"{name}.wav", **{**FORMATS[name], "seconds": 1.5})
    message = prepare_message(source, key="campaign.abandon_message")
    source.unlink()  # only the copy is played
    callee = pj_peer()

    async def scenario() -> Recorder:
        rec = Recorder()
        driver = await started(pool(callee.port, abandon_wav=str(message.path)), rec)
        try:
            await driver.dial(1, "2000001", 20)
            await rec.wait(lambda e: e.call_id == 1 and type(e).__name__ == "Answered")
            driver.play_message(1)
            await rec.wait(lambda e: isinstance(e, Ended), timeout=15)
        finally:
            await driver.close()
        return rec

    rec = run(scenario())
    assert any(isinstance(e, MessageStarted) for e in rec.of(1)) and rec.of(1)[-1] == Ended(1, "local")
    frames = tone_frames(callee.recording(1), TONE)
    print(f"\n{name}: {sum(frames)} of {len(frames)} recorded 20-ms frames hold the message's tone")
    assert first_run(frames) is not None, "the callee never heard the message"
    # A silent message records no tone frame at all; 0.8 s of the 1.5 s leaves room for frames a loaded machine's
    # RTP loses (on an idle one about 74 of 76 frames hold the tone).
    assert sum(frames) >= 40, "".join("#" if f else "." for f in frames)
