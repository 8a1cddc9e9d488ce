"""Start-up checks for the dispatcher and the workers: every configuration error stops the process before it
does anything, with one line naming the option to fix (the CLI prints a :class:`~dialer.errors.ConfigError` as
``dialer: error: <key>: <message>`` and exits with status 2).

Why at start: a wrong CA file, a key that does not match its certificate, a SIP port another process holds or a
password the broker refuses otherwise shows up later and worse: as a bus client that retries forever with a
warning in a log, as a worker that dies when pjsua2 binds, or as the first abandoned person hearing nothing.

Why the anonymous probe: the broker's ACL is what stops a stranger from publishing dial offers or agent
commands (see the identity contract in :mod:`dialer.bus.topics`). A broker that accepts clients without
credentials lets anyone who can reach it place calls, so the dispatcher and the workers refuse to run against one
unless told ``--insecure`` (a lab broker).

The checks change nothing: they read files, bind a socket and close it, and open two short MQTT connections that
publish and subscribe nothing. Intended call order, cheapest and most local first, so the first error printed is
the most basic one::

    role, name = check_identity(identity, username, password, insecure=..., client_cert=cert is not None,
                                expect_role="worker")                             # no I/O
    contexts = check_tls(ca, cert, key) if tls else None                           # reads the three files
    check_port_free(bind, sip_port, "udp", key="--sip-port", count=sip_workers)    # workers only
    check_wav(abandon_wav, key="--abandon-wav")                                    # workers only (or prepare_message)
    await probe_broker(host, port, tls_context=contexts.client, anonymous_tls_context=contexts.anonymous, ...)

:func:`preflight_bus` runs the three bus steps (identity, TLS, broker) in that order; a worker checks its ports
and WAVs before calling it, so that only the last step waits on the network. Run it before the bus client
starts: the credential probe connects as the process's own identity, which the broker
(``use_username_as_clientid``) makes its client id, so a probe made while the process is connected would take its
session over.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dialer.errors import ConfigError

log = logging.getLogger("dialer.bus.preflight")

#: The roles an identity can have, and the form of its name: the identity contract (issue 14). The same rules
#: are :data:`dialer.bus.schema.ROLES` and ``IDENT_RE``; the tests compare the two so they cannot drift.
ROLES: tuple[str, ...] = ("dispatcher", "worker", "backend", "monitor")
NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

#: MQTT 5 CONNACK reason codes that mean "these credentials are not welcome" (0x86 bad user name or password,
#: 0x87 not authorized, 0x8A banned, 0x8C bad authentication method) and the one that means the client id is.
_AUTH_CODES = frozenset({0x86, 0x87, 0x8A, 0x8C})
_CLIENT_ID_CODE = 0x85


def _one_line(text: object) -> str:
    """Messages end up as one line on stderr: fold any newline a library put in its text."""
    return " ".join(str(text).split())


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- identity ---------------------------------------------------------------------------------------------------


def check_identity(
    identity: str,
    username: str | None,
    password: str | None,
    *,
    insecure: bool,
    client_cert: bool = False,
    expect_role: str | None = None,
    key: str = "--identity",
    password_key: str = "--password-env",
) -> tuple[str, str]:
    """Check the bus identity and the credentials given with it; return ``(role, name)``.

    The identity is ``<role>/<name>``: ``role`` one of :data:`ROLES`, ``name`` 1-128 of ``A-Z a-z 0-9 _ . : @ -``
    (whole string: no newline, ``/``, ``+`` or ``#``, which would change the topic the broker's ACL checks). The
    broker takes the role from the user name, so a ``username``, when given, must be the identity itself; a
    ``password`` needs a user name. ``client_cert`` says a TLS client certificate is configured: with
    ``use_identity_as_username`` its CN is the identity and no user name is needed (that the CN *is* the
    identity cannot be read with the standard library; the broker probe finds out). With neither a user name nor
    a certificate the broker cannot tell who we are, which only a broker open to anyone accepts: refused unless
    ``insecure``. ``expect_role`` (``"worker"`` for ``dialer worker``) refuses an identity of another role,
    whose ACL would not let this process do its job.

    Keys: ``key`` for the identity, ``--username``, ``password_key`` (the option that supplies the password).
    """
    role, sep, name = identity.partition("/") if isinstance(identity, str) else ("", "", "")
    if not sep or role not in ROLES:
        raise ConfigError(key, f"identity {identity!r} must be <role>/<name>, role one of {', '.join(ROLES)}")
    if NAME_RE.fullmatch(name) is None:
        raise ConfigError(
            key, f"name {name!r} in identity {identity!r} must be 1-128 of A-Z a-z 0-9 _ . : @ - (no '/', '+', '#')"
        )
    if expect_role is not None and role != expect_role:
        raise ConfigError(key, f"this command runs as {expect_role}/<name>, not {identity!r}")
    if password is not None and username is None:
        raise ConfigError(password_key, "a password needs --username")
    if username is not None and username != identity:
        raise ConfigError(
            "--username",
            f"user name {username!r} must be the identity {identity!r}: the broker's ACL takes the role and the "
            "topics this client may use from the user name",
        )
    if username is None and not client_cert and not insecure:
        raise ConfigError(
            "--username",
            f"no credentials: give --username (the identity) with {password_key}, or a client certificate "
            "(--tls-cert), or pass --insecure for a lab broker",
        )
    return role, name


# -- TLS --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsContexts:
    """The two contexts a bus process needs: ``client`` (with the client certificate, if any) for the real
    connection, and ``anonymous`` (the same trust, no certificate) for :func:`probe_broker`'s anonymous probe,
    which must not present the certificate or it would not be anonymous."""

    client: ssl.SSLContext
    anonymous: ssl.SSLContext


def _readable(path: str | os.PathLike[str], key: str, what: str) -> Path:
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError(key, f"{what} {file} does not exist")
    if not file.is_file():
        raise ConfigError(key, f"{what} {file} is not a file")
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {what} {file}: {exc.strerror}") from None
    return file


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason (``KEY_VALUES_MISMATCH``) in parentheses, or nothing when it gave none ("PEM lib")."""
    return f" ({_one_line(exc.reason)})" if exc.reason else ""


def _server_context(ca: Path | None, ca_key: str, verify_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the broker's certificate and, by default, its name
    if ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except ssl.SSLError as exc:
            raise ConfigError(ca_key, f"CA file {ca} holds no PEM certificate{_ssl_reason(exc)}") from None
        if ctx.cert_store_stats()["x509"] == 0:
            raise ConfigError(ca_key, f"CA file {ca} holds no certificate (only revocation lists?)")
    if not verify_hostname:
        ctx.check_hostname = False
    return ctx


def check_tls(
    ca_file: str | os.PathLike[str] | None,
    cert_file: str | os.PathLike[str] | None,
    key_file: str | os.PathLike[str] | None,
    key_prefix: str = "--tls",
    *,
    verify_hostname: bool = True,
) -> TlsContexts:
    """Check the TLS files and load them; return the contexts to connect with (see :class:`TlsContexts`).

    ``ca_file`` verifies the broker (the system's CAs when ``None``); ``cert_file`` and ``key_file`` are the
    client certificate and its key (``key_file`` ``None``: the key is in ``cert_file``). Each file must exist, be
    readable and load: the CA file must hold a PEM certificate, the certificate file a PEM certificate, the key a
    PEM private key *without* a passphrase (a process started by systemd has nobody to type it; OpenSSL would
    otherwise prompt on the terminal) that matches the certificate. Errors name the file and the option:
    ``{key_prefix}-ca``, ``{key_prefix}-cert``, ``{key_prefix}-key``. ``verify_hostname=False`` skips the check
    of the broker's name against its certificate (a lab broker reached by an address its certificate does not
    name); the chain is still verified.
    """
    ca_key, cert_key, key_key = f"{key_prefix}-ca", f"{key_prefix}-cert", f"{key_prefix}-key"
    ca = _readable(ca_file, ca_key, "CA file") if ca_file is not None else None
    if key_file is not None and cert_file is None:
        raise ConfigError(key_key, f"a key needs its certificate: {cert_key}")
    anonymous = _server_context(ca, ca_key, verify_hostname)
    client = _server_context(ca, ca_key, verify_hostname)
    if cert_file is None:
        return TlsContexts(client=client, anonymous=anonymous)

    cert = _readable(cert_file, cert_key, "certificate")
    key = _readable(key_file, key_key, "key") if key_file is not None else None
    try:  # a certificate alone, so that a bad certificate is not reported as a bad key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(cert))
    except ssl.SSLError as exc:
        raise ConfigError(cert_key, f"{cert} holds no PEM certificate{_ssl_reason(exc)}") from None

    asked: list[bool] = []

    def no_passphrase() -> bytes:
        asked.append(True)
        return b""

    try:
        client.load_cert_chain(str(cert), str(key) if key is not None else None, password=no_passphrase)
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                key_key if key is not None else cert_key,
                f"key {key or cert} does not match certificate {cert}",
            ) from None
        if asked:
            raise ConfigError(
                key_key if key is not None else cert_key,
                f"key {key or cert} is protected by a passphrase; give a key without one, readable only by "
                "this service's user",
            ) from None
        if key is None:
            raise ConfigError(key_key, f"{cert} holds no private key; give the key file{_ssl_reason(exc)}") from None
        raise ConfigError(key_key, f"{key} is not a PEM private key{_ssl_reason(exc)}") from None
    return TlsContexts(client=client, anonymous=anonymous)


# -- ports ------------------------------------------------------------------------------------------------------


def check_port_free(
    host: str,
    port: int,
    proto: Literal["udp", "tcp"] = "udp",
    *,
    key: str,
    count: int = 1,
    host_key: str = "--bind",
) -> None:
    """Check that ``count`` ports from ``port`` on ``host`` can be bound now (SIP's, before pjsua2 binds them).

    Port 0 means "any free port" and passes. Each port is bound and released at once; UDP without
    ``SO_REUSEADDR`` (so a port another process holds fails, as it would for pjsip), TCP with it on POSIX (as a
    listening server sets it, so a port left in TIME_WAIT by the previous run does not fail). This is a snapshot:
    another process may take the port between this check and the real bind, which then fails as before.
    Errors: the port in use, or privileged, name ``key``; an address that is not this machine's names
    ``host_key``.
    """
    if proto not in ("udp", "tcp"):
        raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
    if count < 1:
        raise ValueError("count must be >= 1")
    if not 0 <= port <= 65535:
        raise ConfigError(key, f"port {port} is not 0-65535")
    if port == 0:
        return
    if port + count - 1 > 65535:
        raise ConfigError(key, f"ports {port}-{port + count - 1} go past 65535")
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(host_key, f"cannot resolve {host!r} ({exc.strerror})") from None
    family, _, sock_proto, _, address = infos[0]
    for p in range(port, port + count):
        with socket.socket(family, kind, sock_proto) as s:
            if proto == "tcp" and os.name == "posix":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address[0], p, *address[2:]))
                if proto == "tcp":
                    s.listen(1)  # Linux lets two SO_REUSEADDR sockets bind one port; only one may listen
            except OSError as exc:
                where = f"{proto.upper()} port {_where(host or str(address[0]), p)}"
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(key, f"{where} is in use by another process") from None
                if exc.errno == errno.EACCES:
                    raise ConfigError(
                        key, f"{where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    ) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ConfigError(host_key, f"{host} is not an address of this machine") from None
                raise ConfigError(key, f"cannot bind {where}: {exc.strerror or exc}") from None


# -- recorded messages ------------------------------------------------------------------------------------------


def check_wav(path: str | os.PathLike[str], key: str) -> None:
    """Check that ``path`` is a message every caller could hear, by the worker's own rules, and keep nothing.

    Delegates to :func:`dialer.sip.message_audio.prepare_message`, the converter the worker plays messages
    through, so this check and the worker cannot disagree (missing, unreadable, not a WAV, empty, silent, under
    8 kHz, over 60 s: one :class:`ConfigError` naming ``key``). The converted copy it writes is deleted at once.
    A process that will play the message should call ``prepare_message`` itself instead and play its copy: the
    same check, and the file is read once.
    """
    from dialer.sip.message_audio import prepare_message

    prepare_message(path, key=key).path.unlink(missing_ok=True)


# -- the broker -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one connection attempt found. ``kind``: ``accepted``; ``refused`` (a CONNACK with a failure code:
    ``code`` and ``detail``); ``closed`` (the broker hung up before a CONNACK; ``alert`` is the TLS alert it sent,
    such as ``TLSV13_ALERT_CERTIFICATE_REQUIRED``, if any); ``untrusted`` (the broker's certificate failed
    verification); ``tls`` (the handshake failed otherwise); ``unreachable`` (no TCP connection); ``silent``
    (connected, no CONNACK in time)."""

    kind: str
    detail: str = ""
    code: int = 0
    alert: str = ""


_SSL_ERROR = re.compile(r"\[SSL: (?P<alert>[A-Z0-9_]+)\] (?P<text>[^(]*)")


def _closed(errors: list[str]) -> _Outcome:
    """A hang-up before the CONNACK, with the TLS alert paho logged ("failed to receive on socket: [SSL: X] x")."""
    if not errors:
        return _Outcome("closed", "connection closed")
    text = re.sub(r" \(_ssl\.c:\d+\)", "", errors[-1])
    m = _SSL_ERROR.search(text)
    if m is not None:
        return _Outcome("closed", m["text"].strip(), alert=m["alert"])
    return _Outcome("closed", text.removeprefix("failed to receive on socket: "))


def _attempt(
    host: str,
    port: int,
    *,
    tls_context: ssl.SSLContext | None,
    client_id: str,
    username: str | None,
    password: str | None,
    timeout: float,
) -> _Outcome:
    """One MQTT 5 connection in this (worker) thread: connect, wait for the CONNACK, disconnect.

    paho directly, not aiomqtt: aiomqtt waits out its whole timeout when the broker hangs up before a CONNACK
    (which is how a TLS broker refuses a client certificate) and keeps only the text of a TLS error, and this
    probe needs both. Every blocking step is bounded so the thread ends within about ``timeout``.
    """
    import paho.mqtt.client as mqtt

    deadline = time.monotonic() + timeout
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    client.connect_timeout = max(timeout / 2, 0.1)  # the TCP connect, then the TLS handshake, each
    if tls_context is not None:
        client.tls_set_context(tls_context)
        if not tls_context.check_hostname:
            client.tls_insecure_set(True)  # else paho checks the name itself
    if username is not None:
        client.username_pw_set(username, password)
    result: list[_Outcome] = []
    errors: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not result:
            failed = bool(getattr(reason, "is_failure", reason != 0))
            code = int(getattr(reason, "value", reason))
            result.append(_Outcome("refused", _one_line(reason), code) if failed else _Outcome("accepted"))

    def on_disconnect(_c: Any, _u: Any, _flags: Any, _reason: Any, _props: Any) -> None:
        if not result:
            result.append(_closed(errors))

    def on_log(_c: Any, _u: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:  # "failed to receive on socket: <ssl alert>": why the broker hung up
            errors.append(_one_line(text))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_log = on_log
    try:
        try:
            client.connect(host, port, keepalive=max(5, round(timeout) * 2), clean_start=True)
        except ssl.SSLCertVerificationError as exc:
            return _Outcome("untrusted", _one_line(exc.verify_message or exc.reason or exc))
        except ssl.CertificateError as exc:  # paho's own name check, when the context does not check names
            return _Outcome("untrusted", _one_line(exc))
        except ssl.SSLError as exc:
            return _Outcome("tls", _one_line(exc.reason or exc))
        except socket.gaierror as exc:
            return _Outcome("unreachable", f"unknown host ({exc.strerror})")
        except TimeoutError:
            return _Outcome("unreachable", f"no answer within {client.connect_timeout:.1f} s")
        except ConnectionRefusedError:
            return _Outcome("unreachable", "connection refused (is the broker running and listening there?)")
        except ConnectionResetError:  # TCP connected, then reset: a plain MQTT port refusing a TLS ClientHello
            if tls_context is not None:
                return _Outcome("tls", "the broker reset the connection during the handshake")
            return _Outcome("unreachable", "connection reset")
        except OSError as exc:
            return _Outcome("unreachable", _one_line(exc.strerror or exc))
        while not result and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not result:
                result.append(_closed(errors))
        if not result:
            return _Outcome("silent", f"connected, but no MQTT answer within {timeout:.1f} s")
        if result[0].kind == "accepted":
            client.disconnect()  # a clean DISCONNECT: no will, and the broker logs a normal goodbye
            end = min(deadline, time.monotonic() + 0.5)
            while client.is_connected() and time.monotonic() < end:
                client.loop(timeout=0.05)
        return result[0]
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()


def _reach_error(outcome: _Outcome, where: str, tls_key_prefix: str) -> ConfigError | None:
    """The error for an attempt that never got as far as the broker's verdict on credentials, or ``None``."""
    if outcome.kind == "unreachable":
        return ConfigError("--broker", f"cannot reach broker {where}: {outcome.detail}")
    if outcome.kind == "untrusted":
        return ConfigError(f"{tls_key_prefix}-ca", f"broker {where}'s certificate is not trusted: {outcome.detail}")
    if outcome.kind == "tls":
        return ConfigError(
            tls_key_prefix, f"TLS handshake with broker {where} failed ({outcome.detail}); is TLS enabled on that port?"
        )
    if outcome.kind == "silent":
        return ConfigError(
            "--broker", f"broker {where} {outcome.detail} (not an MQTT broker, or a TLS port reached without TLS?)"
        )
    return None


