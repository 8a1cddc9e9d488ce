"""A loopback packet capture for SIP timing: what actually went on the wire, with kernel timestamps.

Why packets: the 2-second rule and the 15-second ring rule are about what the person and the network see, not
about when our code asked for something. A driver's "message started" event fires when playback was *ordered*;
the person hears it when the first RTP packet carrying sound leaves. So tests and benchmarks measure from a
capture of interface ``lo``, independently of the code under test.

How: a raw ``AF_PACKET`` socket bound to ``lo`` (root only; no tcpdump or scapy), a classic BPF filter so the
kernel drops everything but IPv4 UDP/TCP to or from the ports asked for (and drops loopback's outgoing copy of
each packet, which would otherwise be seen twice), ``SO_TIMESTAMPNS`` for the kernel's receive time, and one
background thread that parses Ethernet/IPv4/UDP/TCP into :class:`SipMessage` and :class:`RtpPacket` records.
The thread never raises: anything it cannot parse is counted in :attr:`WireCapture.errors`.

Dialer-independent on purpose (stdlib only): tests import it through ``tests/sip/wire.py`` and benchmarks
directly, so both measure with the same parser.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import ctypes
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AUDIBLE_RMS",
    "MediaLink",
    "RtpPacket",
    "SipMessage",
    "WireCapture",
    "alaw_to_linear",
    "parse_sip",
    "payload_rms",
    "ulaw_to_linear",
]

# --- constants of the kernel interfaces used -------------------------------------------------------------------

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: a struct timespec of two native longs, as cmsg SCM_TIMESTAMPNS (35)
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: BPF's view of the packet type (4 = outgoing)
_TIMESPEC = struct.Struct("@ll")

#: RMS (of 32767) above which a PCMU/PCMA frame counts as sound: about -44 dBFS. Silence (PCMU 0xFF/0x7F,
#: PCMA 0xD5/0x55) decodes to |x| <= 8, and pjmedia's or SIPp's idle frames sit far below it; speech is in the
#: thousands.
AUDIBLE_RMS = 200.0


# --- G.711 ---------------------------------------------------------------------------------------------------


def _ulaw(byte: int) -> int:
    u = ~byte & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _alaw(byte: int) -> int:
    a = byte ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ULAW = tuple(_ulaw(b) for b in range(256))
ALAW = tuple(_alaw(b) for b in range(256))
_ULAW_SQ = tuple(x * x for x in ULAW)
_ALAW_SQ = tuple(x * x for x in ALAW)


def ulaw_to_linear(payload: bytes) -> array.array[int]:
    """G.711 μ-law bytes as 16-bit linear samples."""
    return array.array("h", (ULAW[b] for b in payload))


def alaw_to_linear(payload: bytes) -> array.array[int]:
    """G.711 A-law bytes as 16-bit linear samples."""
    return array.array("h", (ALAW[b] for b in payload))


def payload_rms(payload_type: int, payload: bytes) -> float | None:
    """RMS of a G.711 payload (PT 0 μ-law, PT 8 A-law) in 16-bit units; ``None`` for any other codec."""
    if not payload:
        return 0.0 if payload_type in (0, 8) else None
    if payload_type == 0:
        table = _ULAW_SQ
    elif payload_type == 8:
        table = _ALAW_SQ
    else:
        return None
    return float((sum(map(table.__getitem__, payload)) / len(payload)) ** 0.5)


# --- what is recorded ----------------------------------------------------------------------------------------

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP request or response as captured. ``time`` is ``time.monotonic()``'s clock, ``wall`` is
    ``time.time()``'s, both taken from the kernel's receive timestamp."""

    time: float
    wall: float
    src: Addr
    dst: Addr
    transport: Literal["udp", "tcp"]
    method: str | None  # a request's method; None for a response
    status: int | None  # a response's status code; None for a request
    reason: str
    uri: str  # a request's Request-URI; "" for a response
    call_id: str
    cseq: int
    cseq_method: str
    from_tag: str
    to_tag: str
    media_addr: str | None  # the SDP's c= address, if the message carries SDP
    media_port: int | None  # the SDP's m=audio port
    headers: dict[str, str] = field(repr=False, compare=False)
    body: bytes = field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``INVITE``, ``180``, ``200``...: the method of a request or the status of a response."""
        return self.method if self.method is not None else str(self.status)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    @property
    def media(self) -> Addr | None:
        if self.media_port is None:
            return None
        return (self.media_addr or self.src[0], self.media_port)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``rms`` is the decoded G.711 level (``None`` for other codecs), computed at capture so
    ``payload`` can be dropped to save memory (``keep_payload=False``)."""

    time: float
    wall: float
    src: Addr
    dst: Addr
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes = field(repr=False)
    payload_len: int
    rms: float | None

    def audible(self, threshold: float = AUDIBLE_RMS) -> bool:
        """Whether the packet carries sound: a G.711 frame above ``threshold`` RMS. Comfort noise (PT 13),
        DTMF events and silence frames (PCMU 0xFF/0x7F) are not sound."""
        return self.rms is not None and self.rms > threshold


