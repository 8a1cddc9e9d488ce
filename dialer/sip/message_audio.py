"""Recorded messages (the abandonment message, the voicemail message) checked and converted once, at start.

pjsua2's WAV player (``AudioMediaPlayer``) plays 16-bit PCM (and mu-law) WAV and refuses the rest only when a call
needs it: an 8-, 24- or 32-bit or float file fails with ``PJMEDIA_EWAVEUNSUPP``, a text file named ``.wav`` with
``PJMEDIA_ENOTVALIDWAVE``, when the first person is abandoned, so that person hears nothing. Files are also opened
again for every call, so a file deleted or replaced after start changes what later callers hear.
:func:`prepare_message` removes both failures at the boundary: it reads any common WAV, refuses what no caller
could hear with a :class:`~dialer.errors.ConfigError` naming the key (one line, exit status 2, before any call or
store change), and writes the audio once, converted, into a directory this process owns. Workers play that copy;
the user's file is never read again.


The copy is 16 kHz mono 16-bit PCM: 16 kHz is the clock rate of pjsua2's conference bridge (pjsua's default
``MediaConfig.clockRate``, which :mod:`dialer.sip.worker` keeps), so the player joins the bridge without a
resampler of its own. The bridge then converts to the call's codec rate as it does for any port: 8 kHz for
G.711, the usual trunk codec, and the full band for a wideband codec such as G.722. Doing the rate change here,
with libsoxr's high-quality filter, means pjmedia's resampler only ever halves a 16-kHz signal.

Reading uses ``soundfile`` (libsndfile; its wheels bundle the library) and resampling ``soxr``; both belong to
the ``[sip]`` extra and load only when a message is prepared, so ``import dialer`` stays light.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError

log = logging.getLogger("dialer.sip.message_audio")

#: The sample rate of the converted copy: the conference bridge's clock rate (see the module docstring).
BRIDGE_RATE = 16000

#: Longest message accepted. A message holds one of a worker's few call slots (four in PyPI's pjsua2 wheel) and
#: one of its 32 WAV players for as long as it plays, and regulators ask for a short message (who called, a
#: number to call back, how to opt out: 10-20 s). A file longer than a minute is almost surely the wrong file, so
#: it is refused rather than played to every abandoned person.
MAX_SECONDS = 60.0

#: Lowest sample rate read. Below 8 kHz even a G.711 call carries more band than the file has.
MIN_RATE = 8000

#: A message whose loudest sample is below this level is inaudible on a telephone line, under its noise: such a
#: file is a silent or wrong file, not a quiet recording.
SILENCE_DBFS = -60.0

#: libsndfile's names of the WAV family: RIFF WAVE (including WAVE_FORMAT_EXTENSIBLE), and its 64-bit variants.
WAV_CONTAINERS = frozenset({"WAV", "WAVEX", "RF64", "W64"})

_CHANNELS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A message ready to play: ``path`` is the converted copy (16-bit PCM, :data:`BRIDGE_RATE` Hz, mono) that
    workers play; the other fields describe the user's file, for logs."""

    path: Path
    source: Path
    seconds: float
    source_rate: int
    source_channels: int
    source_format: str  # libsndfile's container and sample format, e.g. "WAVEX FLOAT"
    peak_dbfs: float  # of the source at the bridge's rate, before any gain
    gain_db: float  # 0, or the negative gain that kept a source beyond full scale from clipping

    def describe(self) -> str:
        """One line for a log: what the file was and what is played."""
        channels = _CHANNELS.get(self.source_channels, f"{self.source_channels} channels")
        return (
            f"{self.source} ({self.source_format}, {self.source_rate} Hz {channels}, {self.seconds:.2f} s, "
            f"peak {self.peak_dbfs:.1f} dBFS) plays as {self.path} ({BRIDGE_RATE} Hz mono 16-bit"
            + (f", {self.gain_db:.2f} dB so as not to clip)" if self.gain_db else ")")
        )


# -- the private directory -------------------------------------------------------------------------------------

_lock = threading.Lock()
_directory: Path | None = None


def _remove(directory: Path, owner: int) -> None:
    if os.getpid() == owner:  # a forked child inherits the hook; only the creator removes the copies
        shutil.rmtree(directory, ignore_errors=True)


def message_directory() -> Path:
    """This process's directory of converted messages (mode 0700), created on first use, removed at exit.

    Private so that no other user can swap a message under a running campaign; removed at exit so that a crash
    loop does not fill the disk with copies (a SIGKILL leaves it, in the system's temporary directory).
    """
    global _directory
    with _lock:
        if _directory is None or not _directory.is_dir():
            _directory = Path(tempfile.mkdtemp(prefix="dialer-messages-"))
            atexit.register(_remove, _directory, os.getpid())
        return _directory


