"""Finding or starting the real Redis and Postgres that the tests and the local stack
(``make paper``) run against.

Order, for each: the URL from the environment (REDIS_URL / DATABASE_URL); else the local
server on its standard port; else a throwaway server started from the local binaries in
a temporary directory; else a HarnessError naming what to install. Never a silent skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

__all__ = [
    "HarnessError",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "postgres_binaries",
    "redis_binary",
    "resolve_postgres",
    "resolve_redis",
]

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = ("postgresql://postgres@127.0.0.1:5432/postgres",)


class HarnessError(RuntimeError):
    """No real server can be had; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise HarnessError(f"{what} did not come up within {timeout_s}s")


# --- Redis ---------------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@dataclass
class RedisServer:
    """A redis-server process we own: can be killed and restarted on the same port and data."""

    binary: str
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_until(lambda: redis_answers(self.url), 10, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would; data survives only through the append-only file."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        if self.process and self.process.stderr:
            self.process.stderr.close()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def resolve_redis() -> tuple[str, RedisServer | None]:
    """A Redis URL to test against, and the server we started for it, if any."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not redis_answers(url):
            raise HarnessError(f"REDIS_URL is set but Redis does not answer at {url}")
        return url, None
    if redis_answers(LOCAL_REDIS):
        return LOCAL_REDIS, None
    binary = shutil.which("redis-server")
    if binary:
        server = RedisServer(binary).start()
        return server.url, server
    raise HarnessError(
        "No Redis: set REDIS_URL, run Redis on 127.0.0.1:6379, "
        "or install the redis-server binary (Debian/Ubuntu: apt-get install redis-server)"
    )


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise HarnessError(
            "This test restarts its own Redis and needs the redis-server binary "
            "(Debian/Ubuntu: apt-get install redis-server)"
        )
    return binary


# --- Postgres ------------------------------------------------------------------------


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            connection.execute("select 1")
        return True
    except psycopg.Error:
        return False


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


@dataclass
class PostgresServer:
    """A throwaway cluster from initdb + pg_ctl; as root it runs as an unprivileged user."""

    initdb: str
    pg_ctl: str
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-")))
    user: str | None = None
    _options: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            args, user=self.user, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise HarnessError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.user = _unprivileged_user()
            uid = pwd.getpwnam(self.user).pw_uid
            os.chown(self.directory, uid, -1)
        data = self.directory / "data"
        self._run(self.initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._options = options
        self.resume()
        return self

    def halt(self) -> None:
        """Stop the server, keeping its data, as an outage would; :meth:`resume` ends it."""
        self._run(self.pg_ctl, "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        log = str(self.directory / "postgres.log")
        data = str(self.directory / "data")
        self._run(self.pg_ctl, "-D", data, "-o", self._options, "-l", log, "-w", "start")
        _wait_until(lambda: postgres_answers(self.url), 30, f"postgres on port {self.port}")

    def stop(self) -> None:
        with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
            self._run(self.pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise HarnessError("running as root and no unprivileged user (postgres, nobody) for initdb")


def postgres_binaries() -> tuple[str, str]:
    """initdb and pg_ctl, for a test that stops and starts its own Postgres."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise HarnessError(
            "This test stops and restarts its own Postgres and needs initdb and pg_ctl "
            "(Debian/Ubuntu: apt-get install postgresql)"
        )
    return initdb, pg_ctl


def resolve_postgres() -> tuple[str, PostgresServer | None]:
    """A Postgres URL to test against, and the server we started for it, if any."""
    url = os.environ.get("DATABASE_URL")
    if url:
        url = url.replace("postgresql+psycopg://", "postgresql://")
        if not postgres_answers(url):
            raise HarnessError("DATABASE_URL is set but Postgres does not accept a connection")
        return url, None
    for candidate in LOCAL_POSTGRES:
        if postgres_answers(candidate):
            return candidate, None
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb and pg_ctl:
        server = PostgresServer(initdb, pg_ctl).start()
        return server.url, server
    raise HarnessError(
        "No Postgres: set DATABASE_URL, run Postgres on 127.0.0.1:5432 "
        "(user postgres), or install the server binaries initdb and pg_ctl "
        "(Debian/Ubuntu: apt-get install postgresql)"
    )