@dataclass(frozen=True, slots=True)
class MediaLink:
    """A dialog's media, from its SDP: the caller's (offer) and callee's (answer) RTP addresses, and the span
    of the dialog during which RTP between them belongs to it (ports are reused by later calls)."""

    call_id: str
    caller: Addr | None
    callee: Addr | None
    start: float
    end: float


# --- parsing -------------------------------------------------------------------------------------------------

_COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "c": "content-type",
    "v": "via",
    "m": "contact",
}
_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(rb"^SIP/2\.0 (\d{3})(?: (.*))?$")
_START = re.compile(rb"(?:^|\r\n)(SIP/2\.0 \d{3}|[A-Z]+ \S+ SIP/2\.0)\r\n")
_TAG = re.compile(r";\s*tag=([^;>\s,]+)", re.IGNORECASE)
_M_AUDIO = re.compile(rb"^m=audio (\d+)", re.MULTILINE)
_C_LINE = re.compile(rb"^c=IN IP[46] ([^\s/]+)", re.MULTILINE)


def _looks_like_sip(data: bytes) -> bool:
    return data.startswith(b"SIP/2.0 ") or (
        data[:1].isupper() and b" SIP/2.0\r\n" in data[:300] and data[: data.find(b" ")].isalpha()
    )


def _tag(value: str) -> str:
    tail = value[value.rfind(">") + 1 :] if ">" in value else value
    m = _TAG.search(tail)
    return m.group(1) if m else ""


