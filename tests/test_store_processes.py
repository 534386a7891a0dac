"""SQLite across processes: SQLite's own file locking, not the in-process writer lock.

In-process writers queue on a Python lock (``convostore.db.sqlite_write_lock``), so only
separate processes contend in SQLite's busy handler; these tests use real processes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from convostore import Store
from convostore.server.auth import create_access_token
from tests.realserver import running_server

SECRET = "processes-secret-" + "9" * 48
WRITERS = 3
BATCHES = 60

WRITER = """
import sys, time
from pathlib import Path
from convostore import Store

url, tag, go, batches, *cids = sys.argv[1:]
deadline = time.monotonic() + 60
while not Path(go).exists():  # start together: wait for the go file, do not sleep blindly
    if time.monotonic() > deadline:
        sys.exit("no go file")
    time.sleep(0.01)
with Store(url) as store:
    for i in range(int(batches)):
        cid = int(cids[i % len(cids)])
        store.append_messages(
            "alice", cid,
            [{"role": "user", "content": f"{tag} {i} q"},
             {"role": "assistant", "content": f"{tag} {i} a"}],
        )
"""


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "shared.db"
    target.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{target}"


def test_writers_in_separate_processes_lose_nothing(sqlite_url: str, tmp_path: Path) -> None:
    with Store(sqlite_url) as store:
        cids = [store.create_conversation("alice").id for _ in range(2)]
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                sqlite_url,
                f"w{k}",
                str(go),
                str(BATCHES),
                *map(str, cids),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(WRITERS)
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    with Store(sqlite_url) as store:
        total = 0
        for cid in cids:
            messages = store.get_messages("alice", cid)
            total += len(messages)
            assert [m.position for m in messages] == list(range(1, len(messages) + 1))
            assert store.get_conversation("alice", cid).message_count == len(messages)
            # Each batch is whole and in order: its answer right after its question.
            for q, a in zip(messages[::2], messages[1::2], strict=True):
                assert q.content.removesuffix(" q") == a.content.removesuffix(" a")
            # Each writer's batches keep their order.
            for k in range(WRITERS):
                mine = [
                    int(m.content.split()[1])
                    for m in messages[::2]
                    if m.content.startswith(f"w{k} ")
                ]
                assert mine == sorted(mine)
        assert total == WRITERS * BATCHES * 2


def test_a_lock_held_past_the_busy_timeout_answers_503_json(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    with Store(sqlite_url) as store:
        cid = store.create_conversation("alice", title="t").id
    headers = {"Authorization": f"Bearer {create_access_token('alice', secret=SECRET)}"}
    url = f"/v1/conversations/{cid}/messages"
    body = {"role": "user", "content": "hello"}
    with running_server(tmp_path, f"{sqlite_url}?timeout=0.3", secret=SECRET) as base:
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer
        try:
            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            locked = httpx.post(base + url, json=body, headers=headers, timeout=30)
            waited = time.monotonic() - started
            assert locked.status_code == 503, locked.text
            assert locked.headers["content-type"] == "application/json"
            assert locked.json()["error"]["code"] == "unavailable"
            assert waited >= 0.3  # it waited for the lock before giving up
            # Readers are not blocked by a writer (WAL).
            read = httpx.get(base + url, headers=headers, timeout=30)
            assert read.status_code == 200 and read.json()["data"] == []
        finally:
            other.rollback() if other.in_transaction else None
            other.close()
        ok = httpx.post(base + url, json=body, headers=headers, timeout=30)
        assert ok.status_code == 201, ok.text
        assert ok.json()["position"] == 1  # the refused attempt left nothing behind
