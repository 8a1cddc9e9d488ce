"""Start-up checks (dialer.bus.preflight): identity, TLS files, ports, WAVs, and the broker probe against a real
mosquitto: each configuration error is one ConfigError naming the option, and nothing else happens."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import struct
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import Broker, free_port

from dialer.bus import preflight
from dialer.bus.preflight import (
    TlsContexts,
    check_identity,
    check_port_free,
    check_tls,
    check_wav,
    preflight_bus,
    probe_broker,
)
from dialer.errors import ConfigError

SECRET = "Pr0be-s3cret-Pa55"

MakeBroker = Callable[..., Broker]  # conftest's make_broker: Broker with the work directory filled in


# -- helpers ----------------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a broker certificate for 127.0.0.1, a client certificate with CN=worker/w1, an unrelated
    key, the client key under a passphrase, a second CA and a "stranger" certificate it signed, and garbage."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    names = ("ca.pem", "ca.key", "other-ca.pem", "other-ca.key", "other.key", "encrypted.key", "garbage.pem", "ext")
    f = {n: d / n for n in names}
    for name in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN={name}", "-keyout", str(f[f"{name}.key"]),
                 "-out", str(f[f"{name}.pem"]))  # fmt: skip
    f["ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    signed: list[tuple[str, str, list[str]]] = [
        ("server", "ca", ["-extfile", str(f["ext"])]),
        ("client", "ca", []),
        ("stranger", "other-ca", []),
    ]
    for name, ca, ext in signed:
        csr, subject = d / f"{name}.csr", "/CN=localhost" if name == "server" else "/CN=worker\\/w1"
        f[f"{name}.pem"], f[f"{name}.key"] = d / f"{name}.pem", d / f"{name}.key"
        _openssl("req", *ec, "-subj", subject, "-keyout", str(f[f"{name}.key"]), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(f[f"{ca}.pem"]), "-CAkey", str(f[f"{ca}.key"]),
                 "-CAcreateserial", "-days", "2", *ext, "-out", str(f[f"{name}.pem"]))  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(f["other.key"]))
    _openssl("pkey", "-in", str(f["client.key"]), "-aes256", "-passout", "pass:x", "-out", str(f["encrypted.key"]))
    f["garbage.pem"].write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return f


def _password_broker(make_broker: MakeBroker, tmp_path: Path, extra: str = "") -> Broker:
    """The deployment's broker: no anonymous clients, a password per identity, the user name as client id."""
    pwfile = tmp_path / "passwd"
    pwfile.write_text("")
    subprocess.run(["/usr/bin/mosquitto_passwd", "-b", str(pwfile), "worker/w1", SECRET], check=True)
    pwfile.chmod(0o600)
    b = make_broker(f"password_file {pwfile}\nuse_username_as_clientid true\n{extra}")
    b.config.write_text(b.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    return b


def _mtls_broker(make_broker: MakeBroker, pki: dict[str, Path]) -> Broker:
    """Mutual TLS: no certificate, no connection; the certificate's CN is the user name."""
    b = make_broker(
        f"cafile {pki['ca.pem']}\ncertfile {pki['server.pem']}\nkeyfile {pki['server.key']}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    b.config.write_text(b.config.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    return b


def _probe(port: int, **kw: Any) -> float:
    """Run probe_broker against 127.0.0.1:port with worker/w1's defaults; return how long it took."""
    args: dict[str, Any] = {
        "tls_context": None,
        "anonymous_tls_context": None,
        "username": None,
        "password": None,
        "identity": "worker/w1",
        "insecure": False,
        "timeout": 3.0,
    }
    args.update(kw)
    started = time.monotonic()
    asyncio.run(probe_broker("127.0.0.1", port, **args))
    return time.monotonic() - started


def _raises(expect: str, fn: Any, /, *args: Any, **kw: Any) -> ConfigError:
    """``fn(*args, **kw)`` raises one ConfigError for the key ``expect``, printable as one line."""
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    assert info.value.key == expect, str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line
    return info.value


# -- identity ---------------------------------------------------------------------------------------------------


def test_identity_is_role_and_name_and_the_user_name_is_the_identity() -> None:
    assert check_identity("worker/w1", "worker/w1", SECRET, insecure=False) == ("worker", "w1")
    assert check_identity("backend/crm-1.eu:a@b", None, None, insecure=False, client_cert=True) == (
        "backend",
        "crm-1.eu:a@b",
    )
    for bad in (
        "w1",
        "agent/w1",
        "worker/",
        "worker/w1/x",
        "worker/w+",
        "worker/#",
        "worker/w1\n",
        "worker/" + "a" * 129,
    ):
        err = _raises("--identity", check_identity, bad, None, None, insecure=True)
        assert repr(bad)[:40] in str(err) or "must be" in str(err)
    assert check_identity("worker/" + "a" * 128, None, None, insecure=True)[1] == "a" * 128
    _raises("--worker-id", check_identity, "w1", None, None, insecure=True, key="--worker-id")
    err = _raises("--identity", check_identity, "dispatcher/d1", None, None, insecure=True, expect_role="worker")
    assert "worker/<name>" in str(err)
    err = _raises("--username", check_identity, "worker/w1", "worker/w2", SECRET, insecure=False)
    assert SECRET not in str(err)
    _raises("--password-env", check_identity, "worker/w1", None, SECRET, insecure=True)


def test_no_credentials_is_refused_unless_insecure() -> None:
    err = _raises("--username", check_identity, "worker/w1", None, None, insecure=False)
    assert str(err).startswith("--username: no credentials") and "--insecure for a lab broker" in str(err)
    assert check_identity("worker/w1", None, None, insecure=True) == ("worker", "w1")
    assert check_identity("worker/w1", None, None, insecure=False, client_cert=True) == ("worker", "w1")


def test_identity_rules_are_the_schemas() -> None:
    """One contract: the preflight must accept exactly what the bus schema accepts, once the schema says it."""
    from dialer.bus import schema

    if not hasattr(schema, "ROLES"):
        pytest.skip("dialer.bus.schema does not define ROLES yet")
    assert tuple(schema.ROLES) == preflight.ROLES
    for name in ("w1", "a" * 128, "a" * 129, "w1\n", "w/1", "w+", "", "x.y:z@q-_"):
        assert (schema.IDENT_RE.fullmatch(name) is not None) == (preflight.NAME_RE.fullmatch(name) is not None)


# -- TLS files --------------------------------------------------------------------------------------------------


def test_tls_files_that_load(pki: dict[str, Path]) -> None:
    contexts = check_tls(pki["ca.pem"], pki["client.pem"], pki["client.key"])
    assert isinstance(contexts, TlsContexts) and contexts.client is not contexts.anonymous
    assert contexts.client.check_hostname and contexts.client.cert_store_stats()["x509"] == 1
    assert check_tls(pki["ca.pem"], None, None).anonymous.cert_store_stats()["x509"] == 1
    assert not check_tls(pki["ca.pem"], None, None, verify_hostname=False).client.check_hostname
    assert check_tls(None, None, None).client.verify_mode.name == "CERT_REQUIRED"  # the system's CAs


def test_each_bad_tls_file_is_one_clear_error(pki: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    err = _raises("--tls-ca", check_tls, missing, None, None)
    assert str(err) == f"--tls-ca: CA file {missing} does not exist"
    err = _raises("--tls-ca", check_tls, pki["garbage.pem"], None, None)
    assert str(pki["garbage.pem"]) in str(err) and "no PEM certificate" in str(err)
    _raises("--tls-ca", check_tls, pki["ca.key"], None, None)  # a key given as the CA
    _raises("--tls-ca", check_tls, tmp_path, None, None)  # a directory
    err = _raises("--tls-key", check_tls, pki["ca.pem"], pki["client.pem"], pki["other.key"])
    assert str(err) == f"--tls-key: key {pki['other.key']} does not match certificate {pki['client.pem']}"
    err = _raises("--tls-key", check_tls, pki["ca.pem"], pki["client.pem"], pki["garbage.pem"])
    assert "is not a PEM private key" in str(err)
    err = _raises("--tls-key", check_tls, pki["ca.pem"], pki["client.pem"], pki["encrypted.key"])
    assert "passphrase" in str(err)  # and no prompt on the terminal
    _raises("--tls-key", check_tls, pki["ca.pem"], pki["client.pem"], None)  # no key anywhere
    _raises("--tls-key", check_tls, pki["ca.pem"], None, pki["client.key"])  # a key without a certificate
    _raises("--tls-cert", check_tls, pki["ca.pem"], pki["client.key"], pki["client.key"])  # a key as certificate
    _raises("--tls-cert", check_tls, pki["ca.pem"], tmp_path / "none.pem", pki["client.key"])
    _raises("--mqtt-tls-ca", check_tls, missing, None, None, key_prefix="--mqtt-tls")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_tls_file_says_so(pki: dict[str, Path], tmp_path: Path) -> None:
    locked = tmp_path / "locked.key"
    locked.write_bytes(pki["client.key"].read_bytes())
    locked.chmod(0)
    err = _raises("--tls-key", check_tls, pki["ca.pem"], pki["client.pem"], locked)
    assert "Permission denied" in str(err)


# -- ports ------------------------------------------------------------------------------------------------------


def test_a_port_held_by_another_socket_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        err = _raises("--sip-port", check_port_free, "127.0.0.1", port, "udp", key="--sip-port")
        assert str(err) == f"--sip-port: UDP port 127.0.0.1:{port} is in use by another process"
        # one of several workers' ports (sip_port + i) taken
        _raises("--sip-port", check_port_free, "127.0.0.1", port - 2, "udp", key="--sip-port", count=3)
    check_port_free("127.0.0.1", port, "udp", key="--sip-port")  # released: free again
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        _raises("--sip-port", check_port_free, "127.0.0.1", port, "tcp", key="--sip-port")


def test_free_and_any_ports_pass_and_bad_addresses_name_the_bind_key() -> None:
    check_port_free("127.0.0.1", 0, "udp", key="--sip-port", count=4)  # 0: any free port
    check_port_free("127.0.0.1", free_port(), "tcp", key="--sip-port")
    check_port_free("", free_port(), "udp", key="--sip-port")  # every address
    _raises("--sip-port", check_port_free, "127.0.0.1", 70000, "udp", key="--sip-port")
    _raises("--sip-port", check_port_free, "127.0.0.1", 65535, "udp", key="--sip-port", count=2)
    _raises("--bind", check_port_free, "192.0.2.1", free_port(), "udp", key="--sip-port")  # not this machine's
    _raises("--bind", check_port_free, "no-such-host.invalid", 5060, "udp", key="--sip-port")


# -- WAVs -------------------------------------------------------------------------------------------------------


def test_wav_is_checked_by_the_workers_converter_and_nothing_is_kept(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    pytest.importorskip("soxr")
    from dialer.sip.message_audio import message_directory

    good = tmp_path / "sorry.wav"
    with wave.open(str(good), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 3))) for i in range(8000)))
    before = set(message_directory().iterdir())
    check_wav(good, key="--abandon-wav")
    assert set(message_directory().iterdir()) == before
    err = _raises("--abandon-wav", check_wav, tmp_path / "none.wav", key="--abandon-wav")
    assert "does not exist" in str(err)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    _raises("--abandon-wav", check_wav, text, key="--abandon-wav")
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000)
    assert "silent" in str(_raises("--abandon-wav", check_wav, silent, key="--abandon-wav"))


