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
  worker/w2 with client id worker/w1 closes worker/w2's older connection, never worker/w1's.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import Broker
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from dialer.cli import main
from dialer.commands.broker_config import acl_text, env_var

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


def new_broker(workdir: Path) -> Broker:
    """A :class:`Broker` for its free port, start and stop; :func:`run_on` replaces its own configuration."""
    workdir.mkdir()
    return Broker(workdir)


def run_on(broker: Broker, conf_text: str) -> None:
    """Start ``broker`` on ``conf_text`` as written, plus (as root) ``user root`` to read pytest's tmp dirs."""
    broker.config = broker.workdir / "deployed.conf"
    broker.config.write_text(conf_text + ("user root\n" if os.geteuid() == 0 else ""))
    broker.start()


NAMES = ("--dispatcher", "main", "--worker", "w1", "--worker", "w2", "--backend", "crm", "--monitor", "m1")


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    """``deploy(*extra_args)``: ``dialer broker-config`` for the five identities, and mosquitto running on it."""
    made: list[Deployment] = []

    def make(*extra: str) -> Deployment:
        broker = new_broker(tmp_path / f"broker{len(made)}")
        outdir = tmp_path / f"deploy{len(made)}"
        assert broker_config(outdir, *NAMES, "--port", str(broker.port), *extra) == 0
        run_on(broker, (outdir / "mosquitto.conf").read_text())
        passwords: dict[str, str] = {}
        if (outdir / "credentials.env").exists():
            lines = (outdir / "credentials.env").read_text().splitlines()
            env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
            passwords = {i: env[env_var(i)] for i in IDENTITIES}
        made.append(Deployment(outdir, broker, passwords))
        return made[-1]

    yield make
    for d in made:
        for peer in d.peers:
            peer.close()
        d.broker.stop()


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
    assert stat.S_IMODE((out / "credentials.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o600
    hashed = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert sorted(hashed) == sorted(IDENTITIES)
    for identity, password in bus.passwords.items():
        assert hashed[identity].startswith("$7$") and password not in hashed[identity]
        assert len(password) >= 32
    assert len(set(bus.passwords.values())) == len(IDENTITIES)
    assert env_var("worker/w1") == "DIALER_PW_WORKER_W1"


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
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bus CA, the broker's certificate for 127.0.0.1, and client certificates whose CN is an identity.

    The commands of docs/deploy/README.md, with EC keys (faster to make than RSA).
    """
    d = tmp_path_factory.mktemp("certs")
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
    return files


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
    """docs/deploy/``name`` with its EDIT settings pointed at ``files`` and ``broker``'s port; nothing else changed."""
    text = (DEPLOY / name).read_text()
    text = re.sub(r"^listener \d+ \S+$", f"listener {broker.port} 127.0.0.1", text, flags=re.M)
    for path, here in {
        "/etc/mosquitto/dialer/": f"{files}/",
        "/var/lib/mosquitto/": f"{files}/data/",
        "/var/log/mosquitto/": f"{broker.workdir}/",
        "/run/mosquitto/": f"{broker.workdir}/",
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
        raise AssertionError(f"{exc}\n{(broker.workdir / 'mosquitto.log').read_text()}") from None


def test_the_documented_configurations_run_on_this_mosquitto(tmp_path: Path, certs: dict[str, Path]) -> None:
    """docs/deploy/mosquitto.conf and mosquitto-tls.conf, as written but for their EDIT settings, on 2.0.11."""
    files = tmp_path / "etc"
    assert broker_config(files, *NAMES) == 0
    assert (files / "acl").read_text() == (DEPLOY / "acl").read_text()
    for name in ("ca", "server"):
        shutil.copy(certs[name], files / f"{name}.crt")
    shutil.copy(certs["server"].with_suffix(".key"), files / "server.key")
    lines = (files / "credentials.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if not line.startswith("#"))

    plain = new_broker(tmp_path / "plain")
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

    mtls = new_broker(tmp_path / "tls")
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