def parse_sip(
    data: bytes, *, t: float = 0.0, wall: float = 0.0, src: Addr = ("", 0), dst: Addr = ("", 0), transport: str = "udp"
) -> SipMessage:
    """One SIP message (start line, headers, body) as a :class:`SipMessage`; raises ``ValueError`` if it is not."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    first = lines[0].strip()
    method: str | None = None
    status: int | None = None
    reason = ""
    uri = ""
    if m := _STATUS_LINE.match(first):
        status = int(m.group(1))
        reason = (m.group(2) or b"").decode("utf-8", "replace")
    elif m := _REQUEST_LINE.match(first):
        method = m.group(1).decode("ascii")
        uri = m.group(2).decode("utf-8", "replace")
    else:
        raise ValueError(f"not a SIP start line: {first[:60]!r}")
    headers: dict[str, str] = {}
    last = ""
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t") and last:  # a folded continuation line
            headers[last] += " " + raw.strip().decode("utf-8", "replace")
            continue
        name, colon, value = raw.partition(b":")
        if not colon:
            continue
        key = name.strip().decode("ascii", "replace").lower()
        key = _COMPACT.get(key, key)
        text = value.strip().decode("utf-8", "replace")
        headers[key] = f"{headers[key]}, {text}" if key in headers and key == "via" else headers.get(key, text)
        last = key
    call_id = headers.get("call-id", "")
    if not call_id:
        raise ValueError("SIP message without Call-ID")
    cseq_num, _, cseq_method = headers.get("cseq", "").partition(" ")
    try:
        cseq = int(cseq_num)
    except ValueError:
        cseq = -1
    if "content-length" in headers:
        with contextlib.suppress(ValueError):
            body = body[: int(headers["content-length"])]
    media_port: int | None = None
    media_addr: str | None = None
    if body and "sdp" in headers.get("content-type", "application/sdp").lower():
        if mm := _M_AUDIO.search(body):
            media_port = int(mm.group(1))
        if cm := _C_LINE.search(body):
            media_addr = cm.group(1).decode("ascii", "replace")
    return SipMessage(
        time=t,
        wall=wall,
        src=src,
        dst=dst,
        transport="tcp" if transport == "tcp" else "udp",
        method=method,
        status=status,
        reason=reason,
        uri=uri,
        call_id=call_id,
        cseq=cseq,
        cseq_method=cseq_method.strip().upper(),
        from_tag=_tag(headers.get("from", "")),
        to_tag=_tag(headers.get("to", "")),
        media_addr=media_addr,
        media_port=media_port,
        headers=headers,
        body=bytes(body),
    )


def _bpf_program(either: Collection[int] | None, dst_only: Collection[int]) -> list[tuple[int, int, int, int]]:
    """Classic BPF: accept IPv4 UDP/TCP, not loopback's outgoing copy, not a non-first fragment, whose source
    or destination port is in ``either`` or whose destination port is in ``dst_only`` (``either`` None: any).
    Ports are grouped into ranges; each range costs three instructions and jumps with ``ja`` (32-bit offsets),
    so the 8-bit conditional offsets never overflow."""
    LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
    LDX_MSH = 0xB1
    LD_H_IND = 0x48
    JEQ, JGE, JGT, JSET, JA = 0x15, 0x35, 0x25, 0x45, 0x05
    RET = 0x06
    prog: list[tuple[int, int, int, int]] = []
    drop_jumps: list[tuple[int, str]] = []  # (index, "jt"/"jf") to patch to the drop instruction
    accept_jumps: list[int] = []  # indices of ja to patch to the accept instruction

    def emit(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> int:
        prog.append((code, jt, jf, k))
        return len(prog) - 1

    drop_jumps.append((emit(LD_W_ABS, k=SKF_AD_PKTTYPE) + 1, "jt"))
    emit(JEQ, 0, 0, PACKET_OUTGOING)
    emit(LD_H_ABS, k=12)
    drop_jumps.append((emit(JEQ, 0, 0, ETH_P_IP), "jf"))
    emit(LD_B_ABS, k=23)
    emit(JEQ, 1, 0, 17)
    drop_jumps.append((emit(JEQ, 0, 0, 6), "jf"))
    emit(LD_H_ABS, k=20)
    drop_jumps.append((emit(JSET, 0, 0, 0x1FFF), "jt"))

    def ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for p in sorted(set(ports)):
            if out and p == out[-1][1] + 1:
                out[-1] = (out[-1][0], p)
            else:
                out.append((p, p))
        return out

    def checks(rs: list[tuple[int, int]]) -> None:
        for lo, hi in rs:
            emit(JGE, 0, 2, lo)  # below lo: skip to the next range
            emit(JGT, 1, 0, hi)  # above hi: skip the ja
            accept_jumps.append(emit(JA))

    if either is None:
        accept_jumps.append(emit(JA))
    else:
        emit(LDX_MSH, k=14)
        emit(LD_H_IND, k=14)  # source port
        checks(ranges(either))
        emit(LD_H_IND, k=16)  # destination port
        checks(ranges([*either, *dst_only]))
    drop = emit(RET, k=0)
    accept = emit(RET, k=0x40000)
    for i, which in drop_jumps:
        code, jt, jf, k = prog[i]
        off = drop - i - 1
        prog[i] = (code, off, jf, k) if which == "jt" else (code, jt, off, k)
    for i in accept_jumps:
        code, jt, jf, _ = prog[i]
        prog[i] = (code, jt, jf, accept - i - 1)
    return prog


class _TcpStream:
    """Reassembles one direction of a TCP connection into SIP messages (loopback: in order, no loss).

    A capture started mid-stream resynchronises on the next SIP start line."""

    __slots__ = ("buf", "next_seq", "synced")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.next_seq: int | None = None
        self.synced = False

    def feed(self, seq: int, data: bytes) -> list[bytes]:
        if self.next_seq is not None:
            delta = (seq - self.next_seq) & 0xFFFFFFFF
            if delta >= 0x80000000:  # a retransmission of bytes already seen
                skip = (self.next_seq - seq) & 0xFFFFFFFF
                if skip >= len(data):
                    return []
                data = data[skip:]
            elif delta:  # a gap: bytes lost to us; drop what we hold and resynchronise
                self.buf.clear()
                self.synced = False
        self.next_seq = (seq + len(data)) & 0xFFFFFFFF
        self.buf += data
        out: list[bytes] = []
        while True:
            if not self.synced:
                if _looks_like_sip(bytes(self.buf[:400])):
                    self.synced = True
                else:
                    m = _START.search(self.buf)
                    if m is None:
                        if len(self.buf) > 65536:
                            del self.buf[:-1024]
                        return out
                    del self.buf[: m.start(1)]
                    self.synced = True
            while self.buf[:2] == b"\r\n":  # keep-alive CRLFs between messages
                del self.buf[:2]
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            m = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", self.buf[:end], re.IGNORECASE)
            length = int(m.group(1)) if m else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return out
            out.append(bytes(self.buf[:total]))
            del self.buf[:total]


# --- the capture ---------------------------------------------------------------------------------------------


class WireCapture:
    """Capture SIP and RTP on ``lo`` from :meth:`start` to :meth:`stop` (or as a context manager).

    ``ports``: keep packets whose source or destination port is in it (``None``: every UDP/TCP packet; a busy
    host then costs memory and CPU). ``dst_ports``: keep packets *sent to* these ports only, e.g. a callee's
    media port when only what it hears matters (halves the RTP kept). ``keep_payload=False`` drops RTP payloads
    after computing their level. Needs root (``CAP_NET_RAW``); :meth:`start` raises ``PermissionError`` without.

    Timestamps: each record's ``time`` is on ``time.monotonic()``'s clock and ``wall`` on ``time.time()``'s,
    from the kernel's receive timestamp (``SO_TIMESTAMPNS``) or, if absent, the moment the thread read it.
    """

    def __init__(
        self,
        ports: Iterable[int] | None = None,
        *,
        dst_ports: Iterable[int] = (),
        interface: str = "lo",
        keep_payload: bool = True,
        buffer_bytes: int = 256 * 2**20,
    ) -> None:
        self.ports: frozenset[int] | None = None if ports is None else frozenset(ports)
        self.dst_ports = frozenset(dst_ports)
        self.interface = interface
        self.keep_payload = keep_payload
        self.buffer_bytes = buffer_bytes
        self.sip: list[SipMessage] = []
        self.rtp: list[RtpPacket] = []
        self.errors = 0  # packets that could not be parsed (or failed in the thread for any reason)
        self.last_error = ""
        self.other = 0  # packets kept by the filter but neither SIP nor RTP (RTCP, keep-alives, TCP handshakes)
        self.packets = 0  # packets read from the socket
        self.kernel_drops = 0  # packets the kernel dropped because we did not read fast enough
        self._by_call: dict[str, list[SipMessage]] = {}
        self._by_dst: dict[int, list[RtpPacket]] = {}
        self._by_flow: dict[tuple[int, int], list[RtpPacket]] = {}
        self._tcp: dict[tuple[Addr, Addr], _TcpStream] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._filter_buf: ctypes.Array[ctypes.c_char] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> WireCapture:
        """Open and bind the socket (errors raise here, in the caller), then read it in a daemon thread.
        Every packet that crosses ``lo`` after this returns is captured."""
        if self._thread is not None:
            raise RuntimeError("capture already started")
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.buffer_bytes)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_bytes)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._attach_filter(sock)
            sock.bind((self.interface, ETH_P_ALL))
            sock.settimeout(0.1)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"wire-capture-{self.interface}", daemon=True)
        self._thread.start()
        return self

    def stop(self, settle: float = 0.05) -> WireCapture:
        """Wait ``settle`` seconds for packets in flight, read what the kernel still holds, stop the thread."""
        if self._thread is None:
            return self
        time.sleep(settle)
        self._stop.set()
        self._thread.join(10)
        self._thread = None
        if self._sock is not None:
            self._read_stats()
            self._sock.close()
            self._sock = None
        return self

    def __enter__(self) -> WireCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _attach_filter(self, sock: socket.socket) -> None:
        """Filter in the kernel, so the thread only wakes for packets we keep (best effort: user space checks
        the ports again, so a kernel that refuses the filter costs CPU, not correctness)."""
        prog = _bpf_program(self.ports, self.dst_ports)
        if len(prog) > 4096:
            return
        raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
        buf = ctypes.create_string_buffer(raw, len(raw))
        self._filter_buf = buf  # the kernel copies it, but keep it alive until then anyway
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def _read_stats(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            _, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.kernel_drops += drops

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        ancbuf = socket.CMSG_SPACE(_TIMESPEC.size)
        # Timestamps are the kernel's, so a starved thread measures right, but it loses packets once the socket
        # buffer fills: on a saturated host (a benchmark) run ahead of the load if allowed (root).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        offset = time.time() - time.monotonic()
        last_stats = time.monotonic()
        while True:
            try:
                data, anc, _, addr = sock.recvmsg(65600, ancbuf)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            except BlockingIOError:
                return
            except OSError as exc:
                self._error(f"recv: {exc}")
                if self._stop.is_set():
                    return
                time.sleep(0.01)
                continue
            try:
                if self._stop.is_set():  # draining: read what is left without waiting
                    sock.setblocking(False)
                now = time.monotonic()
                if now - last_stats > 1.0:
                    last_stats = now
                    offset = time.time() - time.monotonic()  # follow NTP slews of the wall clock
                    self._read_stats()
                self.packets += 1
                if addr[2] == PACKET_OUTGOING:
                    continue
                wall = 0.0
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(cdata)
                        wall = sec + nsec / 1e9
                if wall == 0.0:
                    wall = time.time()
                self._packet(data, wall - offset, wall)
            except Exception as exc:  # never let a packet kill the thread
                self._error(f"{type(exc).__name__}: {exc}")

    def _error(self, text: str) -> None:
        self.errors += 1
        self.last_error = text

    def _wanted(self, sport: int, dport: int) -> bool:
        if self.ports is None:
            return True
        return sport in self.ports or dport in self.ports or dport in self.dst_ports

    def _packet(self, frame: bytes, t: float, wall: float) -> None:
        """Parse one Ethernet frame and record what it carries; raises on malformed input (counted by caller)."""
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return
        ip = 14
        vihl = frame[ip]
        if vihl >> 4 != 4:
            return
        ihl = (vihl & 0x0F) * 4
        total = int.from_bytes(frame[ip + 2 : ip + 4], "big")
        if ihl < 20 or total < ihl or ip + total > len(frame):
            raise ValueError("truncated IPv4 packet")
        if int.from_bytes(frame[ip + 6 : ip + 8], "big") & 0x1FFF:
            return  # a non-first fragment has no transport header
        proto = frame[ip + 9]
        src_ip = socket.inet_ntoa(frame[ip + 12 : ip + 16])
        dst_ip = socket.inet_ntoa(frame[ip + 16 : ip + 20])
        l4 = ip + ihl
        end = ip + total
        if proto == 17:
            if end - l4 < 8:
                raise ValueError("truncated UDP header")
            sport, dport, ulen = struct.unpack_from("!HHH", frame, l4)
            if not self._wanted(sport, dport):
                return
            payload = frame[l4 + 8 : min(end, l4 + max(ulen, 8))]
            self._udp(payload, t, wall, (src_ip, sport), (dst_ip, dport))
        elif proto == 6:
            if end - l4 < 20:
                raise ValueError("truncated TCP header")
            sport, dport, seq = struct.unpack_from("!HHI", frame, l4)
            if not self._wanted(sport, dport):
                return
            doff = (frame[l4 + 12] >> 4) * 4
            flags = frame[l4 + 13]
            key = ((src_ip, sport), (dst_ip, dport))
            data = frame[l4 + doff : end]
            if flags & 0x05:  # FIN or RST: the connection is over
                self._tcp.pop(key, None)
            if flags & 0x02:  # SYN: a new connection, its data starts at seq + 1
                stream = self._tcp[key] = _TcpStream()
                stream.next_seq = (seq + 1) & 0xFFFFFFFF
            if not data:
                return
            stream = self._tcp.setdefault(key, _TcpStream())
            for raw in stream.feed(seq, data):
                try:
                    self._add_sip(parse_sip(raw, t=t, wall=wall, src=key[0], dst=key[1], transport="tcp"))
                except ValueError as exc:
                    self._error(f"SIP over TCP: {exc}")

    def _udp(self, data: bytes, t: float, wall: float, src: Addr, dst: Addr) -> None:
        if not data.strip(b"\r\n\x00"):
            self.other += 1  # SIP keep-alive
            return
        if _looks_like_sip(data):
            self._add_sip(parse_sip(data, t=t, wall=wall, src=src, dst=dst, transport="udp"))
            return
        if len(data) >= 12 and data[0] >> 6 == 2:
            pt = data[1] & 0x7F
            if 72 <= pt <= 76:  # RTCP (types 200-204 read as marker + PT)
                self.other += 1
                return
            cc = data[0] & 0x0F
            start = 12 + 4 * cc
            if data[0] & 0x10:  # header extension
                if len(data) < start + 4:
                    raise ValueError("truncated RTP extension")
                start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
            stop = len(data)
            if data[0] & 0x20 and stop > start:  # padding
                stop -= data[-1]
            if start > stop:
                raise ValueError("truncated RTP packet")
            payload = data[start:stop]
            seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
            pkt = RtpPacket(
                time=t,
                wall=wall,
                src=src,
                dst=dst,
                payload_type=pt,
                marker=bool(data[1] & 0x80),
                seq=seq,
                timestamp=ts,
                ssrc=ssrc,
                payload=payload if self.keep_payload else b"",
                payload_len=len(payload),
                rms=payload_rms(pt, payload),
            )
            self.rtp.append(pkt)
            self._by_dst.setdefault(dst[1], []).append(pkt)
            self._by_flow.setdefault((src[1], dst[1]), []).append(pkt)
            self._notify()
            return
        self.other += 1

    def _add_sip(self, msg: SipMessage) -> None:
        self.sip.append(msg)
        self._by_call.setdefault(msg.call_id, []).append(msg)
        self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # -- queries ------------------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[WireCapture], object], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` is true (re-checked as packets arrive) or ``timeout``; its truth."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    def call_ids(self) -> list[str]:
        """Every Call-ID seen, in the order of its first message."""
        return list(self._by_call)

    def dialog(self, call_id: str) -> list[SipMessage]:
        """Every SIP message of ``call_id`` in capture order (retransmissions included)."""
        return list(self._by_call.get(call_id, ()))

    def messages(
        self,
        *,
        call_id: str | None = None,
        method: str | None = None,
        status: int | Collection[int] | None = None,
        cseq_method: str | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> list[SipMessage]:
        """SIP messages matching every criterion given (``status`` one code or several)."""
        pool = self._by_call.get(call_id, []) if call_id is not None else self.sip
        codes = {status} if isinstance(status, int) else (set(status) if status is not None else None)
        out = []
        for m in list(pool):
            if method is not None and m.method != method:
                continue
            if codes is not None and m.status not in codes:
                continue
            if cseq_method is not None and m.cseq_method != cseq_method:
                continue
            if after is not None and m.time < after:
                continue
            if before is not None and m.time > before:
                continue
            out.append(m)
        return out

    def first(
        self,
        *,
        call_id: str | None = None,
        method: str | None = None,
        status: int | Collection[int] | None = None,
        cseq_method: str | None = None,
        after: float | None = None,
    ) -> SipMessage | None:
        """The earliest SIP message matching the criteria (see :meth:`messages`), or ``None``."""
        found = self.messages(call_id=call_id, method=method, status=status, cseq_method=cseq_method, after=after)
        return found[0] if found else None

    def _time(self, msg: SipMessage | None) -> float | None:
        return None if msg is None else msg.time

    def invite_time(self, call_id: str) -> float | None:
        """When the dialog's first INVITE crossed the wire (retransmissions do not move it)."""
        return self._time(self.first(call_id=call_id, method="INVITE"))

    def ringing_time(self, call_id: str) -> float | None:
        """When the first 180 or 183 arrived: the start of the ring the 15-s rule counts."""
        return self._time(self.first(call_id=call_id, status=(180, 183), cseq_method="INVITE"))

    def cancel_time(self, call_id: str) -> float | None:
        return self._time(self.first(call_id=call_id, method="CANCEL"))

    def answer_time(self, call_id: str) -> float | None:
        """When the callee's first 200 OK to the INVITE crossed the wire: the person's answer."""
        return self._time(self.first(call_id=call_id, status=200, cseq_method="INVITE"))

    def ack_time(self, call_id: str) -> float | None:
        return self._time(self.first(call_id=call_id, method="ACK"))

    def bye_time(self, call_id: str) -> float | None:
        return self._time(self.first(call_id=call_id, method="BYE"))

    def final_status(self, call_id: str) -> int | None:
        """The first final (>= 200) response to the INVITE, or ``None`` while it has none."""
        for m in self._by_call.get(call_id, ()):
            if m.status is not None and m.status >= 200 and m.cseq_method == "INVITE":
                return m.status
        return None

    def media(self, call_id: str, margin: float = 0.5) -> MediaLink:
        """The dialog's media addresses from its SDP (offer from the caller, answer from the callee), and the
        time span in which RTP between them belongs to it: from the INVITE to ``margin`` after its last message
        (RTP ports are reused by later calls, so a port alone does not name a dialog)."""
        msgs = self._by_call.get(call_id, [])
        if not msgs:
            raise KeyError(f"no SIP message with Call-ID {call_id!r}")
        invite = next((m for m in msgs if m.method == "INVITE"), None)
        caller_side = invite.src if invite is not None else None
        caller: Addr | None = None
        callee: Addr | None = None
        for m in msgs:
            if m.media is None:
                continue
            from_caller = m.src == caller_side if caller_side is not None else m.is_request
            if from_caller and caller is None:
                caller = m.media
            elif not from_caller and callee is None:
                callee = m.media
        return MediaLink(call_id, caller, callee, msgs[0].time, msgs[-1].time + margin)

    def rtp_packets(
        self,
        *,
        dst_port: int | None = None,
        src_port: int | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> list[RtpPacket]:
        """RTP packets by port and time (``after``/``before`` inclusive, on the monotonic clock). Indexed by
        destination port and by (source, destination) pair, so a query costs its answer, not the capture."""
        if dst_port is not None and src_port is not None:
            pool = self._by_flow.get((src_port, dst_port), [])
        elif dst_port is not None:
            pool = self._by_dst.get(dst_port, [])
        else:
            pool = self.rtp
        hi = len(pool)  # fixed first: the thread may append while we search
        lo = 0 if after is None else bisect.bisect_left(pool, after, 0, hi, key=lambda p: p.time)
        if before is not None:
            hi = bisect.bisect_right(pool, before, lo, hi, key=lambda p: p.time)
        return [p for p in pool[lo:hi] if src_port is None or p.src[1] == src_port]

    def rtp_for(self, call_id: str, to: Literal["callee", "caller", "both"] = "both") -> list[RtpPacket]:
        """The dialog's RTP, linked through its SDP ports and time span: ``to="callee"`` is what the callee
        hears (caller's media port -> callee's), ``"caller"`` the reverse."""
        link = self.media(call_id)
        out: list[RtpPacket] = []
        pairs = []
        if link.caller and link.callee:
            if to in ("callee", "both"):
                pairs.append((link.caller[1], link.callee[1]))
            if to in ("caller", "both"):
                pairs.append((link.callee[1], link.caller[1]))
        for src, dst in pairs:
            out += self.rtp_packets(dst_port=dst, src_port=src, after=link.start, before=link.end)
        out.sort(key=lambda p: p.time)
        return out

    def first_audible_rtp(
        self,
        *,
        dst_port: int | None = None,
        src_port: int | None = None,
        after: float | None = None,
        before: float | None = None,
        threshold: float = AUDIBLE_RMS,
    ) -> RtpPacket | None:
        """The first RTP packet carrying sound (see :meth:`RtpPacket.audible`) matching ports and times."""
        for p in self.rtp_packets(dst_port=dst_port, src_port=src_port, after=after, before=before):
            if p.audible(threshold):
                return p
        return None

    def first_audible_to(
        self, call_id: str, side: Literal["callee", "caller"] = "callee", threshold: float = AUDIBLE_RMS
    ) -> RtpPacket | None:
        """The first packet of sound the ``side`` of ``call_id`` received (linked by SDP ports and time)."""
        for p in self.rtp_for(call_id, to=side):
            if p.audible(threshold):
                return p
        return None

    def answer_to_audio(self, call_id: str, threshold: float = AUDIBLE_RMS) -> float | None:
        """Seconds from the callee's 200 OK to the first sound it received: the 2-second rule, on the wire."""
        answered = self.answer_time(call_id)
        heard = self.first_audible_to(call_id, "callee", threshold)
        if answered is None or heard is None:
            return None
        return heard.time - answered

    def summary(self) -> str:
        return (
            f"{len(self.sip)} SIP, {len(self.rtp)} RTP, {self.other} other, {self.errors} errors, "
            f"{self.kernel_drops} dropped by the kernel"
        )
