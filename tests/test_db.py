"""Engine set-up: SQLite pragmas on every connection, BEGIN IMMEDIATE for writes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection

from convostore import AsyncStore, Store
from convostore.config import Settings, get_settings, normalize_url
from convostore.db import (
    WRITE_OPTION,
    check_in,
    configure_engine,
    make_async_engine,
    make_engine,
)
from convostore.errors import ConfigurationError


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "x.db"


def test_sqlite_connections_get_the_pragmas(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: durable
    finally:
        engine.dispose()


@pytest.mark.parametrize(("setting", "level"), [("normal", 1), ("full", 2), ("extra", 3)])
def test_the_synchronous_level_is_a_setting(
    path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, level: int
) -> None:
    monkeypatch.setenv("CONVOSTORE_SQLITE_SYNCHRONOUS", setting)
    get_settings.cache_clear()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    finally:
        engine.dispose()
        monkeypatch.delenv("CONVOSTORE_SQLITE_SYNCHRONOUS")
        get_settings.cache_clear()


def test_an_unknown_synchronous_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOSTORE_SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(PydanticValidationError, match="sqlite_synchronous|CONVOSTORE_SQLITE"):
        Settings()


def test_write_transactions_take_the_write_lock_at_begin(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            conn.exec_driver_sql("SELECT 1")  # no write yet, but the lock is already held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")
        with engine.begin() as conn:  # plain transactions stay deferred
            conn.exec_driver_sql("SELECT 1")
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        engine.dispose()


def test_host_engine_is_configured_once(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")
    assert configure_engine(configure_engine(engine)) is engine
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


async def test_async_sqlite_connections_get_the_pragmas(path: Path) -> None:
    engine = make_async_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        await engine.dispose()


def test_the_urls_timeout_sets_the_busy_timeout(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}?timeout=2.5")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2500
    engine.dispose()


@pytest.mark.parametrize("value", ["soon", "-1", "1e9"])
def test_a_bad_timeout_in_the_url_is_a_configuration_error(path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        make_engine(f"sqlite:///{path}?timeout={value}")
    assert "timeout" in str(err.value)


# ------------------------------------------------------------- PostgreSQL sessions' zone

#: A session in UTC under Debian's default name for it.
ETC_UTC = {"options": "-c timezone=Etc/UTC"}


def _zone_and_now(conn: Connection) -> tuple[str, datetime]:
    zone = conn.execute(text("SHOW TimeZone")).scalar_one()
    # Read on the driver, past SQLAlchemy's conversion: what psycopg itself hands over.
    cursor = conn.connection.cursor()
    cursor.execute("SELECT now()")
    (now,) = cursor.fetchone()
    cursor.close()
    return zone, now


@pytest.mark.postgres
def test_our_sessions_in_utc_by_another_name_are_renamed_utc(pg_url: str) -> None:
    """The driver then gives timestamps in UTC itself: nothing left to convert."""
    with Store(pg_url, connect_args=ETC_UTC) as store:
        with store.engine.connect() as conn:
            zone, now = _zone_and_now(conn)
    assert zone == "UTC" and now.tzinfo is UTC


@pytest.mark.postgres
async def test_our_async_sessions_in_utc_by_another_name_are_renamed_utc(pg_url: str) -> None:
    async with AsyncStore(pg_url, connect_args=ETC_UTC) as store:
        async with store.engine.connect() as conn:
            zone, now = await conn.run_sync(_zone_and_now)
    assert zone == "UTC" and now.tzinfo is UTC


TOKYO = {"options": "-c timezone=Asia/Tokyo"}


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("where", "options", "expected"),
    [
        ("a zone that is not UTC", TOKYO, "Asia/Tokyo"),
        ("a host's engine", ETC_UTC, "Etc/UTC"),
        ("behind a pooler", ETC_UTC, "Etc/UTC"),
    ],
)
def test_every_other_session_keeps_its_zone_and_still_reads_utc(
    pg_url: str, where: str, options: dict[str, str], expected: str
) -> None:
    if where == "a host's engine":
        store = Store(create_engine(normalize_url(pg_url), connect_args=options))
    else:
        url = f"{pg_url}?pgbouncer=true" if where == "behind a pooler" else pg_url
        store = Store(url, connect_args=options)
    try:
        user = f"zone-{where}"
        conv = store.create_conversation(user, title="t")
        with store.engine.connect() as conn:
            assert _zone_and_now(conn)[0] == expected
        stored = store.get_conversation(user, conv.id)
        assert stored.created_at.tzinfo is UTC and stored.created_at == conv.created_at
        assert abs((datetime.now(UTC) - stored.created_at).total_seconds()) < 60
        store.delete_user(user)
    finally:
        store.close()
        store.engine.dispose()


def _count_resets(engine: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[list[bool], list[int]]:
    """The pool's ``reset`` events (whether the transaction was already reset) and its
    rollbacks on return, recorded as they happen."""
    resets: list[bool] = []
    rollbacks: list[int] = []
    event.listen(engine, "reset", lambda _c, _r, state: resets.append(state.transaction_was_reset))
    original = engine.dialect.do_rollback

    def counting(dbapi_connection: Any) -> None:
        rollbacks.append(1)
        original(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_rollback", counting)
    return resets, rollbacks


def test_check_in_rolls_back_only_an_open_transaction(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # check_in skips the pool's rollback on return where the driver shows no transaction
    # open; a transaction left open is still rolled back (nothing of it survives).
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE check_in_probe (x INTEGER)"))
    resets, rollbacks = _count_resets(engine, monkeypatch)
    try:
        idle = engine.raw_connection()
        check_in(idle)
        assert (resets, rollbacks) == ([True], [])

        open_ = engine.raw_connection()
        cursor = open_.cursor()
        if engine.dialect.name == "sqlite":  # our SQLite connections run in autocommit mode
            cursor.execute("BEGIN")
        cursor.execute("INSERT INTO check_in_probe VALUES (1)")
        cursor.close()
        check_in(open_)
        assert (resets, rollbacks) == ([True, False], [1])
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM check_in_probe")).scalar() == 0
        assert engine.pool.checkedout() == 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE check_in_probe"))
        engine.dispose()


async def test_calls_return_their_connection_without_a_redundant_rollback(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reads (and PostgreSQL's one-statement writes) end with no transaction open: the
    # pool is told so, and its reset event still fires once per call. (A transaction's
    # connection goes back through SQLAlchemy's Connection, which resets it as before.)
    # SQLAlchemy never clears the flag a listener on the Connection class sets (as one in
    # test_instrumentation does); every call then takes the full Connection path.
    monkeypatch.setattr(Connection, "_has_events", False)
    with Store(db_url) as store:
        conv = store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
        resets, rollbacks = _count_resets(store.engine, monkeypatch)
        store.last_messages("alice", conv.id, 5)
        store.list_conversations("alice")
        calls = 2
        if store.engine.dialect.name == "postgresql":  # one statement, outside a transaction
            store.append_message("alice", conv.id, {"role": "user", "content": "again"})
            calls += 1
        assert (resets, rollbacks) == ([True] * calls, [])
        assert store.engine.pool.checkedout() == 0
    async with AsyncStore(db_url) as astore:
        await astore.last_messages("alice", conv.id, 5)  # connect, set up the dialect
        engine = astore._threaded.engine if astore._threaded else astore.engine.sync_engine
        resets, rollbacks = _count_resets(engine, monkeypatch)
        await astore.last_messages("alice", conv.id, 5)
        await astore.list_conversations("alice")
        assert (resets, rollbacks) == ([True, True], [])
