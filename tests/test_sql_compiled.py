"""The compiled-statement cache: one entry per dialect instance, never shared across them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from convostore import Store, _sql
from convostore.db import analyze, make_engine
from convostore.schemas import ConversationPublic, MessagePublic


def test_each_dialect_gets_its_own_compilation() -> None:
    stmt = _sql.messages_query(after=True, before=False, descending=True, limited=True)
    lite = _sql.compiled(stmt, sqlite.dialect())
    pg = _sql.compiled(stmt, postgresql.psycopg.dialect())
    assert "?" in lite.sql and "%(cid)s" in pg.sql
    values = {"cid": 1, "uid": "u", "now": None, "after": 2, "lim": 3, "stale": None}
    params = lite.params(values)
    # The lease cutoff of the status column first (it is in the select list), then the
    # messages' owner, the live-conversation check (same cid/uid), the range; the page
    # size is written into the SQL, not sent.
    assert params[1:] == [1, "u", 1, "u", None, 2, 0]
    assert lite.statement(values).endswith("LIMIT 3 OFFSET ?")
    assert pg.statement(values).endswith("LIMIT 3") and "lim" not in pg.params(values)
    dialect = sqlite.dialect()
    assert _sql.compiled(stmt, dialect) is _sql.compiled(stmt, dialect)


@pytest.mark.postgres
def test_prepared_reads_keep_their_generic_plan(pg_url: str) -> None:
    """PostgreSQL: a read run again and again is planned once (its generic plan kept),
    which a LIMIT sent as a parameter prevented (every execution was planned anew)."""
    user = f"plans-{uuid.uuid4().hex[:8]}"
    engine = make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        with Store(engine) as store:
            conv = store.create_conversation(user)
            store.append_messages(user, conv.id, [{"role": "user", "content": "hi"}] * 3)
            # Statistics of this state, not of whatever the tables held earlier in the run
            # (autovacuum's picture of an earlier test's rows changes which plan is cheaper).
            analyze(engine)
            for _ in range(
                20
            ):  # past psycopg's prepare threshold, then PostgreSQL's 5 custom plans
                assert len(store.last_messages(user, conv.id, 2)) == 2
                assert len(store.list_conversations(user, limit=20).data) == 1
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement ~ 'LIMIT [0-9]+$'"
                ).all()
        assert len(rows) == 2
        assert all(generic > custom for generic, custom in rows), rows
    finally:
        engine.dispose()


def test_the_fast_path_reads_what_sqlalchemy_reads(store: Store) -> None:
    """The generated row readers give, column for column, what SQLAlchemy's own execution
    (its result processors, through ``Connection.execute``) gives for the same statement:
    JSON decoded, timestamps aware UTC, booleans, NULLs, the lease-aware status."""
    from datetime import UTC, datetime, timedelta

    from convostore import _ops

    user = "readers"
    conv = store.create_conversation(
        user, title="t", metadata={"a": [1, "x"]}, external_id="ext-1", temporary=True
    )
    # What the INSERT returns is read as the SELECT below is (checked against SQLAlchemy).
    assert conv == store.get_conversation(user, conv.id) and conv.metadata == {"a": [1, "x"]}
    store.create_conversation(user, title="plain")
    store.append_messages(
        user,
        conv.id,
        [
            {"role": "user", "content": "q", "metadata": {"k": "v"}, "key": "k1"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}],
            },
            {"role": "tool", "content": "r", "tool_call_id": "c1"},
        ],
    )
    streaming = store.begin_message(user, conv.id)
    now = datetime.now(UTC)
    # A lease in the past makes the streaming reply read as interrupted: a CASE column.
    stale = now + timedelta(hours=1)
    cases = [
        (
            _sql.messages_query(after=False, before=False, descending=False, limited=False),
            {"cid": conv.id, "uid": user, "now": now, "stale": stale},
        ),
        (
            _sql.messages_query(
                after=True, before=False, descending=True, limited=True, window=True
            ),
            {"cid": conv.id, "uid": user, "now": now, "stale": stale, "after": 1, "lim": 3},
        ),
        (_sql.conversations_query(paged=False), {"uid": user, "lim": 5, "now": now}),
        (_sql.CONVERSATION_BY_ID, {"cid": conv.id, "uid": user, "now": now}),
        (
            _sql.MESSAGE_BY_ID,
            {"mid": streaming.id, "cid": conv.id, "uid": user, "now": now, "stale": stale},
        ),
    ]
    with store.engine.connect() as conn:
        tx = _ops.Tx(conn, conn.dialect.name == "postgresql", store.config)
        for stmt, params in cases:
            query = _sql.compiled(stmt, conn.dialect)
            expected = [
                {query.fields[i]: value for i, value in enumerate(row)}
                for row in conn.execute(stmt, params).all()
            ]
            assert expected, stmt
            assert _ops._read(tx, stmt, params) == expected
            assert [tuple(r.values()) for r in expected] == [
                tuple(t) for t in query.tuples(_ops._driver_execute(tx, stmt, params)[1])
            ]
            model = ConversationPublic if "message_count" in query.fields else MessagePublic
            if set(query.fields) != set(model.model_fields):
                continue  # the history window's columns: read as tuples, never as models
            built = query.models(model, _ops._driver_execute(tx, stmt, params)[1])
            # As validation would build them from what SQLAlchemy read, field for field.
            assert built == [model(**r) for r in expected]
            assert [m.model_dump_json() for m in built] == [
                model(**r).model_dump_json() for r in expected
            ]
    statuses = {r["status"] for r in expected}
    assert statuses == {"interrupted"}
    # A model reader needs exactly the model's fields: a statement that selects others
    # is refused when the reader is made, not read into a half-filled instance.
    conversation_query = _sql.compiled(_sql.conversations_query(paged=False), store.engine.dialect)
    with pytest.raises(TypeError, match="MessagePublic needs exactly its fields"):
        conversation_query.models(MessagePublic, [])


def test_the_fast_path_binds_what_sqlalchemy_binds(store: Store) -> None:
    """The generated parameter binders send the driver, value for value, what SQLAlchemy's
    own execution of the same statement sends (captured from ``before_cursor_execute``):
    the bind processors applied, its own bound values (``OFFSET 0``) kept, in the
    dialect's style (a list in order on SQLite, a dict on PostgreSQL)."""
    from datetime import UTC, datetime

    from sqlalchemy import event

    from convostore.schemas import MessageCreate

    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    pg = store.engine.dialect.name == "postgresql"
    conv = store.create_conversation("binder", title="t")
    full = store.create_conversation("binder", messages=[{"role": "user", "content": "x"}])
    message = MessageCreate(role="user", content="q", metadata={"k": ["v", 1]}, key="k1")
    cases: list[tuple[Any, dict[str, Any]]] = [
        _sql.messages_params("binder", conv.id, now, stale=now, descending=True, limit=20),
        _sql.messages_params("binder", conv.id, now, stale=now, after=3, before=9),
        (_sql.conversations_query(paged=False), _sql.conversations_params("binder", 5, None, now)),
        (_sql.CONVERSATION_BY_ID, {"cid": conv.id, "uid": "binder", "now": now}),
        (
            _sql.INSERT_CONVERSATION[pg],
            _sql.new_conversation(
                "binder",
                "t",
                {"k": [1]},
                now,
                external_id="e",
                retention_seconds=60,
                temporary=True,
            ),
        ),
        (
            _sql.end_stream(("status", "content", "tool_calls", "metadata", "stream_heartbeat_at")),
            _sql.end_stream_params(
                1,
                {
                    "status": "complete",
                    "content": "done",
                    "tool_calls": [{"id": "c", "type": "function"}],
                    "metadata": None,
                    "stream_heartbeat_at": now,
                },
            ),
        ),
        (
            _sql.update_conversation(_sql.CONVERSATION_UPDATES, pg),
            _sql.update_conversation_params(
                "binder",
                conv.id,
                {"title": "u", "metadata": {"k": [2]}, "hold": True, "retention_seconds": 90},
                now,
            ),
        ),
        (  # "none": no retention, never expires (a NULL the SQL uses twice on SQLite)
            _sql.update_conversation(("retention_seconds",), pg),
            _sql.update_conversation_params("binder", conv.id, {"retention_seconds": None}, now),
        ),
        (_sql.DELETE_CONVERSATION, {"cid": conv.id, "uid": "binder", "now": now}),
        (_sql.MESSAGE_BY_KEY, {"cid": conv.id, "uid": "binder", "key": "k1", "stale": now}),
        (
            _sql.TRUNCATE_CONVERSATION,
            {"cid": conv.id, "uid": "binder", "now": now, "keep": 2},
        ),
        (_sql.DELETE_MESSAGES_AFTER, {"cid": conv.id, "keep": 2, "stale": now}),
        (_sql.DELETE_MESSAGE, {"cid": conv.id, "mid": 7, "stale": now}),
        # A literal in the SET (``position - :count - 1``, ``message_count - 1``) is an
        # anonymous bind SQLAlchemy names at compilation (``message_count_1``).
        *((stmt, {"cid": conv.id, "position": 3, "count": 9}) for stmt in _sql.CLOSE_GAP),
        (_sql.SHRINK_CONVERSATION, {"cid": full.id, "uid": "binder", "now": now}),
        (
            _sql.INSERT_ONE_MESSAGE,
            _sql.message_rows("binder", conv.id, 0, [message], now)[0],
        ),
        _sql.pg_append("binder", conv.id, [message], now, "title"),
        _sql.pg_append(
            "binder",
            conv.id,
            [message, MessageCreate(role="tool", content="a", tool_call_id="c1")],
            now,
            None,
        ),
    ]
    sent: list[Any] = []

    def capture(_c: Any, _cur: Any, _sql_text: str, params: Any, *_: Any) -> None:
        sent.append(params)

    checked = 0
    with store.engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        for stmt, values in cases:
            if any(stmt is s for s in (_sql.PG_APPEND, _sql.PG_APPEND_ONE)) and not pg:
                continue  # PostgreSQL's own append statements
            query = _sql.compiled(stmt, conn.dialect)
            sent.clear()
            with conn.begin() as tx:
                conn.execute(stmt, values)
                tx.rollback()
            ours = query.params(values)
            theirs = sent[-1]  # after the BEGIN, where that is a statement (SQLite)
            if pg:  # a dict: SQLAlchemy sends exactly the statement's names
                assert _unwrapped(ours) == _unwrapped(theirs), stmt
            else:
                assert tuple(ours) == tuple(theirs), stmt
            checked += 1
    assert checked == (19 if pg else 17)


def _unwrapped(params: dict[str, Any]) -> dict[str, Any]:
    # psycopg's Jsonb wrapper compares by identity: compare what it wraps.
    return {k: getattr(v, "obj", v) for k, v in params.items()}


def test_rows_the_inlined_conversion_does_not_cover_are_read_like_sqlalchemy(
    db_url: str,
) -> None:
    # Timestamps another writer stored in other texts (a date alone, a "T"): on SQLite the
    # model readers' inlined parse declines them and the type's own processor reads them.
    from datetime import UTC, datetime

    from sqlalchemy import text

    with Store(db_url) as store:
        conv = store.create_conversation("texts")
        store.append_messages(
            "texts", conv.id, [{"role": "user", "content": str(i)} for i in "abc"]
        )
        with store.engine.begin() as conn:
            for position, stamp in ((1, "2026-01-02"), (2, "2026-01-02T03:04:05.5")):
                conn.execute(
                    text("UPDATE messages SET created_at = :s WHERE position = :p"),
                    {"s": stamp, "p": position},
                )
        stamps = [m.created_at for m in store.last_messages("texts", conv.id, 3)]
    assert stamps[:2] == [
        datetime(2026, 1, 2, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
    ]
    assert all(s.tzinfo is UTC for s in stamps)
