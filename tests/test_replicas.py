"""Read replicas: reads go to a real streaming standby, writes to the primary, and a store
never shows a user the data from before their own write (read-your-writes), whatever the
replica's lag; a stopped replica costs nothing but the trip to the primary.

Runs on a primary and a hot standby of its own (``tests/pgcluster.py``: ``pg_basebackup
-R`` on another port), never the shared server. Lag is made with the standby's
``recovery_min_apply_delay``; routing is read off each engine's own statements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

import convostore.store
from convostore import AsyncStore, Store
from convostore.config import Settings
from convostore.db import make_engine
from convostore.errors import ConfigurationError
from convostore.migrate import upgrade
from convostore.server import create_app
from convostore.store import _lsn, _WriteMarks
from tests.conftest import MaybeAsync
from tests.pgcluster import Cluster, own_cluster, own_replica

pytestmark = pytest.mark.postgres

PATIENCE_S = 30.0
MSG = {"role": "user", "content": "hello"}


@dataclass
class Pair:
    primary: Cluster
    replica: Cluster
    admin: Engine = field(init=False)  # autocommit, on the replica
    writer: Engine = field(init=False)  # autocommit, on the primary

    def __post_init__(self) -> None:
        self.admin = make_engine(self.replica.url, isolation_level="AUTOCOMMIT")
        self.writer = make_engine(self.primary.url, isolation_level="AUTOCOMMIT")

    def scalar(self, engine: Engine, sql: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def set_delay(self, delay: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"))
            conn.execute(text("SELECT pg_reload_conf()"))
        deadline = time.monotonic() + PATIENCE_S
        while self.scalar(self.admin, "SHOW recovery_min_apply_delay") != delay:
            assert time.monotonic() < deadline, "the replica did not reload its settings"
            time.sleep(0.01)

    def caught_up(self) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        target = self.scalar(self.writer, "SELECT CAST(pg_current_wal_insert_lsn() AS text)")
        deadline = time.monotonic() + PATIENCE_S
        while True:
            replayed = self.scalar(self.admin, "SELECT CAST(pg_last_wal_replay_lsn() AS text)")
            if replayed is not None and _lsn(replayed) >= _lsn(target):  # type: ignore[operator]
                return
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with own_cluster() as primary:
        engine = make_engine(primary.url)
        upgrade(engine)
        engine.dispose()
        with own_replica(primary) as replica:
            running = Pair(primary, replica)
            try:
                yield running
            finally:
                running.admin.dispose()
                running.writer.dispose()


@pytest.fixture
def cluster(pair: Pair) -> Iterator[Pair]:
    """Empty tables, no lag, replica caught up, before and after each test."""
    with pair.writer.connect() as conn:
        conn.execute(
            text("TRUNCATE convostore_users, conversations, messages RESTART IDENTITY CASCADE")
        )
    pair.set_delay("0")
    pair.caught_up()
    yield pair
    pair.set_delay("0")


class Statements:
    """The SQL one engine sent, in order (``before_cursor_execute``)."""

    def __init__(self, engine: Engine | AsyncEngine) -> None:
        self.sql: list[str] = []
        sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(sync, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)

    def reads(self, table: str) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith("SELECT") and table in s]

    def writes(self) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]

    def clear(self) -> None:
        self.sql.clear()


@asynccontextmanager
async def opened(kind: str, pair: Pair, **kwargs: Any) -> AsyncIterator[MaybeAsync]:
    kwargs.setdefault("read_urls", [pair.replica.url])
    if kind == "sync":
        with Store(pair.primary.url, **kwargs) as store:
            yield MaybeAsync(store)
    else:
        async with AsyncStore(pair.primary.url, **kwargs) as astore:
            yield MaybeAsync(astore)


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
async def test_reads_go_to_the_replica_and_writes_to_the_primary(kind: str, cluster: Pair) -> None:
    async with opened(kind, cluster) as store:
        on_primary = Statements(store.engine)
        on_replica = Statements(store.read_engines[0])
        conv = await store.create_conversation("alice", title="trip")
        await store.append_messages("alice", conv.id, [MSG, {**MSG, "role": "assistant"}])
        assert on_primary.writes() and not on_replica.writes()
        # The write marks are statements like any other: visible to engine events.
        assert sum("pg_current_wal_insert_lsn" in s for s in on_primary.sql) == 2

        cluster.caught_up()
        on_primary.clear()
        assert (await store.get_conversation("alice", conv.id)).title == "trip"
        assert [c.id for c in (await store.list_conversations("alice")).data] == [conv.id]
        assert len((await store.list_messages("alice", conv.id)).data) == 2
        assert len(await store.get_messages("alice", conv.id)) == 2
        assert len(await store.last_messages("alice", conv.id, 1)) == 1
        assert len(await store.get_history("alice", conv.id, max_tokens=100)) == 2
        assert on_primary.sql == []  # every read was answered by the replica
        assert len(on_replica.reads("messages")) >= 4
        assert len(on_replica.reads("conversations")) >= 2

        # The replica really answers: with its replay paused, a write made elsewhere
        # (a store without this one's write marks) is not visible to this store's reads.
        assert cluster.scalar(cluster.admin, "SELECT pg_is_in_recovery()") is True
        cluster.scalar(cluster.admin, "SELECT pg_wal_replay_pause()")
        try:
            with Store(cluster.primary.url) as elsewhere:
                elsewhere.create_conversation("bob")
            assert (await store.list_conversations("bob")).data == []
        finally:
            cluster.scalar(cluster.admin, "SELECT pg_wal_replay_resume()")


@KINDS
async def test_a_read_after_a_write_waits_for_the_lagging_replica(kind: str, cluster: Pair) -> None:
    cluster.set_delay("700ms")
    async with opened(kind, cluster, replica_wait_timeout=PATIENCE_S) as store:
        conv = await store.create_conversation("alice")
        on_primary = Statements(store.engine)
        on_replica = Statements(store.read_engines[0])
        await store.append_message("alice", conv.id, MSG)
        started = time.monotonic()
        messages = await store.get_messages("alice", conv.id)
        waited = time.monotonic() - started
        assert [m.content for m in messages] == ["hello"]  # never the data before the write
        assert waited > 0.2  # the replica was behind, and the read waited for it ...
        assert on_replica.reads("messages") and not on_primary.reads("messages")  # ... there
        assert any("pg_last_wal_replay_lsn" in s for s in on_replica.sql)
        # Once it has caught up, the next read needs no wait and no check.
        on_replica.clear()
        assert len(await store.get_messages("alice", conv.id)) == 1
        assert not any("pg_last_wal_replay_lsn" in s for s in on_replica.sql)

        # Another store, which did not write, reads the lagging replica without waiting:
        # the lag is real, read-your-writes is what hid it.
        await store.append_message("alice", conv.id, {**MSG, "content": "again"})
        with Store(cluster.primary.url, read_urls=[cluster.replica.url]) as reader:
            assert len(reader.get_messages("alice", conv.id)) == 1
        assert len(await store.get_messages("alice", conv.id)) == 2


@KINDS
async def test_a_replica_too_far_behind_sends_the_read_to_the_primary(
    kind: str, cluster: Pair
) -> None:
    cluster.set_delay("1h")
    async with opened(kind, cluster, replica_wait_timeout=0.1) as store:
        conv = await store.create_conversation("alice")
        await store.append_message("alice", conv.id, MSG)
        on_primary = Statements(store.engine)
        on_replica = Statements(store.read_engines[0])
        started = time.monotonic()
        assert len(await store.get_messages("alice", conv.id)) == 1
        assert time.monotonic() - started < 5
        assert on_primary.reads("messages") and not on_replica.reads("messages")
        # A user who wrote nothing through this store still reads the replica.
        assert (await store.list_conversations("bob")).data == []
        assert on_replica.reads("conversations")


@KINDS
async def test_a_stopped_replica_never_fails_a_read(
    kind: str, cluster: Pair, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The back-off runs on the runner's clock: the test moves it instead of waiting.
    ahead = [0.0]
    async with opened(kind, cluster) as store:
        monkeypatch.setattr(store._runner, "_monotonic", lambda: time.monotonic() + ahead[0])
        conv = await store.create_conversation("alice")
        await store.append_message("alice", conv.id, MSG)
        cluster.caught_up()
        assert len(await store.get_messages("alice", conv.id)) == 1  # pools a replica conn
        replica = store.read_engines[0]
        attempts: list[int] = []
        sync = replica.sync_engine if isinstance(replica, AsyncEngine) else replica
        event.listen(sync, "do_connect", lambda *_: attempts.append(1))
        cluster.replica.stop()
        try:
            with caplog.at_level(logging.WARNING, logger="convostore"):
                assert len(await store.get_messages("alice", conv.id)) == 1
                assert len((await store.list_conversations("alice")).data) == 1
                await store.append_message("alice", conv.id, {**MSG, "content": "more"})
                assert len(await store.get_history("alice", conv.id, max_tokens=100)) == 2
            assert "read replica unavailable" in caplog.text
            assert len(attempts) == 1  # then skipped while backing off, not retried per read
            ahead[0] += convostore.store.REPLICA_RETRY_SECONDS  # the back-off is over
            assert len(await store.last_messages("alice", conv.id, 5)) == 2
            assert len(attempts) == 2  # tried again after the back-off, still down
        finally:
            cluster.replica.start()
        cluster.caught_up()
        ahead[0] += convostore.store.REPLICA_RETRY_SECONDS
        on_replica = Statements(replica)
        assert len(await store.get_messages("alice", conv.id)) == 2
        assert on_replica.reads("messages")  # back on the replica


def test_the_service_reads_from_the_replicas_in_its_settings(cluster: Pair) -> None:
    secret = "replica-secret-" + "0" * 40
    settings = Settings(
        database_url=cluster.primary.url,
        database_read_urls=[cluster.replica.url],
        jwt_secret_key=secret,
    )
    app = create_app(settings)
    from convostore.server.auth import create_access_token

    headers = {"Authorization": f"Bearer {create_access_token('alice', secret=secret)}"}
    with TestClient(app) as client:
        store = app.state.store
        assert [str(e.url.port) for e in store.read_engines] == [str(cluster.replica.port)]
        on_replica = Statements(store.read_engines[0])
        created = client.post("/v1/conversations", json={"title": "x"}, headers=headers)
        assert created.status_code == 201
        listed = client.get("/v1/conversations", headers=headers)
        assert [c["id"] for c in listed.json()["data"]] == [created.json()["id"]]
        assert on_replica.reads("conversations")


def test_write_marks_remember_each_users_latest_write() -> None:
    marks = _WriteMarks(size=2)
    assert marks.needed("alice") == 0
    marks.wrote("alice", 10)
    marks.wrote("alice", 5)  # positions only grow
    marks.wrote("bob", convostore.store._UNKNOWN)
    assert (marks.needed("alice"), marks.needed("bob")) == (10, convostore.store._UNKNOWN)
    marks.wrote("bob", 12)  # a later write's position bounds the unknown one
    assert marks.needed("bob") == 12
    marks.wrote("carol", 20)  # alice is forgotten: everyone unknown now needs >= 10
    assert marks.needed("alice") == marks.needed("dave") == 10
    assert _lsn("16/B374D848") == (0x16 << 32) | 0xB374D848 and _lsn(None) is None


def test_replicas_need_a_postgresql_primary(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_READ_URL"):
        Store(f"sqlite:///{tmp_path / 'x.db'}", read_urls=["postgresql://u@h/db"])
    with pytest.raises(ConfigurationError, match="DATABASE_READ_URL"):
        Store("postgresql://u@127.0.0.1:1/db", read_urls=["sqlite:///x.db"])


def test_read_urls_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://r1/db, postgresql://r2/db")
    assert Settings().database_read_urls == ["postgresql://r1/db", "postgresql://r2/db"]
    monkeypatch.setenv("DATABASE_READ_URL", "")
    assert Settings().database_read_urls == []
