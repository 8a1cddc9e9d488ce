"""``dialer broker-config OUTDIR``: a mosquitto deployment for the bus: configuration, ACL, password file and
one random password per identity.

Why generate rather than copy an example: the ACL, the password file and the processes' credentials must agree on
every identity's name (``worker/w1`` is the MQTT user name, the client id and a level of the topic tree), and a
hand-typed ACL that is wrong does not fail loudly; it silently lets a worker read another's offers or silently
drops a dispatcher's events. Here every name is checked once, before anything is written, and the ACL is one pure
function (:func:`acl_text`) that the checked-in example ``docs/deploy/acl`` is tested against.

The identities, topic tree and ACL follow the bus identity contract (issue 14): every client is ``<role>/<name>``,
and what each role may do is in :func:`acl_text`'s comments and in ``docs/deploy/README.md``.

Passwords are hashed by mosquitto's own ``mosquitto_passwd`` (so the hash format is whatever this broker reads),
fed through a private file with ``-U`` rather than ``-b``: secrets never go on a command line, where ``ps`` shows
them. With ``--tls-ca/--tls-cert/--tls-key`` the broker takes each client's identity from its certificate's CN and
ignores passwords, so no password file or credentials are written then.

mosquitto started as root (as Debian's service starts it, or ``mosquitto -c`` typed by root) drops to user
``mosquitto`` before it reads the password file and the ACL, and reads them again as that user on a reload
(SIGHUP). So when group ``mosquitto`` exists, ``passwd`` and ``acl`` are written as group ``mosquitto``, mode
0640, and the persistence directory ``data`` is given to user ``mosquitto``; every time, ``--force`` included (a
``--force`` that wrote root-only files would lock every client out at the next reload). ``credentials.env``
stays 0600, the writer's own. What this process cannot do (no such user or group, or not root) and anything else
user ``mosquitto`` could not read or enter is printed as the commands to run (:func:`broker_access`).

Exit statuses: 0 written; 2 a bad name, root, path or port, a file that exists without ``--force``, or no
``mosquitto_passwd`` on PATH. Nothing is written unless everything checks out.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError

DEFAULT_ROOT = "dialer/v1"
ROLES = ("dispatcher", "worker", "backend", "monitor")

#: A name (the part after ``role/``), a campaign: safe as one topic level and as part of an ACL line.
NAME_PATTERN = r"[A-Za-z0-9_.:@-]{1,128}"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

CONF, ACL, PASSWD, CREDENTIALS = "mosquitto.conf", "acl", "passwd", "credentials.env"

#: The user (and group) mosquitto drops to when started as root: Debian's package creates both.
BROKER_USER = "mosquitto"


def check_name(value: str, what: str) -> str:
    """``value`` if it is a whole match of :data:`NAME_PATTERN`; otherwise :class:`ConfigError` naming ``what``.

    ``re.fullmatch``, not ``match`` with ``$``: ``$`` also matches before a final newline, and "w1\\n" in the ACL
    file would end a ``user`` line early and start another.
    """
    if re.fullmatch(NAME_PATTERN, value) is None:
        raise ConfigError(what, f"{value!r} must be 1-128 of A-Z a-z 0-9 _ . : @ -")
    return value


def check_root(root: str) -> str:
    """``root`` if it can head the topic tree in an ACL: non-empty levels, no wildcard, not a ``$`` topic.

    Also no ``%`` (mosquitto would read ``%u``/``%c`` in a pattern line as a substitution), no whitespace and no
    control characters (a newline would start a new ACL line).
    """
    levels = root.split("/")
    if not root or any(not level for level in levels):
        raise ConfigError("--root", f"{root!r} has an empty level")
    if root.startswith("$"):
        raise ConfigError("--root", f"{root!r} starts with '$' (reserved for the broker's own topics)")
    bad = sorted({c for c in root if c in "+#%" or c.isspace() or _CONTROL.match(c)})
    if bad:
        raise ConfigError("--root", f"{root!r} contains {', '.join(map(repr, bad))}")
    return root


def acl_text(root: str, dispatchers: Sequence[str], campaign: str | None = None) -> str:
    """The mosquitto ACL file of the bus: patterns for every identity, one section per dispatcher.

    ``campaign`` limits the dispatcher sections to that campaign (the identities' own patterns stay on ``+``:
    a worker or monitor serving two campaigns needs no second account). Pure, so ``docs/deploy/acl`` can be
    tested to be ``acl_text("dialer/v1", ["main"])``.
    """
    check_root(root)
    if not dispatchers:
        raise ConfigError("--dispatcher", "at least one dispatcher is required")
    for name in dispatchers:
        check_name(name, "--dispatcher")
    scope = "+" if campaign is None else check_name(campaign, "--campaign")
    where = "any campaign" if campaign is None else f"campaign {campaign} only"
    lines = [
        "# mosquitto ACL of the dialer bus (mosquitto 2.0), written by `dialer broker-config`.",
        "#",
        "# Every client is an identity <role>/<name>: its MQTT user name (password file, or the CN of its",
        "# certificate with mutual TLS) and, with use_username_as_clientid, its client id. The roles:",
        "#   dispatcher  runs the campaign: reads what identities send, writes to them, publishes events and state",
        "#   worker      places calls: reads its own offers and orders, reports on its calls",
        "#   backend     the CRM / agent desktops' server: sends commands (the dispatcher obeys them), reads replies,",
        "#               events and state",
        "#   monitor     read-only: events, state, statuses; may ask for a replay (other commands: forbidden)",
        "# Anonymous clients never get here: the broker refuses them (allow_anonymous false).",
        "#",
        f"# Topics are {root}/<campaign>/...; '+' below stands for any campaign. mosquitto allows what a line",
        "# grants and denies everything else. %u is the whole user name, role included: for worker/w1,",
        f"# {root}/+/from/%u/# is {root}/+/from/worker/w1/#. Comments must be lines of their own (after a user",
        "# name, mosquitto would take them as part of the name). mosquitto warns that three patterns below have",
        "# no %u: that is intended, they are for every authenticated identity (a 'topic' line outside any 'user'",
        "# section would apply to anonymous clients only).",
        "",
        "# Every identity publishes only under its own name: its retained status and last will, its commands",
        "# (from/<role>/<name>/cmd/<category>/<action>) and, for a worker, the reports on its calls",
        "# (from/worker/<name>/event). Receivers take the sender from these levels, never from the message body.",
        f"pattern write {root}/+/from/%u/#",
        "# It reads what is addressed to it alone: the replies to its commands (to/<role>/<name>/reply) and, for a",
        "# worker, its offers and orders (to/worker/<name>/cmd). No worker reads another worker's offers.",
        f"pattern read {root}/+/to/%u/#",
        "# Every identity reads the campaign's events,",
        f"pattern read {root}/+/event/#",
        "# the retained campaign state (state/stats, state/abandonment)",
        f"pattern read {root}/+/state/#",
        "# and every identity's retained status (who is online).",
        f"pattern read {root}/+/from/+/+/status",
        "#",
        "# So a worker, backend or monitor cannot publish events, state or anything under to/, cannot publish",
        "# under another identity's from/ levels, and cannot read what is addressed to another identity.",
    ]
    for name in dispatchers:
        lines += [
            "",
            f"# The dispatcher dispatcher/{name}, {where} (the lines above apply to it too).",
            f"user dispatcher/{name}",
            "# It reads everything identities send: statuses, commands, workers' reports,",
            f"topic read {root}/{scope}/from/#",
            "# writes to any identity: replies, workers' offers and orders,",
            f"topic write {root}/{scope}/to/#",
            "# publishes the campaign's events",
            f"topic write {root}/{scope}/event/#",
            "# and its retained state.",
            f"topic write {root}/{scope}/state/#",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The broker's side of mutual TLS: the CA that signs client certificates, and the broker's own pair."""

    ca: Path
    cert: Path
    key: Path