# -- the broker -------------------------------------------------------------------------------------------------


def test_an_anonymous_broker_is_refused_unless_insecure(broker: Broker) -> None:
    with pytest.raises(ConfigError) as info:
        _probe(broker.port)
    assert info.value.key == "--insecure"
    assert str(info.value) == (
        f"--insecure: broker 127.0.0.1:{broker.port} accepts anonymous clients: anyone who can reach it could place "
        "calls; configure allow_anonymous false (see docs/deploy/) or pass --insecure for a lab"
    )
    assert _probe(broker.port, insecure=True) < 3


def test_a_password_broker_accepts_the_right_credentials(make_broker: MakeBroker, tmp_path: Path) -> None:
    b = _password_broker(make_broker, tmp_path)
    assert _probe(b.port, username="worker/w1", password=SECRET) < 3


def test_a_refused_password_names_the_option_that_gave_it_and_never_the_password(
    make_broker: MakeBroker, tmp_path: Path
) -> None:
    """The user name is right, the password is not: the key is the option that supplies the password."""
    b = _password_broker(make_broker, tmp_path)
    wrong = "wrong-" + SECRET
    err = _raises("--password-env", _probe, b.port, username="worker/w1", password=wrong)
    assert str(err) == (
        f"--password-env: broker 127.0.0.1:{b.port} refused worker/w1 with the password from --password-env "
        "(wrong password or unknown user): Not authorized"
    )
    # The broker does not say whether the user or the password is unknown, nor does the message guess.
    err = _raises("--password-env", _probe, b.port, username="worker/w9", password=SECRET, identity="worker/w9")
    assert "refused worker/w9 with the password from --password-env (wrong password or unknown user)" in str(err)
    # A caller whose password comes from another option names that one.
    err = _raises("--mqtt-password-file", _probe, b.port, username="worker/w1", password=wrong,
                  password_key="--mqtt-password-file")  # fmt: skip
    assert "with the password from --mqtt-password-file" in str(err)
    # No password at all: the same option, saying so.
    err = _raises("--password-env", _probe, b.port, username="worker/w1")
    assert "refused worker/w1 without a password (give it with --password-env)" in str(err)
    # No user name (a lab client against a password broker): the user name is what is missing.
    err = _raises("--username", _probe, b.port, insecure=True)
    assert "refused identity 'worker/w1' (no user name)" in str(err)