# -- reading and converting ------------------------------------------------------------------------------------


def _import(name: str, key: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(
            key, f"reading message audio needs the {name} package: pip install 'predictive-dialer[sip]'"
        ) from None


def _reason(exc: Exception) -> str:
    """libsndfile's own words ("Format not recognised.") without the file name soundfile puts before them."""
    text = getattr(exc, "error_string", None) or str(exc)
    return str(text).strip().rstrip(".")


def prepare_message(path: str | os.PathLike[str], *, key: str) -> PreparedMessage:
    """Check the WAV at ``path`` and write its converted copy; return where the copy is, with facts for logs.

    Accepts any WAV libsndfile decodes (8 kHz or more, any channel count mixed down to mono, 8/16/24/32-bit integer,
    32/64-bit float, mu-law, A-law, ADPCM, WAVE_FORMAT_EXTENSIBLE). Raises :class:`ConfigError` for ``key`` with
    one sentence when the file is missing, unreadable, empty, not a WAV, has no samples, is silent, has a rate
    below 8 kHz, or is longer than :data:`MAX_SECONDS`.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise ConfigError(key, f"{source} does not exist" if not source.exists() else f"{source} is not a file")
    try:
        size = source.stat().st_size
        with open(source, "rb"):  # permissions: say so plainly instead of libsndfile's "System error"
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {source}: {exc.strerror}") from None
    if size == 0:
        raise ConfigError(key, f"{source} is empty (0 bytes), not a WAV file")

    sf = _import("soundfile", key)
    try:
        info = sf.info(str(source))
    except (RuntimeError, OSError) as exc:
        raise ConfigError(key, f"{source} is not a readable WAV file ({_reason(exc)})") from None
    if info.format not in WAV_CONTAINERS:
        raise ConfigError(key, f"{source} is {info.format_info} audio, not a WAV file; convert it to WAV")
    if info.frames <= 0:
        raise ConfigError(key, f"{source} holds no audio (zero samples)")
    rate = int(info.samplerate)
    if rate < MIN_RATE:
        raise ConfigError(key, f"{source} is sampled at {rate} Hz; at least {MIN_RATE} Hz is needed")
    if info.frames / rate > MAX_SECONDS:
        raise ConfigError(
            key, f"{source} lasts {info.frames / rate:.0f} s; a message must be at most {MAX_SECONDS:.0f} s"
        )

    np = _import("numpy", key)
    try:
        data = sf.read(str(source), dtype="float64", always_2d=True)[0]
    except (RuntimeError, OSError) as exc:
        raise ConfigError(key, f"{source} cannot be decoded ({_reason(exc)})") from None
    if data.shape[0] == 0:
        raise ConfigError(key, f"{source} holds no audio (its data chunk is empty or cut off)")
    mono = np.nan_to_num(data.mean(axis=1), nan=0.0, posinf=1.0, neginf=-1.0)
    if rate != BRIDGE_RATE:
        soxr = _import("soxr", key)
        mono = soxr.resample(mono, rate, BRIDGE_RATE, quality="HQ")
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs < SILENCE_DBFS:
        level = "only zeros" if peak == 0 else f"its loudest sample is {peak_dbfs:.0f} dBFS"
        raise ConfigError(key, f"{source} is silent ({level}); a caller would hear nothing")
    gain_db = 0.0
    if peak > 32767 / 32768:  # a float file beyond full scale, or the resampler's overshoot on a full-scale one
        gain_db = 20 * math.log10(32767 / 32768 / peak)
        mono = mono * (32767 / 32768 / peak)  # scaled down rather than clipped: clipping is audible distortion
    pcm = np.clip(np.round(mono * 32768.0), -32768, 32767).astype("<i2").tobytes()

    directory = message_directory()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem)[:40] or "message"
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.strip("-"))[:40] or "message"
    fd, name = tempfile.mkstemp(dir=directory, prefix=f"{prefix}-", suffix=f"-{stem}.wav")
    with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:  # the plain 44-byte header pjmedia reads
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(BRIDGE_RATE)
        w.writeframes(pcm)
    prepared = PreparedMessage(
        path=Path(name),
        source=source,
        seconds=data.shape[0] / rate,
        source_rate=rate,
        source_channels=int(info.channels),
        source_format=f"{info.format} {info.subtype}",
        peak_dbfs=peak_dbfs,
        gain_db=gain_db,
    )
    log.info("%s: %s", key, prepared.describe())
    return prepared


__all__ = ["BRIDGE_RATE", "MAX_SECONDS", "PreparedMessage", "message_directory", "prepare_message"]