def conf_text(outdir: Path, *, port: int, bind: str, tls: TlsFiles | None = None) -> str:
    """``mosquitto.conf`` for a deployment in ``outdir`` (absolute), usable as ``mosquitto -c`` as it stands."""
    lines = [
        "# mosquitto 2.0 configuration of the dialer bus, written by `dialer broker-config`",
        "# (see docs/deploy/README.md). Start with:",
        f"#   mosquitto -c {outdir / CONF}",
        "",
        "# One set of security settings for every listener (the default, stated so nobody flips it by accident).",
        "per_listener_settings false",
        "",
    ]
    if tls is None:
        lines += [
            "# Plain MQTT: put it on a trusted network, or use --tls-ca/--tls-cert/--tls-key for mutual TLS.",
            f"listener {port} {bind}",
        ]
    else:
        lines += [
            "# Mutual TLS: a client must show a certificate signed by cafile, and its CN (like worker/w1) is its",
            "# identity; MQTT user names and passwords are ignored on this listener.",
            f"listener {port} {bind}",
            f"cafile {tls.ca}",
            f"certfile {tls.cert}",
            f"keyfile {tls.key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
    lines += ["", "# Nobody without an identity gets in.", "allow_anonymous false"]
    if tls is None:
        lines.append(f"password_file {outdir / PASSWD}")
    lines += [
        "# What each identity may read and write (see the comments in the file).",
        f"acl_file {outdir / ACL}",
        "# The client id is forced to the identity, so no client can take over another identity's session.",
        "use_username_as_clientid true",
        "",
        "# Small messages go out at once (no Nagle delay): offers and bridge orders travel inside the 2 seconds.",
        "set_tcp_nodelay true",
        "# A dispatcher behind for a moment gets its QoS 1 messages queued, not dropped (the default is 1000).",
        "max_queued_messages 100000",
        "",
        "# Queued QoS 1 messages, sessions and the retained state and statuses survive a broker restart.",
        "persistence true",
        f"persistence_location {outdir / 'data'}",
        "",
        "log_dest stderr",
    ]
    return "\n".join(lines) + "\n"


def env_var(identity: str) -> str:
    """The environment variable holding ``identity``'s password: ``worker/w1`` -> ``DIALER_PW_WORKER_W1``."""
    return "DIALER_PW_" + re.sub(r"[^A-Z0-9]", "_", identity.upper())


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything ``broker-config`` will write, checked: the files' texts and the identities' names."""

    outdir: Path
    identities: tuple[str, ...]
    conf: str
    acl: str
    tls: TlsFiles | None

    @property
    def files(self) -> tuple[str, ...]:
        return (CONF, ACL) if self.tls is not None else (CONF, ACL, PASSWD, CREDENTIALS)


def _check_path(path: str, what: str) -> Path:
    if _CONTROL.search(path):
        raise ConfigError(what, f"{path!r} contains a control character, which mosquitto.conf cannot hold")
    return Path(path).absolute()


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    given = {"--tls-ca": args.tls_ca, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise ConfigError(missing[0], "--tls-ca, --tls-cert and --tls-key go together (mutual TLS needs all three)")
    paths = {flag: _check_path(value, flag) for flag, value in given.items()}
    for flag, path in paths.items():
        if not path.is_file():
            raise ConfigError(flag, f"{path}: no such file")
    return TlsFiles(paths["--tls-ca"], paths["--tls-cert"], paths["--tls-key"])


def plan(args: argparse.Namespace) -> Deployment:
    """Check every argument and build the files' texts; raises :class:`ConfigError` on the first bad one."""
    root = check_root(args.root)
    campaign = None if args.campaign is None else check_name(args.campaign, "--campaign")
    tls = _tls(args)
    identities: list[str] = []
    for role in ROLES:
        for name in getattr(args, role) or ():
            check_name(name, f"--{role}")
            if tls is None and ":" in name:
                # mosquitto_passwd refuses it: the password file is "user:hash", split at the first ':'.
                raise ConfigError(f"--{role}", f"{name!r}: a password file cannot hold ':' in a user name")
            identity = f"{role}/{name}"
            if identity in identities:
                raise ConfigError(f"--{role}", f"{identity} is given twice")
            identities.append(identity)
    if tls is None:
        by_var: dict[str, str] = {}
        for identity in identities:
            other = by_var.setdefault(env_var(identity), identity)
            if other != identity:
                raise ConfigError(
                    "--" + identity.split("/")[0], f"{other} and {identity} would share {env_var(identity)}"
                )
    port = args.port
    if port is None:
        port = 1883 if tls is None else 8883
    if not 0 < port < 65536:
        raise ConfigError("--port", f"{port} is not a TCP port (1-65535)")
    if not args.bind or any(c.isspace() for c in args.bind) or _CONTROL.search(args.bind):
        raise ConfigError("--bind", f"{args.bind!r} is not an address")
    outdir = _check_path(args.outdir, "OUTDIR")
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError("OUTDIR", f"{outdir} exists and is not a directory")
    return Deployment(
        outdir=outdir,
        identities=tuple(identities),
        conf=conf_text(outdir, port=port, bind=args.bind, tls=tls),
        acl=acl_text(root, args.dispatcher, campaign),
        tls=tls,
    )


def _hash(identities: dict[str, str]) -> str:
    """The password file for ``identities`` (identity -> password), hashed by the real ``mosquitto_passwd``.

    ``-U`` rewrites a file of ``user:password`` lines in place; the plain passwords sit only in a private
    temporary directory, never on a command line.
    """
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        raise ConfigError("mosquitto_passwd", "not found on PATH (Debian: apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="dialer-passwd-") as tmp:
        path = Path(tmp) / PASSWD
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{identity}:{pw}\n" for identity, pw in identities.items())
        proc = subprocess.run([exe, "-U", str(path)], capture_output=True, text=True, check=False)
        hashed = path.read_text()
    if proc.returncode != 0 or any(pw in hashed for pw in identities.values()):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ConfigError("mosquitto_passwd", detail[0] if detail else f"failed with status {proc.returncode}")
    return hashed


def _credentials(passwords: dict[str, str]) -> str:
    lines = [
        "# Passwords of the dialer bus identities, written by `dialer broker-config`. Secret: keep it mode 0600",
        "# and give each process only its own line, e.g. a systemd EnvironmentFile, then",
        "#   dialer worker --worker-id w1 --password-env DIALER_PW_WORKER_W1",
    ]
    for identity, pw in passwords.items():
        lines += [f"# {identity}", f"{env_var(identity)}={pw}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """Who a mosquitto started as root runs as: user and group :data:`BROKER_USER`, ``None`` where missing.

    ``uid`` and ``user_gid`` (its primary group) are the user's, ``gid`` the group's, and ``gids`` every group
    the user is in (what its file permissions are checked against)."""

    uid: int | None
    user_gid: int | None
    gid: int | None
    gids: frozenset[int]

    @classmethod
    def lookup(cls, name: str = BROKER_USER) -> BrokerAccount:
        try:
            user: pwd.struct_passwd | None = pwd.getpwnam(name)
        except KeyError:
            user = None
        try:
            gid: int | None = grp.getgrnam(name).gr_gid
        except KeyError:
            gid = None
        gids: set[int] = set()
        if user is not None:
            gids = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(
            uid=None if user is None else user.pw_uid,
            user_gid=None if user is None else user.pw_gid,
            gid=gid,
            gids=frozenset(gids),
        )


def _may_give_group(gid: int) -> bool:
    """Whether this process may give a file it owns to group ``gid``: root, or a member of it."""
    return os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups()


def write(deployment: Deployment, *, force: bool, account: BrokerAccount | None = None) -> None:
    """Write the deployment's files, each complete or not at all (written aside, then renamed into place).

    With group ``mosquitto`` in ``account`` (default: looked up) and the right to give files to it, ``passwd``
    and ``acl`` are written as that group, mode 0640 (otherwise 0600 and 0644, and :func:`broker_access` says
    what to run); as root, ``data`` is given to user ``mosquitto``. Each time, ``force`` or not.
    """
    account = BrokerAccount.lookup() if account is None else account
    out = deployment.outdir
    existing = [name for name in deployment.files if os.path.lexists(out / name)]
    if existing and not force:
        raise ConfigError("OUTDIR", f"{out / existing[0]} exists; --force overwrites it")
    group = account.gid if account.gid is not None and _may_give_group(account.gid) else None
    shared = 0o644 if group is None else 0o640  # the ACL's mode: no secret in it, but nobody else's business
    secret = 0o600 if group is None else 0o640  # the password file's: hashes, readable by the broker alone
    texts: dict[str, tuple[str, int, int | None]] = {
        CONF: (deployment.conf, 0o644, None),
        ACL: (deployment.acl, shared, group),
    }
    if deployment.tls is None:
        passwords = {identity: secrets.token_urlsafe(24) for identity in deployment.identities}
        texts[PASSWD] = (_hash(passwords), secret, group)
        texts[CREDENTIALS] = (_credentials(passwords), 0o600, None)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    if account.uid is not None and account.user_gid is not None and os.geteuid() == 0:
        os.chown(data, account.uid, account.user_gid)  # mosquitto writes its database there as that user
    staged: dict[str, str] = {}
    try:
        for name, (text, mode, gid) in texts.items():
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
            staged[name] = tmp
            if gid is not None:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        for name, tmp in staged.items():
            os.replace(tmp, out / name)
    finally:
        for tmp in staged.values():
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _may(st: os.stat_result, account: BrokerAccount, bit: int) -> bool:
    """Whether ``account``'s user has permission ``bit`` (4 read, 2 write, 1 search) by ``st``'s mode bits."""
    if st.st_uid == account.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in account.gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _blocked_at(path: Path, account: BrokerAccount) -> Path | None:
    """The first directory on the way to ``path`` that ``account``'s user cannot enter, or ``None``."""
    for parent in reversed(path.parents):
        try:
            if not _may(parent.stat(), account, 1):
                return parent
        except OSError:
            return None  # a path that vanished: not ours to report here
    return None


def broker_access(deployment: Deployment, account: BrokerAccount | None = None) -> list[str]:
    """What still stops a mosquitto started as root (so running as user ``mosquitto``) from using the files
    ``deployment`` wrote: shell commands to run as root, and ``#`` comments for what no command here should fix.
    Empty when nothing does: then ``mosquitto -c OUTDIR/mosquitto.conf`` starts as it stands.

    Without user ``mosquitto`` (mosquitto not installed yet, or another system): the commands to run once it
    exists. Permissions are read from the mode bits (POSIX ACLs are not consulted).
    """
    account = BrokerAccount.lookup() if account is None else account
    out = deployment.outdir
    names = [name for name in (PASSWD, ACL) if name in deployment.files]
    if account.uid is None:
        return [
            f"# no user {BROKER_USER} on this machine; when mosquitto (started as root) will run as {BROKER_USER}:",
            f"chgrp {BROKER_USER} {' '.join(shlex.quote(str(out / n)) for n in names)}",
            f"chmod 0640 {' '.join(shlex.quote(str(out / n)) for n in names)}",
            f"chown {BROKER_USER}: {shlex.quote(str(out / 'data'))}",
        ]
    reads = [out / CONF, *(out / n for n in names)]
    if deployment.tls is not None:
        reads += [deployment.tls.ca, deployment.tls.cert, deployment.tls.key]
    todo: list[str] = []
    blocked: set[Path] = set()
    for path in [*reads, out / "data"]:
        where = _blocked_at(path, account)
        if where is not None and where not in blocked:
            blocked.add(where)
            todo.append(
                f"# user {BROKER_USER} cannot enter {where} (mode {stat.S_IMODE(where.stat().st_mode):04o}) on the "
                f"way to {path}: use a directory it can reach, such as /etc/mosquitto/dialer"
            )
    unreadable = [p for p in reads if _blocked_at(p, account) is None and not _may(p.stat(), account, 4)]
    if unreadable:
        quoted = " ".join(shlex.quote(str(p)) for p in unreadable)
        todo += [f"chgrp {BROKER_USER} {quoted}", f"chmod g+r {quoted}"]
    data = out / "data"
    if _blocked_at(data, account) is None and not (_may(data.stat(), account, 2) and _may(data.stat(), account, 1)):
        todo.append(f"chown {BROKER_USER}: {shlex.quote(str(data))}")
    return todo


def register(sub: Any) -> None:
    p = sub.add_parser(
        "broker-config",
        help="write a mosquitto configuration, ACL and passwords for the bus",
        description="Write OUTDIR/mosquitto.conf, OUTDIR/acl, OUTDIR/passwd (hashed by mosquitto_passwd) and "
        "OUTDIR/credentials.env (mode 0600, one random password per identity, DIALER_PW_<ROLE>_<NAME>) for a "
        "mosquitto 2.0 broker of the dialer bus. Each identity is <role>/<name>: its MQTT user name and client id. "
        "With --tls-ca/--tls-cert/--tls-key the broker requires client certificates whose CN is the identity, and "
        "no passwords are written. passwd and acl are group mosquitto, mode 0640, and OUTDIR/data belongs to user "
        "mosquitto (whom mosquitto started as root runs as), or the commands to do it are printed. Every name is "
        "checked before anything is written; existing files are kept unless --force.",
    )
    p.add_argument("outdir", metavar="OUTDIR", help="directory for the files (created if missing)")
    p.add_argument("--dispatcher", action="append", required=True, metavar="NAME", help="a dispatcher (repeat)")
    p.add_argument("--worker", action="append", default=[], metavar="NAME", help="a dial worker (repeat)")
    p.add_argument("--backend", action="append", default=[], metavar="NAME", help="a CRM/agent backend (repeat)")
    p.add_argument("--monitor", action="append", default=[], metavar="NAME", help="a read-only monitor (repeat)")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"topic root (default {DEFAULT_ROOT})")
    p.add_argument("--campaign", help="limit the dispatchers to this campaign (default: any campaign)")
    p.add_argument("--port", type=int, metavar="PORT", help="listener port (default 1883, with TLS 8883)")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS", help="listener address (default 127.0.0.1)")
    p.add_argument("--tls-ca", metavar="FILE", help="CA that signs the clients' certificates (mutual TLS)")
    p.add_argument("--tls-cert", metavar="FILE", help="the broker's certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the broker's private key")
    p.add_argument("--force", action="store_true", help="overwrite the files if they exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    deployment = plan(args)
    write(deployment, force=args.force)
    out = deployment.outdir
    print(f"wrote {', '.join(str(out / name) for name in deployment.files)}")
    print(f"identities: {' '.join(deployment.identities)}")
    if deployment.tls is None:
        print(f"passwords: {out / CREDENTIALS} (mode 0600; give each process only its own variable)")
    else:
        print("identities are the CNs of client certificates signed by the --tls-ca (CN=worker/w1, ...)")
    todo = broker_access(deployment)
    if todo:
        print(f"first, as root (mosquitto started as root runs as user {BROKER_USER}):")
        print("\n".join(f"  {line}" for line in todo))
        print(f"then start: mosquitto -c {out / CONF}")
    else:
        print(f"start: mosquitto -c {out / CONF}")
    return 0
