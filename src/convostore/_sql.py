"""Every SQL statement the store runs, built without I/O, in one place.

PostgreSQL gets hand-tuned single statements for the hot writes (one round trip, atomic on
its own, so no BEGIN/COMMIT round trips either); SQLite runs the same logic as two
statements inside a ``BEGIN IMMEDIATE`` transaction (data-modifying CTEs do not exist there).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Delete,
    Insert,
    Integer,
    Select,
    String,
    Text,
    TextClause,
    Update,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from convostore.errors import ValidationError
from convostore.models import Conversation, Message, User
from convostore.schemas import MessageCreate
from convostore.types import UTCDateTime

U = User.__table__
C = Conversation.__table__
M = Message.__table__

CONVERSATION_COLUMNS = (
    C.c.id,
    C.c.user_id,
    C.c.title,
    C.c.metadata,
    C.c.message_count,
    C.c.created_at,
    C.c.updated_at,
)
MESSAGE_COLUMNS = (
    M.c.id,
    M.c.conversation_id,
    M.c.user_id,
    M.c.position,
    M.c.role,
    M.c.content,
    M.c.tool_calls,
    M.c.tool_call_id,
    M.c.metadata,
    M.c.client_key,
    M.c.created_at,
)


# ----------------------------------------------------------------------------- users


def upsert_user(pg: bool, user_id: str, now: datetime) -> Insert:
    """Register a user if new; concurrent first writes both succeed."""
    ins = postgresql.insert(U) if pg else sqlite.insert(U)
    return ins.values(id=user_id, created_at=now).on_conflict_do_nothing(index_elements=[U.c.id])


def delete_user(user_id: str) -> Delete:
    """Erase a user; the foreign keys cascade to conversations and messages."""
    return delete(U).where(U.c.id == user_id)


# --------------------------------------------------------------------- conversations


def insert_conversation(
    pg: bool, user_id: str, title: str | None, meta: dict[str, Any] | None, now: datetime
) -> Insert:
    """Create a conversation; on PostgreSQL the user is registered in the same statement."""
    stmt = (
        insert(C)
        .values(
            user_id=user_id,
            title=title,
            metadata=meta,
            message_count=0,
            created_at=now,
            updated_at=now,
        )
        .returning(*CONVERSATION_COLUMNS)
    )
    if pg:
        stmt = stmt.add_cte(upsert_user(True, user_id, now).cte("new_user"))
    return stmt


def owned(user_id: str, conversation_id: int) -> tuple[ColumnElement[bool], ...]:
    """The WHERE clause that scopes a conversation to its owner."""
    return (C.c.id == conversation_id, C.c.user_id == user_id)


def select_conversation(user_id: str, conversation_id: int) -> Select[Any]:
    return select(*CONVERSATION_COLUMNS).where(*owned(user_id, conversation_id))


def list_conversations(user_id: str, limit: int, cursor: tuple[datetime, int] | None) -> Select[Any]:
    """Most recently active first; keyset on ``(updated_at, id)`` served by one index."""
    stmt = select(*CONVERSATION_COLUMNS).where(C.c.user_id == user_id)
    if cursor is not None:
        stmt = stmt.where(
            tuple_(C.c.updated_at, C.c.id)
            < tuple_(literal(cursor[0], UTCDateTime()), literal(cursor[1], BigInteger()))
        )
    return stmt.order_by(C.c.updated_at.desc(), C.c.id.desc()).limit(limit)


def update_conversation(user_id: str, conversation_id: int, values: dict[str, Any]) -> Update:
    return (
        update(C)
        .where(*owned(user_id, conversation_id))
        .values(**values)
        .returning(*CONVERSATION_COLUMNS)
    )


def delete_conversation(user_id: str, conversation_id: int) -> Delete:
    return delete(C).where(*owned(user_id, conversation_id))


def encode_cursor(updated_at: datetime, conversation_id: int) -> str:
    raw = json.dumps([updated_at.isoformat(), conversation_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Parse an opaque conversation cursor; a tampered one is a validation error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(stamp)
        if not isinstance(ident, int) or moment.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor", "is not a cursor returned by this API") from None
    return moment, ident


# -------------------------------------------------------------------------- messages

# One round trip, atomic by itself: lock and bump the conversation (its row lock serialises
# concurrent appenders, so positions are gapless and unique), then insert every message
# at base+1..base+n. If the conversation is missing or not the user's, nothing happens.
PG_APPEND: TextClause = text(
    """
WITH conv AS (
    UPDATE conversations
       SET message_count = message_count + :n,
           updated_at = :now,
           title = COALESCE(title, :auto_title)
     WHERE id = :cid AND user_id = :uid
 RETURNING id, user_id, message_count - :n AS base
)
INSERT INTO messages (conversation_id, user_id, position, role, content, tool_calls,
                      tool_call_id, metadata, client_key, created_at)
