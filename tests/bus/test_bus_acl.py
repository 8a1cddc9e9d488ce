"""The broker enforces the bus identities (issue 14): a real mosquitto runs the deployment ``dialer broker-config``
writes, and raw MQTT 5 clients, one per identity, try what each role may and may not do.

What mosquitto 2.0.11 does, measured here and pinned by these tests (an upgrade that changes it fails here):

- a refused CONNECT (no user name, wrong password) gets CONNACK 0x87, not authorized;
- a PUBLISH the ACL denies gets, at QoS 1, PUBACK 0x87 and reaches nobody; an allowed one gets 0x00, or 0x10
  (no matching subscribers);
- a SUBSCRIBE to a filter the client may not read is still granted (SUBACK 0x01 for QoS 1): the ACL is applied to
  each message as it is delivered. So "cannot read" is proved by a message that does not arrive while a later
  message to the same connection does (the broker queues each connection's messages in order);
- with ``use_username_as_clientid`` the client id a client sends is replaced by its user name: connecting as
  worker/w2 with client id worker/w1 closes worker/w2's older connection, never worker/w1's;
- started as root, it drops to user mosquitto before it reads the password file and the ACL, and reads them again
  as that user on SIGHUP; so the brokers here run the generated files as written (no ``user root``), from a
  directory user mosquitto can enter (:func:`broker_home`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import Broker
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from dialer.cli import main
from dialer.commands.broker_config import BrokerAccount, acl_text, env_var

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
BASE = "dialer/v1/c1"
IDENTITIES = ("dispatcher/main", "worker/w1", "worker/w2", "backend/crm", "monitor/m1")
NOT_AUTHORIZED = 0x87
ALLOWED = (0x00, 0x10)  # success; success with no matching subscribers
GRANTED_QOS1 = 0x01

# One topic of each kind in the tree, for every identity (spec, "Topic tree").
TREE = (
    f"{BASE}/event/call/answered",
    f"{BASE}/state/stats",
    f"{BASE}/state/abandonment",
    *(f"{BASE}/from/{i}/status" for i in IDENTITIES),
    *(f"{BASE}/from/{i}/cmd/agent/login" for i in IDENTITIES),
    f"{BASE}/from/worker/w1/event",
    f"{BASE}/from/worker/w2/event",
    *(f"{BASE}/to/{i}/reply" for i in IDENTITIES),
    f"{BASE}/to/worker/w1/cmd",
    f"{BASE}/to/worker/w2/cmd",
)


def may_read(identity: str, topic: str) -> bool:
    """The spec's reads: everyone reads events, state, statuses and what is sent to it; a dispatcher all of from/."""
    rel = topic.removeprefix(BASE + "/")
    return (
        rel.startswith(("event/", "state/", f"to/{identity}/"))
        or re.fullmatch(r"from/[^/]+/[^/]+/status", rel) is not None
        or (identity.startswith("dispatcher/") and rel.startswith("from/"))
    )


def may_write(identity: str, topic: str) -> bool:
    """The spec's writes: everyone under its own from/ levels; a dispatcher also to/, event/ and state/."""
    rel = topic.removeprefix(BASE + "/")
    return rel.startswith(f"from/{identity}/") or (
        identity.startswith("dispatcher/") and rel.startswith(("to/", "event/", "state/"))
    )


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