def test_no_refusal_contains_the_password(make_broker: MakeBroker, tmp_path: Path) -> None:
    """Every way preflight_bus turns credentials down, with the right password and a wrong one."""
    b = _password_broker(make_broker, tmp_path)
    attempts: list[dict[str, Any]] = [
        {"identity": "worker/w1", "username": "worker/w1"},  # accepted with SECRET, refused by the broker otherwise
        {"identity": "worker/w9", "username": "worker/w9"},  # unknown user: refused by the broker
        {"identity": "worker/w1", "username": "worker/w2"},  # user name not the identity: refused before connecting
        {"identity": "worker/w1", "username": None},  # a password without a user name: likewise
        {"identity": "worker/w1", "username": "worker/w1", "port": free_port()},  # nobody listening
    ]
    refusals = 0
    for password in (SECRET, "wrong-" + SECRET):
        for kw in attempts:
            try:
                asyncio.run(preflight_bus(**{"host": "127.0.0.1", "port": b.port, "timeout": 3.0, **kw},
                                          password=password))  # fmt: skip
            except ConfigError as exc:
                refusals += 1
                assert SECRET not in str(exc), str(exc)  # nor, so, the wrong password, which contains it
            else:
                assert password == SECRET and kw is attempts[0]
    assert refusals == 2 * len(attempts) - 1


