"""Shipped migrations: up from empty, down to base, up again; no drift; the CLI around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from convostore import Store, _ddl, migrate, models
from convostore.cli import app
from convostore.db import make_engine

runner = CliRunner()


def _tables(url: str) -> set[str]:
    """convostore's tables (the full-text index's SQLite FTS5 tables are tested apart)."""
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) - {migrate.VERSION_TABLE}
        return {n for n in names if not n.startswith((_ddl.MESSAGES_FTS, _ddl.TITLES_FTS))}
    finally:
        engine.dispose()


ALL_TABLES = {
    "convostore_users",
    "conversations",
    "messages",
    "message_chunks",
    "convostore_api_keys",
    "convostore_retention_policies",
    "convostore_tombstones",
}


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert migrate.current(engine) is None
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        assert _tables(empty_url) == ALL_TABLES
        assert migrate.check(engine) == []

        migrate.downgrade(engine, "base")
        assert migrate.current(engine) is None
        assert _tables(empty_url) == set()

        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_streaming_migration_goes_down_and_up_with_data(empty_url: str) -> None:
    """0004 down to 0002 and back keeps the rows, and the seeds' raw inserts (the trigger
    path, rebuilt on SQLite) keep working at both revisions."""
    raw = "INSERT INTO messages (conversation_id, role, content) VALUES (:cid, 'user', :content)"
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine)
        with Store(engine) as store:
            cid = store.create_conversation("alice").id
            reply = store.begin_message("alice", cid)
            store.append_delta("alice", reply.id, 0, "partial")
        migrate.downgrade(engine, "0002")
        assert "message_chunks" not in _tables(empty_url)
        with engine.begin() as conn:
            conn.execute(text(raw), {"cid": cid, "content": "at 0002"})
            rows = conn.execute(text("SELECT position, content FROM messages ORDER BY 1")).all()
        assert [tuple(r) for r in rows] == [(1, "partial"), (2, "at 0002")]
        migrate.upgrade(engine)
        assert migrate.check(engine) == []
        with engine.begin() as conn:
            conn.execute(text(raw), {"cid": cid, "content": "at head"})
        with Store(engine) as store:
            stored = store.get_messages("alice", cid)
            assert [(m.position, m.status) for m in stored] == [
                (1, "complete"),  # what a downgrade cannot keep: the status column
                (2, "complete"),
                (3, "complete"),
            ]
            assert store.begin_message("alice", cid).position == 4
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_autogenerate_finds_no_drift(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_drift_is_detected(db_url: str) -> None:
    """The drift check can fail: an index removed behind the models' back is reported."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            # Inside a transaction that is rolled back: the shared test database stays intact.
            conn.exec_driver_sql("DROP INDEX ix_messages_user_id_created_at")
            diffs = migrate.check(conn)
            conn.rollback()
        assert any("ix_messages_user_id_created_at" in repr(d) for d in diffs)
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("constraint", "weaker"),
    [
        ("ck_messages_position", "position >= 0"),
        ("ck_conversations_message_count", "message_count >= -1"),
        ("ck_messages_role", "role IN ('user', 'assistant', 'system', 'tool', 'robot')"),
        ("ck_messages_position", None),  # dropped
    ],
)
def test_a_weakened_check_constraint_is_drift(
    db_url: str, backend: str, constraint: str, weaker: str | None
) -> None:
    """Alembic does not compare CHECK constraints; ``migrate.check`` does."""
    table = "conversations" if "conversations" in constraint else "messages"
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            # Inside a transaction that is rolled back: the shared test database stays intact.
            if backend == "postgresql":
                conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
                if weaker is not None:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK ({weaker})"
                    )
            else:  # SQLite keeps CHECKs in the table's CREATE statement only
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
                ).scalar_one()
                clause = next(
                    part for part in sql.split("CONSTRAINT ")[1:] if part.startswith(constraint)
                )
                clause = clause.rstrip().rstrip(")").rstrip().rstrip(",")
                new = f"{constraint} CHECK ({weaker})" if weaker else "ck_unrelated CHECK (1)"
                conn.exec_driver_sql("PRAGMA writable_schema = ON")
                conn.exec_driver_sql(
                    "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name = ?",
                    (clause, new, table),
                )
            diffs = migrate.check(conn)
            conn.rollback()
        assert [d[:3] for d in diffs if d[0] == "check_constraint"][:1] == [
            ("check_constraint", table, constraint)
        ], diffs
        assert migrate.check(engine) == []
    finally:
        engine.dispose()


