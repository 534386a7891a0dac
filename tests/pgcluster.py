"""A PostgreSQL cluster of a test's own, for tests that restart, stop or kill the server.

The shared server on 5432 is never touched: :func:`own_cluster` creates a throw-away
cluster with Debian's ``pg_createcluster`` on a free port (trust auth on 127.0.0.1),
starts it, and drops it afterwards. Needs the PostgreSQL server packages (installed by
``scripts/ensure-postgres.sh``) and root or sudo, as that script does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.realserver import free_port

_SUDO = [] if os.geteuid() == 0 else ["sudo", "-n"]
_AS_POSTGRES = (
    ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else ["sudo", "-n", "-u", "postgres"]
)


def _run(*command: str, prefix: list[str] = _SUDO) -> None:
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def _version() -> str | None:
    root = Path("/usr/lib/postgresql")
    if shutil.which("pg_createcluster") is None or not root.is_dir():
        return None
    versions = sorted((p.name for p in root.iterdir() if p.name.isdigit()), key=int)
    return versions[-1] if versions else None


@dataclass
class Cluster:
    """A running cluster: its URL, and the operations the fault tests inflict on it."""

    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, action: str, *options: str) -> None:
        _run(
            "pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *options
        )

    def restart(self) -> None:
        """A fast restart: sessions are terminated, the server is back when this returns."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """A fast shutdown: sessions are terminated, the port refuses connections."""
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        self._ctl("start")

    def crash_and_start(self) -> None:
        """``stop -m immediate`` (no checkpoint: crash recovery on start), then start."""
        self._ctl("stop", "-m", "immediate")
        self._ctl("start")


def _require_version() -> str:
    version = _version()
    if version is None or (_SUDO and shutil.which("sudo") is None):
        message = "a cluster of the test's own needs pg_createcluster (and root or sudo)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert version is not None
    return version


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """Create, start, yield and finally drop a cluster of this test's own."""
    version = _require_version()
    cluster = Cluster(version, f"convostore_{uuid.uuid4().hex[:8]}", free_port())
    _run(
        "pg_createcluster", "--start", "--start-conf", "manual", "-p", str(cluster.port),
        version, cluster.name, "--", "--auth-host=trust", "--auth-local=trust",
    )  # fmt: skip
    try:
        yield cluster
    finally:
        _run("pg_dropcluster", "--stop", version, cluster.name)


@contextmanager
def own_replica(primary: Cluster) -> Iterator[Cluster]:
    """A hot standby of ``primary`` streaming from it: a new cluster whose data directory
    is replaced by ``pg_basebackup -R`` (which writes ``primary_conninfo`` and
    ``standby.signal``), started on a port of its own; dropped on exit. PostgreSQL's
    defaults (``wal_level = replica``, ``max_wal_senders = 10``) and the trust rule for
    replication connections from 127.0.0.1 are all the primary needs."""
    version = primary.version
    replica = Cluster(version, f"convostore_{uuid.uuid4().hex[:8]}", free_port())
    _run(
        "pg_createcluster", "--start-conf", "manual", "-p", str(replica.port),
        version, replica.name, "--", "--auth-host=trust", "--auth-local=trust",
    )  # fmt: skip
    try:
        data = f"/var/lib/postgresql/{version}/{replica.name}"
        _run("find", data, "-mindepth", "1", "-delete")  # pg_basebackup wants it empty
        _run(
            f"/usr/lib/postgresql/{version}/bin/pg_basebackup", "-h", "127.0.0.1",
            "-p", str(primary.port), "-U", "postgres", "-D", data, "-R", "-X", "stream",
            "-c", "fast", prefix=_AS_POSTGRES,
        )  # fmt: skip
        replica.start()
        yield replica
    finally:
        _run("pg_dropcluster", "--stop", version, replica.name)
