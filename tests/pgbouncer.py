"""A PgBouncer of the tests' own, in transaction mode, in front of a PostgreSQL server.

:func:`running_pgbouncer` writes an ini and a userlist into a temporary directory, starts
``pgbouncer`` on a free port (as ``postgres`` when we are root: PgBouncer refuses to run
as root), waits until it accepts connections, and stops it on exit. Every database name
is forwarded to the server (``* = host=... port=...``), with ``auth_type = trust``. The
pool is deliberately small, so that concurrent clients share server connections the way
they do behind Neon's pooler. Installed by ``scripts/ensure-pgbouncer.sh``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.realserver import free_port

STARTUP_TIMEOUT_S = 15.0
#: Server connections per (database, user): fewer than the concurrency tests' clients.
POOL_SIZE = 4


def _binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer",) if os.access(p, os.X_OK)), None
    )


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def running_pgbouncer(
    host: str, port: int, user: str, *, pool_mode: str = "transaction"
) -> Iterator[int]:
    """Run PgBouncer in front of ``host:port`` and yield its port."""
    binary = _binary()
    if binary is None:
        _unavailable("PgBouncer is required but not installed; run scripts/ensure-pgbouncer.sh")
    assert binary is not None
    workdir = Path(tempfile.mkdtemp(prefix="convostore-pgbouncer-"))
    listen = free_port()
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = {pool_mode}
default_pool_size = {POOL_SIZE}
max_client_conn = 1000
logfile = {workdir}/pgbouncer.log
log_connections = 0
log_disconnections = 0
admin_users = {user}
"""
    )
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        for child in workdir.iterdir():
            os.chown(child, owner.pw_uid, owner.pw_gid)
        command = [binary, "-u", "postgres", str(workdir / "pgbouncer.ini")]
    # Its console output goes to a file: a pipe nobody reads fills up and blocks PgBouncer.
    console = (workdir / "console.log").open("wb")
    process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                output = (workdir / "console.log").read_text(errors="replace")
                log = workdir / "pgbouncer.log"
                raise RuntimeError(
                    f"pgbouncer exited with {process.returncode}:\n{output}"
                    + (log.read_text() if log.exists() else "")
                )
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not accept connections") from None
                time.sleep(0.05)
        yield listen
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        console.close()
        shutil.rmtree(workdir, ignore_errors=True)