async def probe_broker(
    host: str,
    port: int,
    *,
    tls_context: ssl.SSLContext | None,
    anonymous_tls_context: ssl.SSLContext | None,
    username: str | None,
    password: str | None,
    identity: str,
    insecure: bool,
    timeout: float = 5.0,
    tls_key_prefix: str = "--tls",
    password_key: str = "--password-env",
) -> None:
    """Ask the broker two questions before the process relies on it; raise :class:`ConfigError` on a bad answer.

    (a) Does it accept a client with no credentials? An MQTT 5 connection with no user name, a random client id
    ``probe-<hex>`` and ``anonymous_tls_context`` (the same trust, no client certificate). Accepted: refused with
    ``--insecure`` as the key unless ``insecure`` (then a warning is logged). It counts as refused only on the
    broker's word (a failure CONNACK, or a hang-up or failed handshake while (b) gets through: how a mutual-TLS
    broker turns away a certificate-less client); an attempt that learns nothing (no answer) fails closed, with
    ``--broker``, unless ``insecure``.

    (b) Does it accept us? A connection with ``username``/``password``, ``identity`` as client id and
    ``tls_context``. No TCP connection, or no MQTT answer: ``--broker``; the broker's certificate not trusted:
    ``--tls-ca``; our client certificate missing or refused (the broker's TLS alert): ``--tls-cert``; another
    TLS failure: ``--tls`` (``tls_key_prefix`` sets the ``--tls`` part, as for :func:`check_tls`); a refusal of
    our credentials: ``password_key`` (the option that supplies the password) when a user name was given, with a
    password ("wrong password or unknown user": the broker does not say which) or without one, else
    ``--username``; ``--identity`` for a refused client id; the broker's reason follows. The password is never
    part of a message.

    Both attempts run at once, each bounded by ``timeout`` seconds; nothing is published or subscribed and both
    disconnect cleanly, so no will fires. Errors are reported in this order: cannot reach or trust the broker,
    anonymous clients accepted, our credentials refused. (b) connects with clean start, as the bus client's first
    connection does: with ``use_username_as_clientid`` it takes over a live session of the same identity, so run
    this before the process's own bus client starts. ``anonymous_tls_context`` must be ``None`` exactly when
    ``tls_context`` is (see :func:`check_tls`).
    """
    if (tls_context is None) != (anonymous_tls_context is None):
        raise ValueError("give both TLS contexts (check_tls returns them) or neither")
    if timeout <= 0:
        raise ValueError("timeout must be > 0")
    where = _where(host, port)
    started = time.monotonic()
    anonymous, ours = await asyncio.gather(
        asyncio.to_thread(
            _attempt,
            host,
            port,
            tls_context=anonymous_tls_context,
            client_id=f"probe-{secrets.token_hex(6)}",
            username=None,
            password=None,
            timeout=timeout,
        ),
        asyncio.to_thread(
            _attempt,
            host,
            port,
            tls_context=tls_context,
            client_id=identity,
            username=username,
            password=password,
            timeout=timeout,
        ),
    )
    error = _reach_error(ours, where, tls_key_prefix)
    if error is not None:
        raise error
    if anonymous.kind == "accepted":
        if not insecure:
            raise ConfigError(
                "--insecure",
                f"broker {where} accepts anonymous clients: anyone who can reach it could place calls; configure "
                "allow_anonymous false (see docs/deploy/) or pass --insecure for a lab",
            )
        log.warning("broker %s accepts anonymous clients; running anyway (--insecure: a lab only)", where)
    if ours.kind == "refused":
        if ours.code == _CLIENT_ID_CODE:
            raise ConfigError("--identity", f"broker {where} refused client id {identity!r}: {ours.detail}")
        if ours.code not in _AUTH_CODES:
            who = f"user {username!r}" if username is not None else f"identity {identity!r} (no user name)"
            raise ConfigError(
                "--username",
                f"broker {where} refused {who}: {ours.detail} (the broker's own trouble, not our credentials?)",
            )
        if username is not None and password is not None:
            raise ConfigError(
                password_key,
                f"broker {where} refused {username} with the password from {password_key} (wrong password or "
                f"unknown user): {ours.detail}",
            )
        if username is not None:
            raise ConfigError(
                password_key,
                f"broker {where} refused {username} without a password (give it with {password_key}): {ours.detail}",
            )
        raise ConfigError("--username", f"broker {where} refused identity {identity!r} (no user name): {ours.detail}")
    if ours.kind == "closed":
        if "CERTIFICATE_REQUIRED" in ours.alert:
            raise ConfigError(
                f"{tls_key_prefix}-cert",
                f"broker {where} requires a TLS client certificate (the identity as its CN) and got none from us",
            )
        if ours.alert:
            raise ConfigError(
                f"{tls_key_prefix}-cert", f"broker {where} refused our TLS client certificate: {ours.detail}"
            )
        if tls_context is not None:
            # The alert saying why is often lost: the broker closes on our unread CONNECT, the reset discards it.
            raise ConfigError(
                f"{tls_key_prefix}-cert",
                f"broker {where} closed the TLS connection before accepting {identity!r} ({ours.detail}): it "
                "probably wants a client certificate (the identity as its CN) that we did not give or it does not "
                "accept",
            )
        raise ConfigError(
            "--broker",
            f"broker {where} hung up before accepting {identity!r} ({ours.detail}): a TLS port reached without TLS?",
        )
    if anonymous.kind not in ("refused", "closed", "tls") and not insecure:
        raise ConfigError(
            "--broker",
            f"cannot tell whether broker {where} accepts anonymous clients ({anonymous.detail}); pass --insecure "
            "to run without knowing",
        )
    log.info(
        "broker %s accepts %s and %s anonymous clients (%.2f s)",
        where,
        identity,
        "also" if anonymous.kind == "accepted" else "refuses",
        time.monotonic() - started,
    )


