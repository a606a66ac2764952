"""A real PostgreSQL server for tests and benchmarks, on a free loopback port in a throwaway data folder.

Debian's PostgreSQL refuses to run as root, so when the tests run as root the server (and initdb) run as
the `postgres` user, in a folder under /tmp that user owns (pytest's tmp_path is root-only). The postmaster
is our direct child in its own process group, so the tests can stop it, kill it (the whole group: a
SIGKILLed postmaster leaves backends that would block a restart), freeze it (SIGSTOP) and start it again on
the same port: URLs held by the code under test stay valid across the outage.

The cluster has one password-protected role and database, both `corevad`, so the tests exercise the
password path operators use (`store.url` plus a password from env or a file).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from .services import LOOPBACK, ServiceError, _Process, port_open

ROLE = "corevad"
PASSWORD = "corevad-test-password"  # a test cluster on loopback only; not a secret


def _bindir() -> Path:
    """Debian keeps the server binaries under /usr/lib/postgresql/<major>/bin (the newest major wins)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise ServiceError("PostgreSQL server not found: install the Debian package postgresql (tools/setup.sh --dev does)")


def _children(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc (Linux)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text.rsplit(")", 1)[-1].split()  # after "(comm)", which may hold spaces
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(Path(stat).parent.name))
    return out


class PostgresServer(_Process):
    """`postgres -D DIR -p PORT` on loopback with a `corevad` role and database; .url is its DSN without the
    password (give .password separately, as operators do)."""

    name = "postgres"

    def __init__(self, workdir: Path, *, host: str = LOOPBACK, port: int | None = None) -> None:
        super().__init__(workdir, host, port)
        self.bindir = _bindir()
        self._as_postgres = os.geteuid() == 0
        # The data folder must be owned by the server's user and reachable by it: not under root's tmp_path.
        self.datadir = Path(tempfile.mkdtemp(prefix="corevad-pg-"))
        self.password = PASSWORD
        self._created = False
        self._initdb()

    # -- running as the postgres user when we are root
    def _ids(self) -> tuple[int | None, int | None, list[int] | None]:
        """(user, group, extra_groups) for subprocess: the postgres user under root, unchanged otherwise."""
        if not self._as_postgres:
            return None, None, None
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid, []

    def _initdb(self) -> None:
        pwfile = self.datadir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pgdata = self.datadir / "data"
        uid, gid, groups = self._ids()
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(pgdata), "-U", ROLE, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, cwd=self.datadir, timeout=120, user=uid, group=gid, extra_groups=groups,
        )
        pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")
        self.pgdata = pgdata

    def _command(self) -> list[str]:
        # fsync off: a test cluster; the durability under test is the client's, not the disk's.
        return [str(self.bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port), "-h", self.host,
                "-k", str(self.datadir), "-c", "fsync=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "log_min_messages=warning"]

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        uid, gid, groups = self._ids()
        return subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.datadir,
                                start_new_session=True, user=uid, group=gid, extra_groups=groups)

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)
        if not self._created:  # once: a restart keeps the database
            self._create_database()
            self._created = True

    def _ready(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            import psycopg
        except ImportError:  # pragma: no cover - the postgres extra is part of dev
            return True
        try:
            with psycopg.connect(self.admin_url, password=self.password, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False  # "the database system is starting up"

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, password=self.password, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://{ROLE}@{self.host}:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The DSN of the `corevad` database, without the password."""
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{ROLE}"

    # -- outages: the postmaster and every child, so no orphaned backend holds the shared memory
    def _signal_group(self, sig: int) -> None:
        """The postmaster's group and each of its children: PostgreSQL's backends and workers call setsid(),
        so they are in groups of their own and a signal to the postmaster's group alone leaves them running
        (a "frozen" server whose open connections still answered)."""
        if self.proc is not None and self.proc.poll() is None:
            children = _children(self.proc.pid)
            for pid in children:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for), then SIGKILL after timeout."""
        if not self.running:
            return
        assert self.proc is not None
        self._signal_group(signal.SIGCONT)  # a frozen server cannot shut down
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_port_closed()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        # A killed postmaster's backends die with the group; give the kernel a moment to free the port.
        self._wait_port_closed()

    def freeze(self) -> None:
        """SIGSTOP the server: connections hang instead of failing (the case timeouts must cover)."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def remove(self) -> None:
        """Stop and delete the data folder (the fixture's teardown)."""
        self.kill()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.remove()