def test_nothing_listening_names_broker_quickly() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        _probe(port, username="worker/w1", password=SECRET)
    assert time.monotonic() - started < 2
    assert info.value.key == "--broker"
    assert str(info.value).startswith(f"--broker: cannot reach broker 127.0.0.1:{port}: connection refused")
    with pytest.raises(ConfigError) as info:
        asyncio.run(
            probe_broker(
                "no-such-host.invalid", 1883, tls_context=None, anonymous_tls_context=None, username=None,
                password=None, identity="worker/w1", insecure=True, timeout=2,
            )
        )  # fmt: skip
    assert info.value.key == "--broker" and "unknown host" in str(info.value)


def test_something_that_is_not_a_broker_is_not_waited_on_forever() -> None:
    with socket.socket() as mute:  # accepts TCP connections, never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        with pytest.raises(ConfigError) as info:
            _probe(mute.getsockname()[1], timeout=1.0)
    assert info.value.key == "--broker" and "no MQTT answer within 1.0 s" in str(info.value)


def test_mutual_tls_broker_refuses_anonymous_and_accepts_the_certificate(
    make_broker: MakeBroker, pki: dict[str, Path]
) -> None:
    b = _mtls_broker(make_broker, pki)
    contexts = check_tls(pki["ca.pem"], pki["client.pem"], pki["client.key"])
    elapsed = _probe(b.port, tls_context=contexts.client, anonymous_tls_context=contexts.anonymous)
    assert elapsed < 3
    # The same broker reached with the client's context for the "anonymous" attempt would accept it: that is
    # why probe_broker needs the certificate-less one.
    with pytest.raises(ValueError):
        _probe(b.port, tls_context=contexts.client)


