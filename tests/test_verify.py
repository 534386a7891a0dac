"""``convostore db verify``: passes on a migrated database, fails loudly otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from convostore import _ddl, _sql
from convostore.db import make_engine
from convostore.migrate import upgrade
from convostore.models import users_table
from convostore.verify import verify


def test_verify_passes_and_leaves_nothing_behind(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        checks = verify(engine)
        failed = [c for c in checks if not c.ok]
        assert failed == []
        names = {c.name for c in checks}
        assert "message for a missing conversation" in names
        assert "delete user cascades to conversations and messages" in names
        assert "foreign key messages(conversation_id, user_id) -> conversations" in names
        with engine.connect() as conn:
            for table in (users_table, _sql.C, _sql.M):
                assert table is not None
                assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
    finally:
        engine.dispose()


def test_verify_reports_missing_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        checks = verify(engine)
    finally:
        engine.dispose()
    assert {c.name for c in checks if not c.ok} == {
        "table convostore_users",
        "table convostore_api_keys",
        "table conversations",
        "table messages",
        "table message_chunks",
        "table convostore_retention_policies",
        "table convostore_tombstones",
        "trigger convostore_message_defaults",
        "trigger convostore_register_user",
        "behaviour probes",
    }


@pytest.fixture
def own_db_url(backend: str, db_url: str, pg_database: Callable[[str], str]) -> str:
    """A database this test may break: a copied SQLite file, or a PostgreSQL database of
    its own (the shared one is never altered)."""
    if backend == "sqlite":
        return db_url
    url = pg_database("convostore_verify")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_verify_detects_a_missing_cascade(own_db_url: str) -> None:
    """A schema whose foreign key lost ON DELETE CASCADE is reported, not passed."""
    db_url = own_db_url
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("ALTER TABLE messages DROP CONSTRAINT fk_messages_user_id")
                conn.exec_driver_sql(
                    "ALTER TABLE messages ADD CONSTRAINT fk_messages_user_id"
                    " FOREIGN KEY (user_id) REFERENCES convostore_users (id)"
                )
                conn.commit()
            else:
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
                conn.exec_driver_sql("DROP TABLE messages")
                conn.exec_driver_sql(
                    "CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER"
                    " NOT NULL REFERENCES conversations (id), user_id VARCHAR(255) NOT NULL,"
                    " position INTEGER NOT NULL, role VARCHAR(20) NOT NULL, content TEXT NOT NULL,"
                    " tool_calls JSON, tool_call_id VARCHAR(255), metadata JSON,"
                    " client_key VARCHAR(255), created_at DATETIME NOT NULL)"
                )
                conn.commit()
        engine.dispose()
        engine = make_engine(db_url)
        failed = {c.name for c in verify(engine) if not c.ok}
        assert "foreign key messages(user_id) -> convostore_users" in failed
    finally:
        engine.dispose()


def test_verify_detects_a_broken_search_index(own_db_url: str) -> None:
    """A missing sync trigger (SQLite) or GIN index (PostgreSQL) fails verify."""
    engine = make_engine(own_db_url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"DROP INDEX {_ddl.SEARCH_INDEX}")
                broken = {f"search index {_ddl.SEARCH_INDEX}"}
            else:
                conn.exec_driver_sql("DROP TRIGGER messages_fts_insert")
                broken = {"trigger messages_fts_insert", "search index follows inserts and deletes"}
        failed = {c.name for c in verify(engine) if not c.ok}
        # An FTS5 index out of step with its table also refuses the deletes of the rows it
        # lacks (the cascade probes then fail too): one more reason to report it.
        assert broken <= failed and all("cascades" in name for name in failed - broken)
        if engine.dialect.name == "sqlite":
            with engine.begin() as conn:  # rows written meanwhile are missing from the index
                conn.exec_driver_sql("INSERT INTO conversations (user_id) VALUES ('u')")
                conn.exec_driver_sql(
                    "INSERT INTO messages (conversation_id, role, content) VALUES (1, 'user', 'x')"
                )
            details = {c.name: c.detail for c in verify(engine) if not c.ok}
            assert details["search table messages_fts"].startswith("0 of 1 rows indexed")
    finally:
        engine.dispose()