class Peer:
    """One MQTT 5 connection (paho, with its own network thread) recording what the broker answers."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        tls: tuple[Path, Path | None, Path | None] | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id if client_id is not None else username or "anonymous",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a reconnect would take a session back in the middle of a test
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            ca, cert, key = tls
            self.client.tls_set(ca_certs=str(ca), certfile=_str(cert), keyfile=_str(key))
        self._cond = threading.Condition()
        self.connack: int | None = None
        self.closed = False
        self.messages: list[tuple[str, str]] = []
        self._subacks: dict[int, list[int]] = {}
        self._pubacks: dict[int, int] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None or self.closed, "CONNACK")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        with self._cond:
            self.connack = rc.value
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: object
    ) -> None:
        with self._cond:
            self._subacks[mid] = [rc.value for rc in rcs]
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: object) -> None:
        with self._cond:
            self._pubacks[mid] = rc.value
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload.decode()))
            self._cond.notify_all()

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        with self._cond:
            if not self._cond.wait_for(done, timeout):
                raise AssertionError(f"no {what} within {timeout} s")

    def subscribe(self, *filters: str) -> list[int]:
        """SUBACK's reason codes, one per filter."""
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        assert mid is not None
        self.wait(lambda: mid in self._subacks, "SUBACK")
        return self._subacks[mid]

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> int:
        """PUBACK's reason code (QoS 1)."""
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        self.wait(lambda: mid in self._pubacks, f"PUBACK for {topic}")
        return self._pubacks[mid]

    def wait_for(self, payload: str) -> None:
        self.wait(lambda: any(p == payload for _, p in self.messages), repr(payload))

    def payloads(self) -> set[str]:
        with self._cond:
            return {p for _, p in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Deployment:
    """A broker running a configuration ``dialer broker-config`` wrote, and the identities' passwords."""

    outdir: Path
    broker: Broker
    passwords: dict[str, str]
    peers: list[Peer] = field(default_factory=list)

    def connect(self, identity: str | None, password: str | None = None, **kw: object) -> Peer:
        if identity is not None and password is None:
            password = self.passwords[identity]
        peer = Peer(self.broker.port, identity, password, **kw)  # type: ignore[arg-type]
        self.peers.append(peer)
        return peer


def broker_config(outdir: Path, *args: str) -> int:
    return main(["broker-config", str(outdir), *args])


def broker_home(prefix: str) -> Path:
    """A new directory (the caller removes it) that user mosquitto can enter, for a broker's files and its work.

    Why not pytest's ``tmp_path``: it lies under ``/tmp/pytest-of-<user>/``, mode 0700, which a broker started as
    root cannot enter once it runs as user mosquitto; and pytest tightens that directory again at every session's
    start, so opening it here would race another session. A directory of our own in the system's temporary
    directory (``/tmp``, mode 1777) needs only its own search bit for others: chmod 0711, nothing listable.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o711)
    return home


def new_broker(workdir: Path) -> Broker:
    """A :class:`Broker` for its free port, start and stop; :func:`run_on` replaces its own configuration."""
    workdir.mkdir()
    return Broker(workdir)


def run_on(broker: Broker, conf_text: str) -> None:
    """Start ``broker`` on ``conf_text`` as written (started as root, mosquitto runs as user mosquitto)."""
    broker.config = broker.workdir / "deployed.conf"
    broker.config.write_text(conf_text)
    broker.start()


def start_generated(broker: Broker, outdir: Path) -> None:
    """Start ``broker`` the way ``dialer broker-config`` says: ``mosquitto -c OUTDIR/mosquitto.conf``."""
    broker.config = outdir / "mosquitto.conf"
    broker.start()


def passwords_of(outdir: Path) -> dict[str, str]:
    lines = (outdir / "credentials.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    return {i: env[env_var(i)] for i in IDENTITIES}


def may_give_group(gid: int) -> bool:
    return os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups()


NAMES = ("--dispatcher", "main", "--worker", "w1", "--worker", "w2", "--backend", "crm", "--monitor", "m1")


@pytest.fixture
def deploy() -> Iterator[Callable[..., Deployment]]:
    """``deploy(*extra_args)``: ``dialer broker-config`` for the five identities, and mosquitto started on it as
    the command says (in a :func:`broker_home`, since as root it runs as user mosquitto)."""
    home = broker_home("dialer-acl-")
    made: list[Deployment] = []

    def make(*extra: str) -> Deployment:
        broker = new_broker(home / f"broker{len(made)}")
        outdir = home / f"deploy{len(made)}"
        assert broker_config(outdir, *NAMES, "--port", str(broker.port), *extra) == 0
        start_generated(broker, outdir)
        passwords = passwords_of(outdir) if (outdir / "credentials.env").exists() else {}
        made.append(Deployment(outdir, broker, passwords))
        return made[-1]

    try:
        yield make
    finally:
        for d in made:
            for peer in d.peers:
                peer.close()
            d.broker.stop()
        shutil.rmtree(home)


@pytest.fixture
def bus(deploy: Callable[..., Deployment]) -> Deployment:
    return deploy()


_barriers = iter(range(1_000_000))


def barrier(peers: dict[str, Peer]) -> None:
    """Wait until every peer has had everything published before this call delivered (or not) to it.

    Every publish before it was acknowledged, so the broker has already queued (or refused) it; the dispatcher's
    event queued after it reaches every identity, in order on each connection, so once it is in, nothing
    earlier is still on its way.
    """
    payload = f"barrier {next(_barriers)}"
    assert peers["dispatcher/main"].publish(f"{BASE}/event/test/barrier", payload) in ALLOWED
    for peer in peers.values():
        peer.wait_for(payload)


def received(peer: Peer) -> set[str]:
    return {p for p in peer.payloads() if not p.startswith("barrier ")}


def test_the_deployment_files(bus: Deployment) -> None:
    out = bus.outdir
    conf = (out / "mosquitto.conf").read_text().splitlines()
    for line in (
        f"listener {bus.broker.port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {out / 'passwd'}",
        f"acl_file {out / 'acl'}",
        "use_username_as_clientid true",
        "persistence true",
        f"persistence_location {out / 'data'}",
    ):
        assert line in conf
    assert (out / "acl").read_text() == (DEPLOY / "acl").read_text()  # --dispatcher main: the documented example
    assert_broker_can_use(out)
    hashed = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert sorted(hashed) == sorted(IDENTITIES)
    for identity, password in bus.passwords.items():
        assert hashed[identity].startswith("$7$") and password not in hashed[identity]
        assert len(password) >= 32
    assert len(set(bus.passwords.values())) == len(IDENTITIES)
    assert env_var("worker/w1") == "DIALER_PW_WORKER_W1"


def assert_broker_can_use(out: Path) -> None:
    """The generated files' owners and modes: the password file and the ACL readable by group mosquitto (the user
    a broker started as root runs as), its database directory its own, the plain passwords nobody else's."""
    account = BrokerAccount.lookup()
    credentials = (out / "credentials.env").stat()
    assert stat.S_IMODE(credentials.st_mode) == 0o600 and credentials.st_uid == os.geteuid()
    assert account.gid is not None, "no group mosquitto: its Debian package creates it (CI installs mosquitto)"
    for name in ("passwd", "acl"):
        st = (out / name).stat()
        if may_give_group(account.gid):
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), account.gid, 0o640), name
        else:  # not root and not in group mosquitto: left private, and the commands are printed
            assert stat.S_IMODE(st.st_mode) == (0o600 if name == "passwd" else 0o644), name
    data = (out / "data").stat()
    assert stat.S_IMODE(data.st_mode) == 0o700
    if os.geteuid() == 0:
        assert (data.st_uid, data.st_gid) == (account.uid, account.user_gid)


