"""The hot queries are index-backed on PostgreSQL: proven by reading their EXPLAIN plans.

The data set is large enough (and ANALYZEd) that the planner would choose a sequential scan
and a sort if the indexes did not serve these queries.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Connection

from convostore import _sql
from convostore.db import make_engine
from convostore.migrate import upgrade
from convostore.schemas import MessageCreate
from convostore.types import utcnow

pytestmark = pytest.mark.postgres

USERS = 50
CONVERSATIONS = 5000
MESSAGES_PER_CONVERSATION = 20
LONG = 20_000  # conversation 1 (owned by u2) is long: that is where a sort would hurt


@pytest.fixture(scope="module")
def conn(pg_database: Callable[[str], str]) -> Iterator[Connection]:
    """A populated database of this module's own (the shared one is never locked or
    changed); everything happens in one transaction that is rolled back."""
    engine = make_engine(pg_database("convostore_plans"))
    upgrade(engine)
    with engine.connect() as connection:
        connection.execute(
            text("INSERT INTO convostore_users (id) SELECT 'u' || g FROM generate_series(1, :n) g"),
            {"n": USERS},
        )
        connection.execute(
            text(
                "INSERT INTO conversations (user_id, updated_at)"
                " SELECT 'u' || (g % :users + 1), now() - g * interval '1 second'"
                " FROM generate_series(1, :n) g"
            ),
            {"users": USERS, "n": CONVERSATIONS},
        )
        connection.execute(
            text(
                "INSERT INTO messages (conversation_id, user_id, position, role, content)"
                " SELECT c.id, c.user_id, p, 'user', 'message ' || p"
                " FROM conversations c, generate_series(1, :m) p WHERE c.id > 1"
            ),
            {"m": MESSAGES_PER_CONVERSATION},
        )
        connection.execute(
            text(
                "INSERT INTO messages (conversation_id, user_id, position, role, content)"
                " SELECT 1, 'u2', p, 'user', 'message ' || p FROM generate_series(1, :n) p"
            ),
            {"n": LONG},
        )
        connection.execute(text("ANALYZE convostore_users, conversations, messages"))
        yield connection
        connection.rollback()
    engine.dispose()


def plan(conn: Connection, stmt: Any, params: dict[str, Any]) -> str:
    """EXPLAIN exactly the SQL and parameters the store sends (``_sql.compiled``)."""
    query = _sql.compiled(stmt, conn.dialect)
    result = conn.exec_driver_sql("EXPLAIN " + query.statement(params), query.params(params))
    return "\n".join(row[0] for row in result)


def assert_index_only(plan_text: str, index: str) -> None:
    assert f"using {index}" in plan_text, plan_text
    assert "Seq Scan" not in plan_text, plan_text
    assert "Sort" not in plan_text, plan_text


def test_recent_conversations_is_one_ordered_index_scan(conn: Connection) -> None:
    stmt = _sql.conversations_query(paged=False)
    params = _sql.conversations_params("u7", 21, None, utcnow())
    assert_index_only(plan(conn, stmt, params), "ix_conversations_user_id_updated_at")


def test_next_page_of_conversations_uses_the_same_index(conn: Connection) -> None:
    stmt = _sql.conversations_query(paged=True)
    params = _sql.conversations_params("u7", 21, (utcnow(), 10**9), utcnow())
    assert_index_only(plan(conn, stmt, params), "ix_conversations_user_id_updated_at")


def test_reading_a_conversation_in_order(conn: Connection) -> None:
    text_plan = plan(conn, *_sql.messages_params("u2", 1, utcnow()))
    assert_index_only(text_plan, "uq_messages_conversation_position")


def test_tail_of_a_conversation_is_a_backward_index_scan(conn: Connection) -> None:
    text_plan = plan(conn, *_sql.messages_params("u2", 1, utcnow(), descending=True, limit=20))
    assert_index_only(text_plan, "uq_messages_conversation_position")
    assert "Backward" in text_plan


def test_keyset_page_of_messages(conn: Connection) -> None:
    text_plan = plan(conn, *_sql.messages_params("u2", 1, utcnow(), after=10, limit=11))
    assert_index_only(text_plan, "uq_messages_conversation_position")


@pytest.mark.parametrize("n", [1, 3])
def test_append_locks_the_conversation_by_a_unique_index(conn: Connection, n: int) -> None:
    batch = [MessageCreate(role="user", content=f"m{i}") for i in range(n)]
    stmt, params = _sql.pg_append("u2", 1, batch, utcnow(), None)
    assert stmt is (_sql.PG_APPEND_ONE if n == 1 else _sql.PG_APPEND)
    text_plan = plan(conn, stmt, params)
    assert (
        "using conversations_pkey" in text_plan or "using uq_conversations_id_user_id" in text_plan
    ), text_plan
    assert "Seq Scan on conversations" not in text_plan


def test_planner_knows_conversation_determines_user(conn: Connection) -> None:
    """The extended statistics shipped by the migration give a sane row estimate."""
    text_plan = plan(conn, *_sql.messages_params("u2", 1, utcnow()))
    estimate = int(text_plan.split("rows=")[1].split()[0])
    assert estimate > LONG // 4, text_plan


def test_erasing_a_users_messages_uses_the_user_index(conn: Connection) -> None:
    stmt = text("DELETE FROM messages WHERE user_id = :u")
    text_plan = plan(conn, stmt, {"u": "u3"})
    assert "ix_messages_user_id_created_at" in text_plan, text_plan


def test_the_purge_reads_only_its_partial_index(conn: Connection) -> None:
    """Expiring conversations are a partial index of their own: the purge's queue never
    touches live conversations (here: all of them)."""
    assert_uses = "ix_conversations_expires_at"
    for stmt in (_sql.COUNT_EXPIRED, _sql.PG_PURGE_BATCH):
        params = {"now": utcnow(), "deleted_at": utcnow(), "lim": 100}
        text_plan = plan(conn, stmt, params)
        assert assert_uses in text_plan and "Seq Scan on conversations" not in text_plan, text_plan


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 (year 1 at +05:30 has no UTC instant)
        max_value=datetime(9000, 1, 1),  # noqa: DTZ001 (hypothesis: naive bounds)
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_a_cursor_is_the_compact_json_of_its_position(moment: datetime, ident: int) -> None:
    # The format clients hold: base64 of ``[isoformat, id]`` as json.dumps writes it
    # compactly; it decodes back to the same instant and id.
    raw = json.dumps([moment.isoformat(), ident], separators=(",", ":"))
    expected = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    cursor = _sql.encode_cursor(moment, ident)
    assert cursor == expected
    assert _sql.decode_cursor(cursor) == (moment, ident)


@pytest.mark.parametrize("fields", [(), ("id",), ("title", "user_id")])
def test_a_conversation_update_sets_only_the_fields_it_may(fields: tuple[str, ...]) -> None:
    # The prebuilt UPDATE is made per set of fields: the owner, the id and the counters
    # are never among them, and an empty set is not a statement.
    with pytest.raises(ValueError, match="cannot update"):
        _sql.update_conversation(fields, pg=False)
