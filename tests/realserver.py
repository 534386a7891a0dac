"""A real ``convostore serve`` process on a free port, for tests that need a socket.

Readiness is polled on ``/readyz`` (waiting for a condition, not a sleep hiding a race).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from convostore.config import uses_pooler

STARTUP_TIMEOUT_S = 60.0
CONVOSTORE = Path(sys.executable).parent / "convostore"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    workdir: Path,
    database_url: str,
    *,
    secret: str,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Serve ``database_url`` (migrated first, unless it goes through a pooler: the test
    databases behind one are migrated already, and migrations need a direct URL) and
    yield the base URL; stopped on exit."""
    port = free_port()
    full_env = {**os.environ, "JWT_SECRET_KEY": secret, **(env or {})}
    full_env.pop("DATABASE_URL", None)
    log_path = workdir / f"server-{port}.log"
    migrate = [] if uses_pooler(database_url) else ["--migrate"]
    command = [str(CONVOSTORE), "serve", *migrate, "--port", str(port)]
    command += ["--log-level", "warning", "--database-url", database_url, *args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=workdir, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited early:\n{log_path.read_text()}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"server did not become ready:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
