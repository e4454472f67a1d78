"""A real, throw-away PostgreSQL server for the test session.

Started on first use from the server binaries on this machine (Debian's
``/usr/lib/postgresql/<version>/bin``) in a temporary directory, listening on a free
loopback port with password authentication (so URLs carry a password, as deployments'
do), and removed when the session ends (``tests/conftest.py``). PostgreSQL refuses to
run as root, so under root the cluster belongs to the ``postgres`` system user (the
server package creates it) or, failing that, to a ``chatbrush-test`` user made for it.

Each test gets a database of its own, copied from a migrated template (milliseconds).
Under pytest-xdist every worker process starts a server of its own: starting one takes
1.6-2.6 s on two busy cores, paid by the workers side by side, so one server shared through
a file lock would save no time, and a test that kills or stalls its server's clients
cannot reach another worker's tests.
Without the server binaries the PostgreSQL tests are skipped — unless
``CHATBRUSH_REQUIRE_POSTGRES=1`` (CI sets it), which makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from storage.postgres import migrate

#: read once at import: the test fixtures clear CHATBRUSH_* variables from the environment
REQUIRED = os.environ.get("CHATBRUSH_REQUIRE_POSTGRES") == "1"
SUPERUSER = "chatbrush"
TEMPLATE = "chatbrush_template"


def server_binaries() -> Path | None:
    """The newest installed server's ``bin`` directory (``initdb``, ``pg_ctl``)."""
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parents[1].name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_owner() -> str | None:
    """The user the server runs as: ``None`` for ourselves when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "chatbrush-test"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "chatbrush-test"], check=True, capture_output=True)
    return "chatbrush-test"


class PostgresServer:
    """One cluster: :meth:`start`, then :meth:`fresh_database` per test, :meth:`stop`."""

    def __init__(self, binaries: Path, *, durable: bool = False,
                 settings: Sequence[str] = ()) -> None:
        """``durable``: PostgreSQL's own defaults (fsync and synchronous commits), for
        benchmarks; tests trade them for speed. ``settings``: more ``name=value``."""
        self.durable = durable
        self.settings = list(settings)
        self.binaries = binaries
        self.owner = _cluster_owner()
        self.root = Path(tempfile.mkdtemp(prefix="chatbrush-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self._names = itertools.count(1)
        self._lent: set[str] = set()
        self._spare: list[str] = []
        self._started = False
        self._options = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=120)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()}\n{tail}")
        return result

    def start(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            for path in (self.root, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
                  "--locale=C", "--no-sync", "--auth-local=trust",
                  "--auth-host=scram-sha-256", f"--pwfile={password_file}")
        password_file.unlink()
        self.port = _free_port()
        options = [
            "-c listen_addresses=127.0.0.1", f"-p {self.port}",
            f"-c unix_socket_directories={self.root}", "-c max_connections=300",
        ]
        if not self.durable:  # a test cluster: speed over durability
            options += ["-c fsync=off", "-c synchronous_commit=off",
                        "-c full_page_writes=off"]
        options += [f"-c {setting}" for setting in self.settings]
        self._options = " ".join(options)
        self.resume()
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        # the template carries the current schema (on a thread of its own: this may be
        # called from inside a test's event loop)
        with ThreadPoolExecutor(max_workers=1) as thread:
            thread.submit(asyncio.run, migrate(self.url(TEMPLATE))).result()

    def resume(self) -> None:
        """Start the (initialised) server, and return once it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", self._options, "-w", "-t", "60", "start")
        self._started = True

    def pause(self) -> None:
        """Stop the server as a restart does (``-m fast``: sessions are ended, and what
        was committed stays); :meth:`resume` starts it again on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def fresh_database(self, *, migrated: bool = True) -> str:
        """The URL of an empty database of its own (with the current schema unless told
        not): one a finished test gave back and that was emptied, or a new one (creating
        a database takes a third of a second; emptying one, a twentieth)."""
        if migrated and self._spare:
            return self.url(self._spare.pop())
        name = f"test_{os.getpid()}_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        if migrated:
            self._lent.add(name)
        return self.url(name)

    def give_back(self, url: str) -> None:
        """A test is done with its database: empty it for the next one. One that cannot be
        emptied at once (something still holds it) is left alone."""
        name = url.rsplit("/", 1)[-1]
        if name not in self._lent:
            return
        self._lent.discard(name)
        try:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("SET lock_timeout = '2s'")
                tables = [row[0] for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'chatbrush_migrations'")]
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        except psycopg.Error:
            return
        self._lent.add(name)
        self._spare.append(name)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """The session's server, started on first use; skips (or fails, when required) if
    this machine has no PostgreSQL server installed."""
    global _shared
    if _shared is None:
        binaries = server_binaries()
        if binaries is None:
            message = ("PostgreSQL server binaries (initdb) are not installed; "
                       "apt-get install postgresql")
            if REQUIRED:
                pytest.fail(message + " (CHATBRUSH_REQUIRE_POSTGRES=1)")
            pytest.skip(message)
        server = PostgresServer(binaries)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _shared = server
    return _shared


def stop_shared_server() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