# -- all of the bus checks --------------------------------------------------------------------------------------


async def preflight_bus(
    *,
    host: str,
    port: int,
    identity: str,
    username: str | None,
    password: str | None,
    tls: bool = False,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    expect_role: str | None = None,
    verify_hostname: bool = True,
    timeout: float = 5.0,
    identity_key: str = "--identity",
    tls_key_prefix: str = "--tls",
    password_key: str = "--password-env",
) -> TlsContexts | None:
    """The bus checks in their order: :func:`check_identity`, :func:`check_tls` (when ``tls`` or any TLS file
    is given), :func:`probe_broker`. Returns the TLS contexts (``None`` without TLS) so the caller can connect
    with exactly what was checked. Ports and WAVs are the worker's own checks (:func:`check_port_free`,
    :func:`check_wav`): run them before this function, which is the only one that waits on the network."""
    check_identity(
        identity,
        username,
        password,
        insecure=insecure,
        client_cert=cert_file is not None,
        expect_role=expect_role,
        key=identity_key,
        password_key=password_key,
    )
    contexts = None
    if tls or ca_file is not None or cert_file is not None or key_file is not None:
        contexts = check_tls(ca_file, cert_file, key_file, tls_key_prefix, verify_hostname=verify_hostname)
    await probe_broker(
        host,
        port,
        tls_context=contexts.client if contexts is not None else None,
        anonymous_tls_context=contexts.anonymous if contexts is not None else None,
        username=username,
        password=password,
        identity=identity,
        insecure=insecure,
        timeout=timeout,
        tls_key_prefix=tls_key_prefix,
        password_key=password_key,
    )
    return contexts


__all__ = [
    "NAME_RE",
    "ROLES",
    "TlsContexts",
    "check_identity",
    "check_port_free",
    "check_tls",
    "check_wav",
    "preflight_bus",
    "probe_broker",
]