def test_host_tables_are_ignored(db_url: str) -> None:
    """A host app's own tables in the same database are not convostore's drift."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE tasks (id INTEGER PRIMARY KEY)")
            assert migrate.check(conn) == []
            conn.rollback()
    finally:
        engine.dispose()


def test_cli_upgrade_check_verify_downgrade(empty_url: str) -> None:
    env = {"DATABASE_URL": empty_url}
    result = runner.invoke(app, ["db", "check"], env=env)
    assert result.exit_code == 1
    assert "not at head" in result.output

    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert migrate.head() in result.output

    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0 and f"current: {migrate.head()}" in result.output

    result = runner.invoke(app, ["db", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "schema matches" in result.output

    result = runner.invoke(app, ["db", "verify"], env=env)
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output

    result = runner.invoke(app, ["db", "downgrade", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert _tables(empty_url) == set()


def test_cli_rejects_unsupported_url_without_traceback() -> None:
    result = runner.invoke(app, ["db", "upgrade", "--database-url", "mysql://x@y/z"])
    assert result.exit_code == 1
    assert "unsupported database" in result.output
    assert "Traceback" not in result.output


def test_a_database_of_the_first_release_is_upgraded_with_its_data(empty_url: str) -> None:
    """0001 as first shipped named convostore's users table ``users``; 0002 renames it,
    keeps every row, and the triggers then serve new ORM-style inserts."""
    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE convostore_users RENAME TO users"))
            conn.execute(text("INSERT INTO users (id) VALUES ('alice')"))
            conn.execute(text("INSERT INTO conversations (user_id) VALUES ('alice')"))
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, user_id, position, role, content)"
                    " VALUES (1, 'alice', 1, 'user', 'old')"
                )
            )
            conn.execute(text("UPDATE conversations SET message_count = 1"))
        migrate.upgrade(engine)
        assert _tables(empty_url) == ALL_TABLES
        assert migrate.check(engine) == []
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content)"
                    " VALUES (1, 'user', 'new')"
                )
            )
            rows = conn.execute(
                text("SELECT position, user_id, content FROM messages ORDER BY created_at")
            ).all()
            assert [tuple(r) for r in rows] == [(1, "alice", "old"), (2, "alice", "new")]
            conn.execute(text("DELETE FROM convostore_users WHERE id = 'alice'"))
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 0
    finally:
        engine.dispose()


def test_search_migration_indexes_existing_rows_and_downgrades(empty_url: str) -> None:
    """0003 indexes the messages and titles already stored; its downgrade removes the
    index (and nothing else), and upgrading again rebuilds it."""
    from convostore import Store

    engine = make_engine(empty_url)
    try:
        migrate.upgrade(engine, "0002")
        # The store of today needs today's schema: rows of 0002 are written in plain SQL.
        with engine.begin() as conn:
            conv_id = conn.execute(
                text(
                    "INSERT INTO conversations (user_id, title) VALUES ('alice', 'Old budget')"
                    " RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content)"
                    " VALUES (:c, 'user', 'old words')"
                ),
                {"c": conv_id},
            )

        def contents() -> list[str]:
            with engine.connect() as conn:
                return [
                    str(r[0])
                    for r in conn.execute(
                        text("SELECT content FROM messages WHERE conversation_id = :c"),
                        {"c": conv_id},
                    )
                ]

        def search_objects() -> set[str]:
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    rows = conn.exec_driver_sql(
                        "SELECT name FROM sqlite_master WHERE name LIKE '%fts%'"
                    )
                else:
                    rows = conn.exec_driver_sql(
                        "SELECT attname FROM pg_attribute WHERE attrelid = 'messages'::regclass"
                        f" AND attname = '{_ddl.SEARCH_VECTOR}' UNION ALL SELECT indexname"
                        f" FROM pg_indexes WHERE indexname = '{_ddl.SEARCH_INDEX}'"
                    )
                return {str(r[0]) for r in rows}

        assert search_objects() == set()
        for _ in range(2):
            migrate.upgrade(engine)
            assert migrate.check(engine) == []
            assert search_objects()
            with Store(engine) as store:
                hits = store.search("alice", "old")
                assert {(h.kind, h.conversation_id) for h in hits.data} == {
                    ("title", conv_id),
                    ("message", conv_id),
                }
            migrate.downgrade(engine, "0002")
            assert search_objects() == set()
            assert contents() == ["old words"]
    finally:
        engine.dispose()


def test_per_user_search_migration_keeps_every_users_hits(empty_url: str) -> None:
    """0007 rebuilds the index scoped by user from the rows of 0006 (found by their owner
    only), and its downgrade restores 0006's index, which the next upgrade replaces."""
    from convostore import Store

    engine = make_engine(empty_url)

    def layout() -> set[str]:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                sql = "SELECT name || ':' || sql FROM sqlite_master WHERE name = 'messages_fts'"
                return {"owner" if _ddl.OWNER_COLUMN in str(r[0]) else "plain" for r in
                        conn.exec_driver_sql(sql)}  # fmt: skip
            sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'messages'"
            names = {str(r[0]) for r in conn.exec_driver_sql(sql)}
            return {"owner" for n in names if n == _ddl.SEARCH_INDEX} | {
                "plain" for n in names if n == _ddl.UNSCOPED_SEARCH_INDEX
            }

    try:
        migrate.upgrade(engine, "0006")
        assert layout() == {"plain"}
        with engine.begin() as conn:
            for user in ("alice", "bob", "álice ✓"):  # any text: the token is its hex
                cid = conn.execute(
                    text("INSERT INTO conversations (user_id) VALUES (:u) RETURNING id"),
                    {"u": user},
                ).scalar_one()
                conn.execute(
                    text(
                        "INSERT INTO messages (conversation_id, role, content)"
                        " VALUES (:c, 'user', :t)"
                    ),
                    {"c": cid, "t": f"shared word, and {user.split()[0]}only"},
                )
        for _ in range(2):
            migrate.upgrade(engine)
            assert layout() == {"owner"}
            assert migrate.check(engine) == []
            with Store(engine) as store:
                for user in ("alice", "bob", "álice ✓"):
                    hits = store.search(user, "shared").data
                    assert [h.message.user_id for h in hits if h.message] == [user]
                assert store.search("alice", "bobonly").data == []
            migrate.downgrade(engine, "0006")
            assert layout() == {"plain"}
    finally:
        engine.dispose()