def broker_uid(broker: Broker) -> int:
    assert broker.proc is not None
    status = Path(f"/proc/{broker.proc.pid}/status").read_text()
    found = re.search(r"^Uid:\s+(\d+)", status, flags=re.M)
    assert found is not None
    return int(found.group(1))


def test_the_printed_start_command_runs_the_broker_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """``dialer broker-config`` then exactly the command it prints: no ``user root``, no chmod by hand. As root the
    broker runs as user mosquitto, which reads the password file and the ACL and writes the database."""
    home = broker_home("dialer-start-")
    broker = new_broker(home / "broker")
    try:
        out = home / "etc"
        assert broker_config(out, *NAMES, "--port", str(broker.port)) == 0
        printed = capsys.readouterr().out.splitlines()
        # As root there is nothing else to do first. Otherwise the commands for a broker that root will start come
        # first; a broker this user starts runs as this user, who owns the files.
        start = "start: " if os.geteuid() == 0 else "then start: "
        assert printed[-1] == f"{start}mosquitto -c {out / 'mosquitto.conf'}", printed
        broker.config = Path(printed[-1].removeprefix(f"{start}mosquitto -c "))
        broker.start()
        if os.geteuid() == 0:
            account = BrokerAccount.lookup()
            assert broker_uid(broker) == account.uid  # it did drop to user mosquitto, and still got in
        peer = Peer(broker.port, "worker/w1", passwords_of(out)["worker/w1"])
        assert peer.connack == 0
        assert peer.publish(f"{BASE}/from/worker/w1/status", "online", retain=True) in ALLOWED
        peer.close()
        broker.stop()  # a clean stop saves the database, as user mosquitto, in OUTDIR/data
        log = (broker.workdir / "mosquitto-0.log").read_text()
        assert "Error" not in log, log
        assert (out / "data" / "mosquitto.db").exists()
    finally:
        broker.stop()
        shutil.rmtree(home)


