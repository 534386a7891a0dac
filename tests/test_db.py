"""Engine set-up: SQLite pragmas on every connection, BEGIN IMMEDIATE for writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import create_engine

from convostore.config import Settings, get_settings
from convostore.db import WRITE_OPTION, configure_engine, make_async_engine, make_engine
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