def test_tls_failures_against_a_real_broker(make_broker: MakeBroker, pki: dict[str, Path]) -> None:
    b = _mtls_broker(make_broker, pki)
    untrusting = check_tls(pki["other-ca.pem"], pki["client.pem"], pki["client.key"])
    with pytest.raises(ConfigError) as info:
        _probe(b.port, tls_context=untrusting.client, anonymous_tls_context=untrusting.anonymous)
    assert info.value.key == "--tls-ca" and "not trusted" in str(info.value)
    no_cert = check_tls(pki["ca.pem"], None, None)
    with pytest.raises(ConfigError) as info:  # the broker wants a certificate and we have none
        _probe(b.port, tls_context=no_cert.client, anonymous_tls_context=no_cert.anonymous, insecure=True)
    assert info.value.key == "--tls-cert" and "client certificate" in str(info.value)
    stranger = check_tls(pki["ca.pem"], pki["stranger.pem"], pki["stranger.key"])
    with pytest.raises(ConfigError) as info:  # a certificate from a CA the broker does not know
        _probe(b.port, tls_context=stranger.client, anonymous_tls_context=stranger.anonymous)
    assert info.value.key == "--tls-cert" and "certificate" in str(info.value)
    with pytest.raises(ConfigError) as info:  # a TLS port reached in plain text
        _probe(b.port, username="worker/w1", password=SECRET)
    assert info.value.key == "--broker" and "without TLS" in str(info.value)
    plain = make_broker()
    plain.start()
    with pytest.raises(ConfigError) as info:  # a plain port reached with TLS
        _probe(plain.port, tls_context=no_cert.client, anonymous_tls_context=no_cert.anonymous, insecure=True)
    assert info.value.key == "--tls" and "TLS handshake" in str(info.value)


def test_preflight_bus_runs_the_bus_checks_in_order(make_broker: MakeBroker, tmp_path: Path) -> None:
    b = _password_broker(make_broker, tmp_path)
    common: dict[str, Any] = {"host": "127.0.0.1", "port": b.port, "timeout": 3.0, "expect_role": "worker"}
    assert asyncio.run(preflight_bus(identity="worker/w1", username="worker/w1", password=SECRET, **common)) is None
    with pytest.raises(ConfigError) as info:  # local checks first: no connection attempted for a bad identity
        asyncio.run(preflight_bus(identity="worker/w 1", username="worker/w 1", password=SECRET, **common))
    assert info.value.key == "--identity"
    with pytest.raises(ConfigError) as info:
        asyncio.run(
            preflight_bus(
                identity="worker/w1", username="worker/w1", password=SECRET, ca_file=tmp_path / "no-ca.pem", **common
            )
        )
    assert info.value.key == "--tls-ca"
    with pytest.raises(ConfigError) as info:
        asyncio.run(preflight_bus(identity="worker/w1", username="worker/w1", password="nope", **common))
    assert info.value.key == "--password-env" and "nope" not in str(info.value)
    with pytest.raises(ConfigError) as info:  # the caller's own name for the password's option
        asyncio.run(
            preflight_bus(identity="worker/w1", username="worker/w1", password="nope", password_key="--pw", **common)
        )
    assert info.value.key == "--pw" and "with the password from --pw" in str(info.value)


def test_the_cli_prints_a_preflight_error_as_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from dialer import cli

    def command(args: argparse.Namespace) -> int:
        check_identity("worker/w1", None, None, insecure=False)
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=command)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dialer: error: --username: no credentials")
