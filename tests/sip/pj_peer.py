"""A pjsua2 softphone the SIP tests run as a far end that plays and records audio (SIPp cannot record).

    python pj_peer.py --port PORT [--play WAV [--loop]] [--record DIR] [--hangup-after S] [--ring S]

Answers every call after ``--ring`` seconds, plays ``--play`` into it once (over and over with ``--loop``),
records what it hears to ``DIR/call-N.wav``, and hangs up after ``--hangup-after`` seconds (0: waits for the
caller's BYE). Prints ``ready`` when it listens and ``done N`` when call N's recording is complete. Stops on
SIGTERM or when stdin closes. A separate process because pjsua2 allows one endpoint per process, and the
workers under test have theirs.
"""

from __future__ import annotations

import argparse
import gc
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pjsua2 as pj


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.calls: dict[int, PeerCall] = {}
        self.n = 0
        self.finished: list[PeerCall] = []  # disconnected; their recorders are released on the main loop
        self.stopping = False

    def on_incoming(self, acc: pj.Account, call_id: int) -> None:
        self.n += 1
        call = PeerCall(self, acc, call_id, self.n)
        self.calls[self.n] = call
        prm = pj.CallOpParam()
        prm.statusCode = 180
        call.answer(prm)
        call.answer_at = time.monotonic() + self.args.ring

    def tick(self) -> None:
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.answer_at is not None and now >= call.answer_at:
                call.answer_at = None
                prm = pj.CallOpParam()
                prm.statusCode = 200
                call.answer(prm)
            if call.hangup_at is not None and now >= call.hangup_at:
                call.hangup_at = None
                call.hangup(pj.CallOpParam(True))
        for call in self.finished:
            call.recorder = None  # closing the recorder writes the WAV header
            call.player = None
            print(f"done {call.n}", flush=True)
        self.finished.clear()


class PeerCall(pj.Call):
    def __init__(self, peer: Peer, acc: pj.Account, call_id: int, n: int) -> None:
        super().__init__(acc, call_id)
        self.peer = peer
        self.n = n
        self.answer_at: float | None = None
        self.hangup_at: float | None = None
        self.player: Any = None
        self.recorder: Any = None

    def onCallMediaState(self, prm: Any) -> None:
        if self.player is not None or self.recorder is not None:
            return
        audio = self.getAudioMedia(-1)
        args = self.peer.args
        if args.record:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(str(Path(args.record) / f"call-{self.n}.wav"))
            audio.startTransmit(self.recorder)
        if args.play:
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(args.play, 0 if args.loop else pj.PJMEDIA_FILE_NO_LOOP)
            self.player.startTransmit(audio)
        if args.hangup_after:
            self.hangup_at = time.monotonic() + args.hangup_after

    def onCallState(self, prm: Any) -> None:
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.peer.calls.pop(self.n, None)
            self.peer.finished.append(self)


class Account(pj.Account):
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm: Any) -> None:
        self.peer.on_incoming(self, prm.callId)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rtp-port", type=int, default=0)
    ap.add_argument("--play", default="")
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--record", default="")
    ap.add_argument("--hangup-after", type=float, default=0.0)
    ap.add_argument("--ring", type=float, default=0.1)
    args = ap.parse_args()
    peer = Peer(args)
    signal.signal(signal.SIGTERM, lambda *_: setattr(peer, "stopping", True))

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = args.port
    tc.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:peer@127.0.0.1:{args.port}"
    mt = acfg.mediaConfig.transportConfig
    mt.port = args.rtp_port
    mt.portRange = 40 if args.rtp_port else 0
    mt.boundAddress = "127.0.0.1"
    acc = Account(peer)
    acc.create(acfg)
    print("ready", flush=True)
    while not peer.stopping:
        ep.libHandleEvents(10)
        peer.tick()
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break  # the test closed our stdin: it is gone or done
    ep.hangupAllCalls()
    deadline = time.monotonic() + 2.0
    while peer.calls and time.monotonic() < deadline:
        ep.libHandleEvents(10)
    peer.tick()
    sys.stdout.flush()
    gc.collect()
    os._exit(0)  # pjsua2 objects abort in their finalizers after libDestroy; recordings are already closed


if __name__ == "__main__":
    main()