def test_force_rewrites_the_files_so_a_reload_admits_the_new_passwords(deploy: Callable[..., Deployment]) -> None:
    """``--force`` then SIGHUP (``systemctl reload mosquitto``): the broker, running as user mosquitto, reads the
    new password file, so every identity gets in with its new password and none with its old one. A client still
    connected with its old password is disconnected by the reload (mosquitto checks connected clients again)."""
    d = deploy()
    old = d.passwords
    before = d.connect("worker/w1")
    assert before.connack == 0
    assert broker_config(d.outdir, *NAMES, "--port", str(d.broker.port), "--force") == 0
    assert_broker_can_use(d.outdir)
    new = passwords_of(d.outdir)
    assert not set(new.values()) & set(old.values())
    assert d.broker.proc is not None
    d.broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while d.connect("worker/w1", new["worker/w1"]).connack != 0:  # the broker re-reads on its next loop
        assert time.monotonic() < deadline, (d.broker.workdir / "mosquitto-0.log").read_text()
        time.sleep(0.05)
    before.wait(lambda: before.closed, "the old password's connection to close")
    for identity in IDENTITIES:
        assert d.connect(identity, new[identity]).connack == 0, identity
        assert d.connect(identity, old[identity]).connack == NOT_AUTHORIZED, identity
    assert d.broker.proc.poll() is None
    assert "Unable to open" not in (d.broker.workdir / "mosquitto-0.log").read_text()