SELECT conv.id, conv.user_id, conv.base + v.ord, v.role, v.content,
       CAST(v.tool_calls AS JSONB), v.tool_call_id, CAST(v.metadata AS JSONB),
       v.client_key, :now
  FROM conv,
       unnest(CAST(:roles AS TEXT[]), CAST(:contents AS TEXT[]), CAST(:tool_calls AS TEXT[]),
              CAST(:tool_call_ids AS TEXT[]), CAST(:metas AS TEXT[]), CAST(:keys AS TEXT[]))
       WITH ORDINALITY AS v(role, content, tool_calls, tool_call_id, metadata, client_key, ord)
RETURNING id, position
"""
).bindparams(
    bindparam("n", type_=Integer()),
    bindparam("now", type_=UTCDateTime()),
    bindparam("auto_title", type_=String()),
    bindparam("cid", type_=BigInteger()),
    bindparam("uid", type_=String()),
    *(
        bindparam(name, type_=ARRAY(Text()))
        for name in ("roles", "contents", "tool_calls", "tool_call_ids", "metas", "keys")
    ),
)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def pg_append_params(
    user_id: str,
    conversation_id: int,
    messages: Sequence[MessageCreate],
    now: datetime,
    auto_title: str | None,
) -> dict[str, Any]:
    """Parameters for :data:`PG_APPEND` (one array per column, so the SQL never changes)."""
    return {
        "n": len(messages),
        "now": now,
        "auto_title": auto_title,
        "cid": conversation_id,
        "uid": user_id,
        "roles": [m.role.value for m in messages],
        "contents": [m.content for m in messages],
        "tool_calls": [_json_text(m.tool_calls) for m in messages],
        "tool_call_ids": [m.tool_call_id for m in messages],
        "metas": [_json_text(m.metadata) for m in messages],
        "keys": [m.key for m in messages],
    }


def bump_conversation(
    user_id: str, conversation_id: int, n: int, now: datetime, auto_title: str | None
) -> Update:
    """SQLite half of an append: reserve positions; returns the new ``message_count``."""
    values: dict[str, Any] = {"message_count": C.c.message_count + n, "updated_at": now}
    if auto_title is not None:
        values["title"] = func.coalesce(C.c.title, auto_title)
    return (
        update(C)
        .where(*owned(user_id, conversation_id))
        .values(**values)
        .returning(C.c.message_count)
    )


def insert_messages() -> Insert:
    """SQLite half of an append: the rows, ids returned in parameter order."""
    return insert(M).returning(M.c.id, sort_by_parameter_order=True)


def message_rows(
    user_id: str, conversation_id: int, base: int, messages: Sequence[MessageCreate], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "position": base + i,
            "role": m.role.value,
            "content": m.content,
            "tool_calls": m.tool_calls,
            "tool_call_id": m.tool_call_id,
            "metadata": m.metadata,
            "client_key": m.key,
            "created_at": now,
        }
        for i, m in enumerate(messages, start=1)
    ]


def select_messages(
    user_id: str,
    conversation_id: int,
    *,
    after: int | None = None,
    before: int | None = None,
    descending: bool = False,
    limit: int | None = None,
) -> Select[Any]:
    """A conversation's messages by position (index range scan on (conversation_id, position))."""
    stmt = select(*MESSAGE_COLUMNS).where(
        M.c.conversation_id == conversation_id, M.c.user_id == user_id
    )
    if after is not None:
        stmt = stmt.where(M.c.position > after)
    if before is not None:
        stmt = stmt.where(M.c.position < before)
    stmt = stmt.order_by(M.c.position.desc() if descending else M.c.position)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def select_messages_by_key(user_id: str, conversation_id: int, keys: Sequence[str]) -> Select[Any]:
    return select(*MESSAGE_COLUMNS).where(
        M.c.conversation_id == conversation_id,
        M.c.user_id == user_id,
        M.c.client_key.in_(keys),
    )


def truncate_conversation(user_id: str, conversation_id: int, keep: int, now: datetime) -> Update:
    """Move the counter back to ``keep`` (only if it is beyond); returns the old count."""
    return (
        update(C)
        .where(*owned(user_id, conversation_id), C.c.message_count > keep)
        .values(message_count=keep, updated_at=now)
    )


def delete_messages_after(conversation_id: int, position: int) -> Delete:
    return (
        delete(M)
        .where(M.c.conversation_id == conversation_id, M.c.position > position)
        .returning(*MESSAGE_COLUMNS)
    )