def _sqlite_triggers(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            sql = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            rows = conn.exec_driver_sql(sql)
            return {str(name): str(sql) for name, sql in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_title_is_reindexed_only_when_it_changes(empty_url: str, tmp_path: Path) -> None:
    """From 0008 an append (which sets ``title = COALESCE(title, ...)``) leaves the title
    index alone; a new title is still indexed, its old words gone. 0007's triggers, after a
    downgrade, re-index on every append; ``create_all`` makes the same triggers as head."""
    engine = make_engine(empty_url)

    def title_index() -> list[tuple[int, bytes]]:
        # FTS5 writes a new segment and structure record for every delete and insert.
        with engine.connect() as conn:
            sql = f"SELECT id, block FROM {_ddl.TITLES_FTS}_data ORDER BY id"
            return [(int(i), bytes(b)) for i, b in conn.exec_driver_sql(sql)]

    def append(store: Store, cid: int, text: str) -> None:
        store.append_message("alice", cid, {"role": "user", "content": text})

    try:
        migrate.upgrade(engine)
        with Store(engine) as store:
            cid = store.create_conversation("alice", title="Budget plan").id
            before = title_index()
            append(store, cid, "first")
            store.append_messages("alice", cid, [{"role": "user", "content": "x"}] * 3)
            assert title_index() == before
            store.update_conversation("alice", cid, title="Travel notes")
            assert title_index() != before
            assert [h.conversation_id for h in store.search("alice", "travel").data] == [cid]
            assert store.search("alice", "budget").data == []

            migrate.downgrade(engine, "0007")
            before = title_index()
            append(store, cid, "second")
            assert title_index() != before  # the trigger of 0007: the cost 0008 removes
            migrate.upgrade(engine)
            assert migrate.check(engine) == []
            before = title_index()
            append(store, cid, "third")
            assert title_index() == before
            assert [m.content for m in store.get_messages("alice", cid)][-2:] == [
                "second",
                "third",
            ]
    finally:
        engine.dispose()

    created = f"sqlite:///{tmp_path / 'created.db'}"
    created_engine = make_engine(created)
    try:
        tables = [t for t in models.metadata.sorted_tables if t.name in ALL_TABLES]
        models.metadata.create_all(created_engine, tables=tables)
    finally:
        created_engine.dispose()
    assert _sqlite_triggers(created) == _sqlite_triggers(empty_url)