def test_without_user_mosquitto_the_commands_to_run_are_printed_and_work(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine without user and group mosquitto (yet): the files stay private, and the exact commands are
    printed. Here the user exists after all, so (as root) running the printed commands must make the broker start."""
    nobody = BrokerAccount(uid=None, user_gid=None, gid=None, gids=frozenset())
    monkeypatch.setattr(BrokerAccount, "lookup", classmethod(lambda cls, name="mosquitto": nobody))
    home = broker_home("dialer-nouser-")
    broker = new_broker(home / "broker")
    try:
        out = home / "etc"
        assert broker_config(out, *NAMES, "--port", str(broker.port)) == 0
        assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / "acl").stat().st_mode) == 0o644
        assert (out / "data").stat().st_uid == os.geteuid()
        printed = capsys.readouterr().out.splitlines()
        commands = printed[printed.index("  # no user mosquitto on this machine; when mosquitto (started as root) "
                                         "will run as mosquitto:") + 1 : -1]  # fmt: skip
        assert commands == [
            f"  chgrp mosquitto {out}/passwd {out}/acl",
            f"  chmod 0640 {out}/passwd {out}/acl",
            f"  chown mosquitto: {out}/data",
        ]
        assert printed[-1] == f"then start: mosquitto -c {out}/mosquitto.conf"
        monkeypatch.undo()
        if os.geteuid() != 0 or BrokerAccount.lookup().uid is None:
            return  # the commands are root's, for a user mosquitto that exists
        subprocess.run(["sh", "-ec", "\n".join(c.strip() for c in commands)], check=True)
        assert_broker_can_use(out)
        start_generated(broker, out)
        peer = Peer(broker.port, "worker/w1", passwords_of(out)["worker/w1"])
        assert peer.connack == 0
        peer.close()
    finally:
        broker.stop()
        shutil.rmtree(home)


def test_a_directory_user_mosquitto_cannot_enter_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pytest's tmp_path is under a 0700 directory: the broker could not reach OUTDIR, and the output says so."""
    if BrokerAccount.lookup().uid is None:
        pytest.skip("no user mosquitto here")
    blocked = next(p for p in reversed(tmp_path.parents) if not p.stat().st_mode & 0o001)
    mode = stat.S_IMODE(blocked.stat().st_mode)
    assert broker_config(tmp_path / "out", "--dispatcher", "main") == 0
    printed = capsys.readouterr().out
    assert f"  # user mosquitto cannot enter {blocked} (mode {mode:04o}) on the way to {tmp_path}/out/" in printed
    assert "use a directory it can reach, such as /etc/mosquitto/dialer" in printed
    assert printed.splitlines()[-1] == f"then start: mosquitto -c {tmp_path}/out/mosquitto.conf"


def test_no_identity_no_connection(bus: Deployment) -> None:
    assert bus.connect(None, client_id="worker/w1").connack == NOT_AUTHORIZED  # anonymous
    assert bus.connect("worker/w1", "wrong").connack == NOT_AUTHORIZED
    assert bus.connect("worker/w2", bus.passwords["worker/w1"]).connack == NOT_AUTHORIZED  # another's password
    assert bus.connect("worker/w9", bus.passwords["worker/w1"]).connack == NOT_AUTHORIZED  # no such identity
    assert bus.connect("worker/w1").connack == 0


def test_each_identity_reads_exactly_what_the_spec_gives_it(bus: Deployment) -> None:
    peers = {i: bus.connect(i) for i in IDENTITIES}
    for peer in peers.values():
        # The filters a curious client would try. mosquitto grants every one and filters at delivery.
        filters = ("#", f"{BASE}/to/#", f"{BASE}/to/worker/w2/cmd", f"{BASE}/from/#")
        assert peer.subscribe(*filters) == [GRANTED_QOS1] * len(filters)
    for topic in TREE:
        writer = next(i for i in IDENTITIES if may_write(i, topic))  # the topic's legitimate publisher
        assert peers[writer].publish(topic, f"on {topic}") in ALLOWED, (writer, topic)
    barrier(peers)

    for identity, peer in peers.items():
        assert received(peer) == {f"on {t}" for t in TREE if may_read(identity, t)}, identity
    # Spelled out: a worker does not see another worker's offers, nor its reports, nor a backend's commands...
    offer_w2 = f"on {BASE}/to/worker/w2/cmd"
    assert offer_w2 not in received(peers["worker/w1"]) and offer_w2 in received(peers["worker/w2"])
    assert f"on {BASE}/from/worker/w2/event" not in received(peers["worker/w1"])
    assert f"on {BASE}/from/backend/crm/cmd/agent/login" not in received(peers["worker/w1"])
    # ...a monitor reads events, state and statuses, and nothing sent to or by anyone else...
    monitor = received(peers["monitor/m1"])
    assert {f"on {BASE}/event/call/answered", f"on {BASE}/state/stats", f"on {BASE}/from/worker/w1/status"} <= monitor
    assert not {p for p in monitor if "/cmd" in p or p.endswith("/event") or ("/reply" in p and "monitor" not in p)}
    # ...and only the dispatcher reads the workers' reports and the backend's commands.
    assert f"on {BASE}/from/backend/crm/cmd/agent/login" in received(peers["dispatcher/main"])


def test_each_identity_writes_exactly_what_the_spec_gives_it(bus: Deployment) -> None:
    peers = {i: bus.connect(i) for i in IDENTITIES}
    for peer in peers.values():
        peer.subscribe("#")
    attempts = [(i, t) for i in IDENTITIES for t in (*TREE, "dialer/v2/c1/from/worker/w1/status")]
    verdicts = {(i, t): peers[i].publish(t, f"{i} wrote {t}", retain=True) for i, t in attempts}
    barrier(peers)

    assert set(verdicts.values()) <= {*ALLOWED, NOT_AUTHORIZED}
    allowed = sorted(f"{i} -> {t}" for (i, t), code in verdicts.items() if code in ALLOWED)
    assert allowed == sorted(f"{i} -> {t}" for i, t in attempts if may_write(i, t))
    # Denied means dropped: no subscriber, however entitled to the topic, got a denied message.
    for identity, peer in peers.items():
        wanted = {f"{i} wrote {t}" for i, t in attempts if may_write(i, t) and may_read(identity, t)}
        assert received(peer) == wanted, identity
    # Spelled out, each answered with PUBACK 0x87:
    for identity, topic in [
        ("worker/w1", f"{BASE}/event/call/answered"),  # a worker publishes no events,
        ("worker/w1", f"{BASE}/state/stats"),  # no state,
        ("worker/w1", f"{BASE}/to/worker/w2/cmd"),  # nothing under to/, not even
        ("worker/w1", f"{BASE}/to/worker/w1/cmd"),  # to itself,
        ("worker/w1", f"{BASE}/from/worker/w2/event"),  # and nothing as another identity;
        ("backend/crm", f"{BASE}/from/worker/w1/event"),  # a backend cannot pose as a worker
        ("backend/crm", f"{BASE}/to/worker/w1/cmd"),  # nor order one;
        ("monitor/m1", f"{BASE}/event/call/answered"),  # a monitor publishes no events;
        ("dispatcher/main", f"{BASE}/from/worker/w1/event"),  # even the dispatcher cannot pose as a worker.
    ]:
        assert verdicts[identity, topic] == NOT_AUTHORIZED, (identity, topic)

    # Nor is a denied retained message kept: a monitor starting now gets exactly the allowed retained ones.
    late = bus.connect("monitor/m1")  # the same identity: this takes over the monitor's session
    late.subscribe("#")
    payload = "after the late monitor subscribed"
    assert peers["dispatcher/main"].publish(f"{BASE}/event/test/barrier", payload) in ALLOWED
    late.wait_for(payload)
    assert received(late) - {payload} == {
        f"{i} wrote {t}" for i, t in attempts if may_write(i, t) and may_read("monitor/m1", t)
    }


def test_the_client_id_is_the_identity_so_nobody_takes_over_another(bus: Deployment) -> None:
    w1 = bus.connect("worker/w1")
    w2 = bus.connect("worker/w2")
    impostor = bus.connect("worker/w2", client_id="worker/w1")  # worker/w2's password, worker/w1's client id
    assert impostor.connack == 0
    # The broker made its client id worker/w2: worker/w2's older connection is the one closed (as on a reconnect)...
    w2.wait(lambda: w2.closed, "worker/w2's older connection to close")
    # ...worker/w1 stays connected...
    assert w1.publish(f"{BASE}/from/worker/w1/status", "w1 still here") in ALLOWED
    assert not w1.closed
    # ...and to the ACL the newcomer is worker/w2, whatever client id it asked for.
    assert impostor.publish(f"{BASE}/from/worker/w1/status", "posing as w1") == NOT_AUTHORIZED
    assert impostor.publish(f"{BASE}/from/worker/w2/status", "w2 again") in ALLOWED
    log = (bus.broker.workdir / "mosquitto-0.log").read_text()
    assert len(re.findall(r"New client connected from \S+ as worker/w2 ", log)) == 2, log
    assert len(re.findall(r"New client connected from \S+ as worker/w1 ", log)) == 1, log


def test_campaign_limits_the_dispatchers_to_it(deploy: Callable[..., Deployment]) -> None:
    d = deploy("--campaign", "c1")
    assert (d.outdir / "acl").read_text() == acl_text("dialer/v1", ["main"], campaign="c1")
    dispatcher, w1 = d.connect("dispatcher/main"), d.connect("worker/w1")
    dispatcher.subscribe("dialer/v1/+/from/#")
    assert dispatcher.publish("dialer/v1/c1/event/call/answered", "c1 event") in ALLOWED
    assert dispatcher.publish("dialer/v1/c2/event/call/answered", "c2 event") == NOT_AUTHORIZED
    assert dispatcher.publish("dialer/v1/c2/to/worker/w1/cmd", "c2 offer") == NOT_AUTHORIZED
    assert w1.publish("dialer/v1/c2/from/worker/w1/event", "c2 report") in ALLOWED  # its own levels, any campaign
    assert w1.publish("dialer/v1/c1/from/worker/w1/event", "c1 report") in ALLOWED
    dispatcher.wait_for("c1 report")
    assert dispatcher.payloads() == {"c1 report"}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs() -> Iterator[dict[str, Path]]:
    """A bus CA, the broker's certificate for 127.0.0.1, and client certificates whose CN is an identity.

    The commands of docs/deploy/README.md, with EC keys (faster to make than RSA), in a :func:`broker_home`; and
    the README's ``chown root:mosquitto server.key; chmod 0640 server.key``, for the broker reads its key as user
    mosquitto.
    """
    d = broker_home("dialer-certs-")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-days",
        "1",
        "-subj",
        "/CN=dialer bus test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=d,
    )
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    files = {"ca": d / "ca.crt"}
    for name, subject, ext in [
        ("server", "/CN=localhost", ("-extfile", "server.ext")),
        *((i.replace("/", "-"), "/CN=" + i.replace("/", "\\/"), ()) for i in IDENTITIES),
    ]:
        openssl("req", *ec, "-subj", subject, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", *ext, "-out", f"{name}.crt", cwd=d)  # fmt: skip
        files[name] = d / f"{name}.crt"
    account = BrokerAccount.lookup()
    if account.gid is not None and may_give_group(account.gid):
        os.chown(d / "server.key", -1, account.gid)
        (d / "server.key").chmod(0o640)
    try:
        yield files
    finally:
        shutil.rmtree(d)


def client_tls(certs: dict[str, Path], identity: str | None) -> tuple[Path, Path | None, Path | None]:
    if identity is None:
        return certs["ca"], None, None
    crt = certs[identity.replace("/", "-")]
    return certs["ca"], crt, crt.with_suffix(".key")


def refused(port: int, **kw: object) -> bool:
    """True if the broker would not let this client in: the TLS handshake or the CONNACK failed."""
    try:
        peer = Peer(port, **kw)  # type: ignore[arg-type]
    except (ssl.SSLError, OSError):
        return True
    peer.close()
    return peer.connack != 0


def test_mutual_tls_the_certificate_cn_is_the_identity(
    deploy: Callable[..., Deployment], certs: dict[str, Path]
) -> None:
    key = certs["server"].with_suffix(".key")
    d = deploy("--tls-ca", str(certs["ca"]), "--tls-cert", str(certs["server"]), "--tls-key", str(key))
    assert sorted(p.name for p in d.outdir.iterdir()) == ["acl", "data", "mosquitto.conf"]  # no passwords: unused
    conf = (d.outdir / "mosquitto.conf").read_text().splitlines()
    assert {"require_certificate true", "use_identity_as_username true", "allow_anonymous false"} <= set(conf)
    assert not any(line.startswith("password_file") for line in conf)
    port = d.broker.port

    # The certificate says worker/w1; the user name and password it sends change nothing.
    w1 = Peer(port, "dispatcher/main", "whatever", tls=client_tls(certs, "worker/w1"))
    d.peers.append(w1)
    assert w1.connack == 0
    assert w1.publish(f"{BASE}/event/call/answered", "forged event") == NOT_AUTHORIZED
    assert w1.publish(f"{BASE}/from/dispatcher/main/status", "forged status") == NOT_AUTHORIZED
    assert w1.publish(f"{BASE}/from/worker/w1/status", "w1 online") in ALLOWED
    dispatcher = Peer(port, tls=client_tls(certs, "dispatcher/main"))
    d.peers.append(dispatcher)
    assert dispatcher.publish(f"{BASE}/event/call/answered", "event") in ALLOWED  # its CN has the user section
    assert refused(port, tls=client_tls(certs, None))  # no client certificate
    assert refused(port, username="dispatcher/main", password="x")  # no TLS at all


def docs_conf_here(name: str, broker: Broker, files: Path) -> str:
    """docs/deploy/``name`` with its EDIT settings pointed at ``files`` and ``broker``'s port; nothing else changed.

    The log and pid file go to ``log/`` and ``run/`` in the broker's work directory, which belong to user
    mosquitto as Debian's ``/var/log/mosquitto`` and ``/run/mosquitto`` do: it writes both after dropping to it.
    """
    text = (DEPLOY / name).read_text()
    text = re.sub(r"^listener \d+ \S+$", f"listener {broker.port} 127.0.0.1", text, flags=re.M)
    account = BrokerAccount.lookup()
    for sub in ("log", "run"):
        (broker.workdir / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0 and account.uid is not None and account.user_gid is not None:
            os.chown(broker.workdir / sub, account.uid, account.user_gid)
    for path, here in {
        "/etc/mosquitto/dialer/": f"{files}/",
        "/var/lib/mosquitto/": f"{files}/data/",
        "/var/log/mosquitto/": f"{broker.workdir}/log/",
        "/run/mosquitto/": f"{broker.workdir}/run/",
    }.items():
        assert path in text, (name, path)
        text = text.replace(path, here)
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if re.search(r"\s/(etc|var|run)/", line)]  # every path was found
    return text


def start_docs_conf(broker: Broker, text: str) -> None:
    try:
        run_on(broker, text)
    except RuntimeError as exc:
        log = broker.workdir / "log" / "mosquitto.log"
        raise AssertionError(f"{exc}\n{log.read_text() if log.exists() else ''}") from None


def test_the_documented_configurations_run_on_this_mosquitto(certs: dict[str, Path]) -> None:
    """docs/deploy/mosquitto.conf and mosquitto-tls.conf, as written but for their EDIT settings, on 2.0.11."""
    home = broker_home("dialer-docs-")
    try:
        documented_configurations(home, certs)
    finally:
        shutil.rmtree(home)


def documented_configurations(home: Path, certs: dict[str, Path]) -> None:
    files = home / "etc"
    assert broker_config(files, *NAMES) == 0
    assert (files / "acl").read_text() == (DEPLOY / "acl").read_text()
    for name in ("ca", "server"):
        shutil.copy(certs[name], files / f"{name}.crt")
    shutil.copy2(certs["server"].with_suffix(".key"), files / "server.key")
    key = certs["server"].with_suffix(".key").stat()
    os.chown(files / "server.key", -1, key.st_gid)  # as the README says: group mosquitto, mode 0640
    lines = (files / "credentials.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))

    plain = new_broker(home / "plain")
    start_docs_conf(plain, docs_conf_here("mosquitto.conf", plain, files))
    try:
        assert refused(plain.port, client_id="anonymous")
        dispatcher = Peer(plain.port, "dispatcher/main", env[env_var("dispatcher/main")])
        worker = Peer(plain.port, "worker/w1", env[env_var("worker/w1")])
        assert dispatcher.publish(f"{BASE}/event/call/answered", "event") in ALLOWED
        assert worker.publish(f"{BASE}/event/call/answered", "forged") == NOT_AUTHORIZED
        dispatcher.close()
        worker.close()
    finally:
        plain.stop()

    mtls = new_broker(home / "tls")
    start_docs_conf(mtls, docs_conf_here("mosquitto-tls.conf", mtls, files))
    try:
        assert refused(mtls.port, tls=client_tls(certs, None))
        worker = Peer(mtls.port, tls=client_tls(certs, "worker/w1"))
        assert worker.publish(f"{BASE}/from/worker/w1/status", "online") in ALLOWED
        assert worker.publish(f"{BASE}/event/call/answered", "forged") == NOT_AUTHORIZED
        worker.close()
    finally:
        mtls.stop()


def test_the_documented_acl_is_what_broker_config_writes() -> None:
    """docs/deploy/acl cannot drift from the generator: it is acl_text for the root dialer/v1 and dispatcher/main."""
    assert (DEPLOY / "acl").read_text() == acl_text("dialer/v1", ["main"])
    assert "dialer broker-config OUTDIR --dispatcher main" in (DEPLOY / "README.md").read_text()


def _one_error_line(err: str, mentions: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dialer: error: "), err
    assert mentions in lines[0], lines[0]


BAD = [
    (["--worker", "w/1"], "--worker"),
    (["--worker", "w+1"], "--worker"),
    (["--worker", "w#"], "--worker"),
    (["--worker", ""], "--worker"),
    (["--worker", "w" * 129], "--worker"),
    (["--worker", "w1\n"], "--worker"),
    (["--backend", "c r m"], "--backend"),
    (["--monitor", "m:1"], "':'"),  # mosquitto_passwd refuses ':' in a user name
    (["--dispatcher", "$main"], "--dispatcher"),
    (["--worker", "w1", "--worker", "w1"], "worker/w1 is given twice"),
    (["--worker", "w-1", "--worker", "w_1"], "DIALER_PW_WORKER_W_1"),
    (["--root", "dialer//v1"], "--root"),
    (["--root", "/dialer"], "--root"),
    (["--root", "$SYS/dialer"], "--root"),
    (["--root", "dialer/+/v1"], "--root"),
    (["--root", "dialer/#"], "--root"),
    (["--root", "dialer/%u"], "--root"),
    (["--root", "dialer/v1\nuser dispatcher/x"], "--root"),
    (["--campaign", "c/1"], "--campaign"),
    (["--port", "0"], "--port"),
    (["--bind", "127.0.0.1 8883"], "--bind"),
    (["--tls-ca", "ca.crt"], "--tls-cert"),
    (["--tls-ca", "no.crt", "--tls-cert", "no.crt", "--tls-key", "no.key"], "no such file"),
]


@pytest.mark.parametrize(("args", "mentions"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str], mentions: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = tmp_path / "out"
    base = [] if "--dispatcher" in args else ["--dispatcher", "main"]
    assert broker_config(outdir, *base, *args) == 2
    out, err = capsys.readouterr()
    _one_error_line(err, mentions)
    assert out == ""
    assert not outdir.exists()


def test_existing_files_are_kept_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "acl").write_text("# the operator's own\n")
    assert broker_config(outdir, "--dispatcher", "main") == 2
    _one_error_line(capsys.readouterr().err, "acl exists; --force")
    assert sorted(p.name for p in outdir.iterdir()) == ["acl"]
    assert (outdir / "acl").read_text() == "# the operator's own\n"

    assert broker_config(outdir, "--dispatcher", "main", "--force") == 0
    first = {p.name: p.read_text() for p in outdir.iterdir() if p.is_file()}
    assert sorted(first) == ["acl", "credentials.env", "mosquitto.conf", "passwd"]
    assert broker_config(outdir, "--dispatcher", "main", "--worker", "w1") == 2
    assert {p.name: p.read_text() for p in outdir.iterdir() if p.is_file()} == first
    assert broker_config(outdir, "--dispatcher", "main", "--force") == 0
    again = (outdir / "credentials.env").read_text()
    assert again != first["credentials.env"]  # new passwords
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]  # no staging file left behind


def test_no_mosquitto_passwd_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    outdir = tmp_path / "out"
    assert broker_config(outdir, "--dispatcher", "main") == 2
    _one_error_line(capsys.readouterr().err, "mosquitto_passwd: not found")
    assert not outdir.exists()


def test_the_command_line_says_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "broker-config", str(tmp_path / "out"), "--dispatcher", "a/b"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    _one_error_line(proc.stderr, "--dispatcher: 'a/b' must be 1-128 of")
    assert not (tmp_path / "out").exists()
