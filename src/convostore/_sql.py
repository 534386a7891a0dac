"""Every SQL statement the store runs, built without I/O, in one place.

PostgreSQL gets hand-tuned single statements for the hot writes (one round trip, atomic on
its own, so no BEGIN/COMMIT round trips either); SQLite runs the same logic as two
statements inside a ``BEGIN IMMEDIATE`` transaction (data-modifying CTEs do not exist there).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Delete,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Text,
    TextClause,
    Update,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeEngine

from convostore._ddl import (
    EXPIRING,
    OWNER_COLUMN,
    owner_token,
    pg_next_timestamp,
    pg_plus_seconds,
    sqlite_next_timestamp,
    sqlite_plus_seconds,
)
from convostore.config import get_settings
from convostore.errors import ValidationError
from convostore.models import (
    OWNS_USERS,
    USERS_TABLE,
    MessageStatus,
    chunks_table,
    conversations_table,
    messages_table,
    policies_table,
    tombstones_table,
    users_table,
)
from convostore.schemas import MessageCreate, trusted_parts
from convostore.types import UTCDateTime

_M = TypeVar("_M")

C = conversations_table
M = messages_table
K = chunks_table

STREAMING = MessageStatus.STREAMING.value
# As SQL literals, not bound values: the statements stay the same text, and PostgreSQL
# can match ``status = 'streaming'`` to the partial index even in a generic plan.
_STREAMING_SQL: ColumnElement[str] = literal_column(f"'{STREAMING}'")
_INTERRUPTED_SQL: ColumnElement[str] = literal_column(f"'{MessageStatus.INTERRUPTED.value}'")

#: A message's status as every reader sees it: a ``streaming`` message whose writer's lease
#: (``stream_heartbeat_at``) is older than ``:stale`` reads as ``interrupted``. The cutoff
#: is bound by the caller (:func:`stale_before`), the same expression on both databases.
STATUS: ColumnElement[str] = case(
    (
        and_(
            M.c.status == _STREAMING_SQL,
            M.c.stream_heartbeat_at < bindparam("stale", type_=UTCDateTime()),
        ),
        _INTERRUPTED_SQL,
    ),
    else_=M.c.status,
).label("status")


def stale_before(lease_seconds: float | None = None, now: datetime | None = None) -> datetime:
    """The lease cutoff: a streaming message last renewed before this is interrupted."""
    if lease_seconds is None:
        lease_seconds = get_settings().stream_lease_seconds
    return (now or datetime.now(UTC)) - timedelta(seconds=lease_seconds)


CONVERSATION_COLUMNS = (
    C.c.id,
    C.c.user_id,
    C.c.title,
    C.c.metadata,
    C.c.external_id,
    C.c.message_count,
    C.c.created_at,
    C.c.updated_at,
    C.c.expires_at,
    C.c.temporary,
    C.c.hold,
    C.c.retention_seconds,
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
    STATUS,
)


# ----------------------------------------------------------------------------- users


def upsert_user(pg: bool, user_id: str, now: datetime) -> Insert | None:
    """Register a user if new (``None`` when the host owns the users table).

    Concurrent first writes both succeed. A conversation's insert registers its user by
    itself (a trigger); this is for the user's own ``created_at`` (import, ``ensure_user``).
    """
    if users_table is None:
        return None
    ins = postgresql.insert(users_table) if pg else sqlite.insert(users_table)
    return ins.values(id=user_id, created_at=now).on_conflict_do_nothing(
        index_elements=[users_table.c.id]
    )


def delete_user(user_id: str) -> Delete:
    """Erase everything of a user; the foreign keys cascade from the deleted rows.

    With the host's users table, the host's user row is the host's to delete: convostore
    removes the user's conversations (and so their messages) only.
    """
    if users_table is None:
        return delete(C).where(C.c.user_id == user_id)
    return delete(users_table).where(users_table.c.id == user_id)


# --------------------------------------------------------------------- conversations


#: What a new conversation is given (the rest is the table's defaults).
_NEW_CONVERSATION = (
    "user_id",
    "title",
    "metadata",
    "external_id",
    "created_at",
    "updated_at",
    "retention_seconds",
    "expires_at",
    "temporary",
)


def _insert_conversation(pg: bool) -> ReturningInsert[Any]:
    ins = postgresql.insert(C) if pg else sqlite.insert(C)
    values = {name: bindparam(f"new_{name}", type_=C.c[name].type) for name in _NEW_CONVERSATION}
    # A conversation of the user with this external_id wins: nothing is inserted and
    # nothing returned (concurrent callers included). message_count is left to its
    # default (0): a literal in values() compiles with an extra anonymous bind, which the
    # generated binder would ask the call for.
    stmt = ins.values(**values).on_conflict_do_nothing(
        index_elements=[C.c.user_id, C.c.external_id],
        index_where=C.c.external_id.isnot(None),
    )
    return stmt.returning(*CONVERSATION_COLUMNS)


#: Create a conversation (its user is registered by the database's trigger if new), by
#: ``pg``; parameters from :func:`new_conversation`. Built once: a Core insert built per
#: call cost ~14,000 bytecodes of SQLAlchemy's (coercions, cache keys, compiled cache).
INSERT_CONVERSATION: dict[bool, ReturningInsert[Any]] = {
    pg: _insert_conversation(pg) for pg in (True, False)
}


def new_conversation(
    user_id: str,
    title: str | None,
    meta: dict[str, Any] | None,
    now: datetime,
    *,
    external_id: str | None = None,
    retention_seconds: int | None = None,
    temporary: bool = False,
) -> dict[str, Any]:
    """The parameters of :data:`INSERT_CONVERSATION`."""
    expires = None if retention_seconds is None else now + timedelta(seconds=retention_seconds)
    values = (user_id, title, meta, external_id, now, now, retention_seconds, expires, temporary)
    return {f"new_{n}": v for n, v in zip(_NEW_CONVERSATION, values, strict=True)}


# ------------------------------------------------------------------------- retention
#
# "Expired means gone": a conversation past its ``expires_at`` and not on hold is missing
# for every reader and writer at once, before the purge deletes it. This is the one
# predicate that says so; every statement that finds a conversation for a user includes
# it, with ``now`` a parameter from the store's clock (never the database's ``now()``).

#: The clock's instant, bound into every statement that checks expiry.
NOW = bindparam("now", type_=UTCDateTime())


def live(now: ColumnElement[Any] | datetime = NOW) -> ColumnElement[bool]:
    """The conversation exists for readers at ``now`` (Core statements)."""
    return or_(C.c.expires_at.is_(None), C.c.expires_at > now, C.c.hold)


def live_sql(alias: str = "") -> str:
    """:func:`live` for the hand-written SQL (``:now``), on table alias ``alias``."""
    p = f"{alias}." if alias else ""
    return f"({p}expires_at IS NULL OR {p}expires_at > :now OR {p}hold)"


#: A user's conversation by its external id, expired ones included: the external id stays
#: taken (a unique index) until the purge deletes it (params: ``uid``, ``external_id``).
CONVERSATION_BY_EXTERNAL_ID: Select[Any] = select(*CONVERSATION_COLUMNS).where(
    C.c.user_id == bindparam("uid", type_=String()),
    C.c.external_id == bindparam("external_id", type_=String()),
)
#: The same, live only (params: ``uid``, ``external_id``, ``now``).
LIVE_CONVERSATION_BY_EXTERNAL_ID: Select[Any] = CONVERSATION_BY_EXTERNAL_ID.where(live())


# The hot statements are built once, with bind parameters, and reused: building a
# statement and walking it for SQLAlchemy's cache key cost more than the query itself.

_CID = bindparam("cid", type_=BigInteger())
#: A page size written into the SQL (``LIMIT 20``), not sent as a parameter. PostgreSQL
#: estimates a parameter LIMIT as a tenth of the rows, so the generic plan of a prepared
#: read always looks costlier than a plan made for the value, and every execution was
#: planned again (~0.06 ms a read); with the number in the text, the prepared statement's
#: generic plan is the same plan and is kept. Each page size is its own statement text.
_LIMIT = bindparam("lim", type_=Integer(), literal_execute=True)
_UID = bindparam("uid", type_=String())

#: The WHERE clause that scopes a conversation to its owner, while it is live (params:
#: ``cid``, ``uid``, ``now``).
_OWNED = (C.c.id == _CID, C.c.user_id == _UID, live())


def owned_params(user_id: str, conversation_id: int, now: datetime) -> dict[str, Any]:
    """The parameters of :data:`_OWNED` (and so of every statement built on it)."""
    return {"cid": conversation_id, "uid": user_id, "now": now}


#: One live conversation of its owner (params: ``cid``, ``uid``, ``now``).
CONVERSATION_BY_ID: Select[Any] = select(*CONVERSATION_COLUMNS).where(*_OWNED)

#: The same, locking the row against concurrent appenders (pop / delete-after).
CONVERSATION_BY_ID_FOR_UPDATE: Select[Any] = CONVERSATION_BY_ID.with_for_update()


@cache
def conversations_query(*, paged: bool) -> Select[Any]:
    """Most recently active first; keyset on ``(updated_at, id)`` served by one index.

    Params: ``uid``, ``now``, ``lim`` and, when ``paged``, the cursor's ``ts`` and
    ``cursor_id``.
    """
    stmt = select(*CONVERSATION_COLUMNS).where(C.c.user_id == _UID, live())
    if paged:
        stmt = stmt.where(
            tuple_(C.c.updated_at, C.c.id)
            < tuple_(
                bindparam("ts", type_=UTCDateTime()), bindparam("cursor_id", type_=BigInteger())
            )
        )
    return stmt.order_by(C.c.updated_at.desc(), C.c.id.desc()).limit(_LIMIT)


def conversations_params(
    user_id: str, limit: int, cursor: tuple[datetime, int] | None, now: datetime
) -> dict[str, Any]:
    params: dict[str, Any] = {"uid": user_id, "lim": limit, "now": now}
    if cursor is not None:
        params["ts"], params["cursor_id"] = cursor
    return params


#: The fields :func:`update_conversation` may set, in the order its callers name them.
CONVERSATION_UPDATES = ("title", "metadata", "hold", "retention_seconds")
#: A new retention's seconds, bound (``NULL``: none) and cast, so PostgreSQL knows the type.
_RETENTION = "CAST(:set_retention_seconds AS INTEGER)"


@cache
def update_conversation(fields: tuple[str, ...], pg: bool) -> ReturningUpdate[Any]:
    """Set ``fields`` of one live conversation of its owner and return it: one prebuilt
    statement per set of fields (params: ``cid``, ``uid``, ``now`` and ``set_<field>``).

    A new ``retention_seconds`` also sets ``expires_at`` from the last activity, in the
    same statement (``NULL`` seconds, no retention: ``NULL``, never expires).
    """
    unknown = set(fields) - set(CONVERSATION_UPDATES)
    if unknown or not fields:
        raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")
    values: dict[str, Any] = {f: bindparam(f"set_{f}", type_=C.c[f].type) for f in fields}
    if "retention_seconds" in fields:
        add = pg_plus_seconds if pg else sqlite_plus_seconds
        values["expires_at"] = text(add("updated_at", _RETENTION))
    return update(C).where(*_OWNED).values(**values).returning(*CONVERSATION_COLUMNS)


def update_conversation_params(
    user_id: str, conversation_id: int, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The parameters of :func:`update_conversation` ``(tuple(values), pg)``."""
    sets = {f"set_{f}": v for f, v in values.items()}
    return {**owned_params(user_id, conversation_id, now), **sets}


#: Delete one live conversation of its owner (its messages by cascade), returning its id
#: (params: ``cid``, ``uid``, ``now``).
DELETE_CONVERSATION: ReturningDelete[Any] = delete(C).where(*_OWNED).returning(C.c.id)


def encode_cursor(updated_at: datetime, conversation_id: int) -> str:
    """The opaque cursor after a conversation: ``[isoformat, id]`` as compact JSON, base64.

    Written as a format string: an ISO timestamp and an integer need no JSON escaping, and
    ``json.dumps`` with its own separators builds an encoder per call (~5% of a listing).
    """
    raw = f'["{updated_at.isoformat()}",{conversation_id:d}]'
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Parse an opaque conversation cursor; a tampered one is a validation error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(stamp)
        if isinstance(ident, bool) or not isinstance(ident, int) or moment.tzinfo is None:
            raise ValueError
        if not -(2**63) <= ident < 2**63:  # no such id; SQLite's driver would overflow
            raise ValueError
        # Bound as UTC: year 1 at +14:00 (or 9999 at -14:00) has no UTC datetime.
        moment = moment.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor", "is not a cursor returned by this API") from None
    return moment, ident


# -------------------------------------------------------------------------- messages

# One round trip, atomic by itself: lock and bump the conversation (its row lock serialises
# concurrent appenders, so positions are gapless and unique), then insert every message
# at base+1..base+n. If the conversation is missing or not the user's, nothing happens.
_PG_APPEND_TEMPLATE = """
WITH conv AS (
    UPDATE conversations
       SET message_count = message_count + {n},
           updated_at = {next_ts},
           expires_at = {expires_at},
           title = COALESCE(title, :auto_title)
     WHERE id = :cid AND user_id = :uid AND {live}
 RETURNING id, user_id, message_count - {n} AS base, updated_at AS last
)
INSERT INTO messages (conversation_id, user_id, position, role, content, tool_calls,
                      tool_call_id, metadata, client_key, status, stream_heartbeat_at,
                      created_at)
SELECT conv.id, conv.user_id, conv.base + {values}, {created_at}
{source}
RETURNING id, position, created_at
"""
_PG_APPEND_BINDS = (
    bindparam("now", type_=UTCDateTime()),
    bindparam("auto_title", type_=String()),
    bindparam("cid", type_=BigInteger()),
    bindparam("uid", type_=String()),
)


#: Any number of messages, one array per column, so that the SQL (and its server-side
#: prepared plan) never changes with the batch size.
def _pg_append_sql(n: str, **parts: str) -> str:
    """The append template for ``n`` messages (SQL text), timed under the row lock."""
    return _PG_APPEND_TEMPLATE.format(
        n=n,
        next_ts=pg_next_timestamp("updated_at", ":now", n),
        # Retention counts from the last activity: this append.
        expires_at=pg_plus_seconds(":now", "retention_seconds"),
        live=live_sql(),
        **parts,
    )


_APPEND_RETURNS: dict[str, TypeEngine[Any]] = {
    "id": BigInteger(),
    "position": Integer(),
    "created_at": UTCDateTime(),
}

PG_APPEND: TextualSelect = (
    text(
        _pg_append_sql(
            ":n",
            # Message i of n gets the i-th of the n instants that end at the new updated_at.
            created_at="conv.last - (:n - v.ord) * interval '1 microsecond'",
            values="v.ord, v.role, v.content, CAST(v.tool_calls AS JSONB), v.tool_call_id,"
            " CAST(v.metadata AS JSONB), v.client_key, 'complete', NULL",
            source="""  FROM conv,
       unnest(CAST(:roles AS TEXT[]), CAST(:contents AS TEXT[]), CAST(:tool_calls AS TEXT[]),
              CAST(:tool_call_ids AS TEXT[]), CAST(:metas AS TEXT[]), CAST(:keys AS TEXT[]))
       WITH ORDINALITY AS v(role, content, tool_calls, tool_call_id, metadata, client_key, ord)
 ORDER BY v.ord""",
        )
    )
    .bindparams(
        *_PG_APPEND_BINDS,
        bindparam("n", type_=Integer()),
        *(
            bindparam(name, type_=ARRAY(Text()))
            for name in ("roles", "contents", "tool_calls", "tool_call_ids", "metas", "keys")
        ),
    )
    .columns(**_APPEND_RETURNS)
)

#: The common single message, with scalar parameters: dumping six one-element arrays
#: costs more client time than the statement takes on the server.
PG_APPEND_ONE: TextualSelect = (
    text(
        _pg_append_sql(
            "1",
            created_at="conv.last",
            values="1, :role, :content, CAST(:tool_calls AS JSONB), :tool_call_id,"
            " CAST(:metadata AS JSONB), :client_key, :status, :stream_heartbeat_at",
            source="  FROM conv",
        )
    )
    .bindparams(
        *_PG_APPEND_BINDS,
        bindparam("role", type_=String()),
        bindparam("content", type_=Text()),
        bindparam("tool_calls", type_=Text()),
        bindparam("tool_call_id", type_=String()),
        bindparam("metadata", type_=Text()),
        bindparam("client_key", type_=String()),
        bindparam("status", type_=String()),
        bindparam("stream_heartbeat_at", type_=UTCDateTime()),
    )
    .columns(**_APPEND_RETURNS)
)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def pg_append(
    user_id: str,
    conversation_id: int,
    messages: Sequence[MessageCreate],
    now: datetime,
    auto_title: str | None,
    *,
    status: str = "complete",
) -> tuple[TextualSelect, dict[str, Any]]:
    """The append statement for ``messages`` and its parameters.

    One message: :data:`PG_APPEND_ONE`; more: :data:`PG_APPEND`, one array per column so
    that the SQL (and its server-side prepared plan) never changes with the batch size.
    A ``streaming`` message (always one: ``begin_message``) starts its lease at ``now``.
    """
    if len(messages) == 1 or status != "complete":
        m = messages[0]
        return PG_APPEND_ONE, {
            "now": now,
            "auto_title": auto_title,
            "cid": conversation_id,
            "uid": user_id,
            "role": m.role.value,
            "content": m.content,
            "tool_calls": _json_text(m.tool_calls),
            "tool_call_id": m.tool_call_id,
            "metadata": _json_text(m.metadata),
            "client_key": m.key,
            "status": status,
            "stream_heartbeat_at": now if status == STREAMING else None,
        }
    return PG_APPEND, {
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


#: SQLite half of an append: reserve ``n`` positions of the conversation, returning the new
#: ``message_count``, its owner and the new ``updated_at``: the last of ``n`` never-tying
#: instants, the messages' ``created_at`` (params: ``cid``, ``uid`` or None for "whoever
#: owns it", the ORM's case, ``n``, ``now``, ``auto_title``).
SQLITE_BUMP_CONVERSATION: TextualSelect = (
    text(
        "UPDATE conversations"
        " SET message_count = message_count + :n,"
        f" updated_at = {sqlite_next_timestamp('updated_at', ':now', ':n')},"
        f" expires_at = {sqlite_plus_seconds(':now', 'retention_seconds')},"
        " title = COALESCE(title, :auto_title)"
        f" WHERE id = :cid AND (:uid IS NULL OR user_id = :uid) AND {live_sql()}"
        " RETURNING message_count, user_id, updated_at"
    )
    .bindparams(
        bindparam("cid", type_=BigInteger()),
        bindparam("uid", type_=String()),
        bindparam("n", type_=Integer()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("auto_title", type_=String()),
    )
    .columns(message_count=Integer(), user_id=String(), updated_at=UTCDateTime())
)

_ROW_COLUMNS = (
    "conversation_id",
    "user_id",
    "position",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "metadata",
    "client_key",
    "status",
    "stream_heartbeat_at",
    "created_at",
)

#: SQLite half of an append: one row of :func:`message_rows` (run as executemany).
INSERT_MESSAGE: Insert = insert(M).values(
    {name: bindparam(name, type_=M.c[name].type) for name in _ROW_COLUMNS}
)
#: The same for a single message, returning its id (one statement instead of two).
INSERT_ONE_MESSAGE: ReturningInsert[Any] = INSERT_MESSAGE.returning(M.c.id)

#: The ids of the messages after ``base`` in position order (params: ``cid``, ``base``).
NEW_MESSAGE_IDS: Select[Any] = (
    select(M.c.id, M.c.position)
    .where(
        M.c.conversation_id == bindparam("cid", type_=BigInteger()),
        M.c.position > bindparam("base", type_=Integer()),
    )
    .order_by(M.c.position)
)


def message_rows(
    user_id: str,
    conversation_id: int,
    base: int,
    messages: Sequence[MessageCreate],
    last: datetime,
    status: str = "complete",
) -> list[dict[str, Any]]:
    """The stored rows of an append at ``base+1..``; times end at ``last``, 1 µs apart."""
    n = len(messages)
    heartbeat = last if status == STREAMING else None
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
            "status": status,
            "stream_heartbeat_at": heartbeat,
            "created_at": last - timedelta(microseconds=n - i),
        }
        for i, m in enumerate(messages, start=1)
    ]


#: What the model's history window needs of a message (``get_history``): the chat format,
#: the position to page on, and the (lease-aware) status it leaves streaming replies out by.
WINDOW_COLUMNS = (
    M.c.role,
    M.c.content,
    M.c.tool_calls,
    M.c.tool_call_id,
    M.c.position,
    STATUS,
)


@cache
def messages_query(
    *, after: bool, before: bool, descending: bool, limited: bool, window: bool = False
) -> Select[Any]:
    """A conversation's messages by position: an index range scan on (conversation_id, position).

    Params: ``cid``, ``uid``, ``now``, ``stale`` (the streaming lease's cutoff) and, as
    flagged, ``after``, ``before``, ``lim``. An expired conversation has no messages (an
    uncorrelated check, evaluated once). ``window`` selects only :data:`WINDOW_COLUMNS`
    (same rows, same scan).
    """
    alive = exists().where(C.c.id == _CID, C.c.user_id == _UID, live())
    columns = WINDOW_COLUMNS if window else MESSAGE_COLUMNS
    stmt = select(*columns).where(M.c.conversation_id == _CID, M.c.user_id == _UID, alive)
    if after:
        stmt = stmt.where(M.c.position > bindparam("after", type_=Integer()))
    if before:
        stmt = stmt.where(M.c.position < bindparam("before", type_=Integer()))
    stmt = stmt.order_by(M.c.position.desc() if descending else M.c.position)
    if limited:
        stmt = stmt.limit(_LIMIT)
    return stmt


def messages_params(
    user_id: str,
    conversation_id: int,
    now: datetime,
    *,
    after: int | None = None,
    before: int | None = None,
    descending: bool = False,
    limit: int | None = None,
    window: bool = False,
    stale: datetime | None = None,
) -> tuple[Select[Any], dict[str, Any]]:
    """The prebuilt statement for these options, and its parameters (``stale``: the lease
    cutoff, :func:`stale_before` with the configured lease if not given)."""
    stmt = messages_query(
        after=after is not None,
        before=before is not None,
        descending=descending,
        limited=limit is not None,
        window=window,
    )
    params: dict[str, Any] = {
        "cid": conversation_id,
        "uid": user_id,
        "now": now,
        "stale": stale or stale_before(now=now),
    }
    if after is not None:
        params["after"] = after
    if before is not None:
        params["before"] = before
    if limit is not None:
        params["lim"] = limit
    return stmt, params


# ------------------------------------------------------------------ streamed replies

#: The PostgreSQL channel that every change of a streamed reply is announced on (payload:
#: the message id), so that followers wake up instead of polling.
STREAM_CHANNEL = "convostore_stream"


@cache
def stream_message(*, in_conversation: bool, lock: bool) -> Select[Any]:
    """One message of its owner with what the streaming writes check: the stored status
    (``stored_status``; ``status`` is the lease-aware one) and the content's length.

    Params: ``mid``, ``uid``, ``stale``, ``now`` and, if ``in_conversation``, ``cid``.
    A message of an expired conversation is not found. ``lock`` takes the row lock on
    PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises).
    """
    alive = (
        exists()
        .where(C.c.id == M.c.conversation_id, C.c.user_id == M.c.user_id, live())
        .correlate(M)
    )
    stmt = select(
        *MESSAGE_COLUMNS,
        M.c.status.label("stored_status"),
        func.length(M.c.content).label("length"),
    ).where(
        M.c.id == bindparam("mid", type_=BigInteger()),
        M.c.user_id == bindparam("uid", type_=String()),
        alive,
    )
    if in_conversation:
        stmt = stmt.where(M.c.conversation_id == bindparam("cid", type_=BigInteger()))
    return stmt.with_for_update(of=M) if lock else stmt


#: Mark a conversation's streaming reply interrupted once its lease has run out (params:
#: ``cid``, ``uid``, ``stale``); served by the partial index ``uq_messages_one_streaming``.
INTERRUPT_STALE: ReturningUpdate[Any] = (
    update(M)
    .where(
        M.c.conversation_id == bindparam("cid", type_=BigInteger()),
        M.c.user_id == bindparam("uid", type_=String()),
        M.c.status == _STREAMING_SQL,
        M.c.stream_heartbeat_at < bindparam("stale", type_=UTCDateTime()),
    )
    .values(status=_INTERRUPTED_SQL)
    .returning(M.c.id)  # rows, so that it runs on the driver like the other hot statements
)


@cache
def insert_chunk(pg: bool) -> Insert:
    """Store one delta once: a retried ``(message_id, seq)`` inserts nothing and returns no
    row (params: ``message_id``, ``uid``, ``seq``, ``text``, ``created_at``)."""
    ins = postgresql.insert(K) if pg else sqlite.insert(K)
    return (
        ins.values(
            message_id=bindparam("message_id", type_=BigInteger()),
            user_id=bindparam("uid", type_=String()),
            seq=bindparam("seq", type_=Integer()),
            text=bindparam("text", type_=Text()),
            created_at=bindparam("created_at", type_=UTCDateTime()),
        )
        .on_conflict_do_nothing(index_elements=[K.c.message_id, K.c.seq])
        .returning(K.c.seq)
    )


#: The stored text of one delta (params: ``mid``, ``uid``, ``seq``).
CHUNK_TEXT: Select[Any] = select(K.c.text).where(
    K.c.message_id == bindparam("mid", type_=BigInteger()),
    K.c.user_id == bindparam("uid", type_=String()),
    K.c.seq == bindparam("seq", type_=Integer()),
)

_JOINED_CHUNKS = {
    "postgresql": "(SELECT string_agg(text, '' ORDER BY seq) FROM message_chunks"
    " WHERE message_id = :mid AND user_id = :uid)",
    # SQLite before 3.44 has no ORDER BY inside an aggregate: it concatenates in the
    # order of the ordered subquery it reads.
    "sqlite": "(SELECT group_concat(text, '') FROM (SELECT text FROM message_chunks"
    " WHERE message_id = :mid AND user_id = :uid ORDER BY seq))",
}


@cache
def add_chunk_to_content(pg: bool) -> TextClause:
    """Keep ``content`` equal to the chunks joined in seq order, renewing the lease.

    A delta after every stored one (the usual case) is appended; one that fills a gap
    (out of order) has the content rebuilt from the chunks. Params: ``mid``, ``uid``,
    ``seq``, ``text``, ``now``.
    """
    joined = _JOINED_CHUNKS["postgresql" if pg else "sqlite"]
    return text(
        "UPDATE messages SET content = CASE WHEN EXISTS (SELECT 1 FROM message_chunks"
        " WHERE message_id = :mid AND user_id = :uid AND seq > :seq)"
        f" THEN {joined} ELSE content || :text END,"
        " stream_heartbeat_at = :now WHERE id = :mid AND user_id = :uid RETURNING id"
    ).bindparams(
        bindparam("mid", type_=BigInteger()),
        bindparam("uid", type_=String()),
        bindparam("seq", type_=Integer()),
        bindparam("text", type_=Text()),
        bindparam("now", type_=UTCDateTime()),
    )


@cache
def end_stream(fields: tuple[str, ...]) -> ReturningUpdate[Any]:
    """Set a streamed reply's final status (and, on finish, its final fields): one
    prebuilt statement per set of ``fields``; params from :func:`end_stream_params`."""
    values = {f: bindparam(f"end_{f}", type_=M.c[f].type) for f in fields}
    where = M.c.id == bindparam("mid", type_=BigInteger())
    return update(M).where(where).values(**values).returning(M.c.id)


def end_stream_params(message_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`end_stream` ``(tuple(values))``."""
    return {"mid": message_id, **{f"end_{f}": v for f, v in values.items()}}


#: A reply's chunks after ``:after`` in seq order (params: ``mid``, ``uid``, ``after``,
#: ``lim``).
CHUNKS_AFTER: Select[Any] = (
    select(K.c.seq, K.c.text)
    .where(
        K.c.message_id == bindparam("mid", type_=BigInteger()),
        K.c.user_id == bindparam("uid", type_=String()),
        K.c.seq > bindparam("after", type_=Integer()),
    )
    .order_by(K.c.seq)
    .limit(bindparam("lim", type_=Integer()))
)

#: Wake the followers of a reply (PostgreSQL; delivered when the transaction commits).
PG_NOTIFY: TextClause = text(f"SELECT pg_notify('{STREAM_CHANNEL}', :payload)")


# ------------------------------------------------------------------ compiled reads


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A prebuilt statement compiled once for a dialect, to run on the DB-API cursor.

    The hot paths skip SQLAlchemy's per-execution work (compiled-cache lookup, result
    metadata, Row objects) but keep its SQL and its type processing: parameters and
    selected columns go through the same bind/result processors SQLAlchemy would apply.
    """

    sql: str
    positional: tuple[str, ...] | None
    defaults: dict[str, Any]  # values SQLAlchemy bound itself, e.g. SQLite's "OFFSET 0"
    binds: dict[str, Any]
    fields: tuple[str, ...]  # output names, one per selected column
    converters: tuple[tuple[int, str, Any], ...]  # (index, name, result processor)
    literals: tuple[str, ...] = ()  # integer parameters written into the SQL (LIMIT)
    #: Generated from fields and converters (:func:`_readers`): rows to records, to tuples.
    readers: tuple[Callable[[Any], Any], Callable[[Any], Any]] = (list, list)
    #: Generated from the binds (:func:`_binder`): a call's values to the driver's.
    binder: Callable[[dict[str, Any]], Any] = dict
    #: Whether it returns rows (an INSERT, UPDATE or DELETE without RETURNING does not).
    rows: bool = True
    #: Rows to instances of a model, generated per model on first use (:meth:`models`).
    model_readers: dict[type[Any], Callable[[Any], list[Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def statement(self, values: dict[str, Any]) -> str:
        """The SQL to send for ``values``: :attr:`sql` with each of :attr:`literals`
        written in as an integer, as SQLAlchemy renders a ``literal_execute`` parameter."""
        if not self.literals:
            return self.sql
        sql = self.sql
        for name in self.literals:
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", str(int(values[name])))
        return sql

    def params(self, values: dict[str, Any]) -> Any:
        """The driver's parameters for ``values``: each bound value through its type's
        bind processor, SQLAlchemy's own values where ``values`` gives none, as a dict
        (named style) or a list in :attr:`positional` order."""
        return self.binder(values)

    def params_many(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        binder = self.binder
        return [binder(row) for row in rows]

    def tuples(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """Rows as tuples in :attr:`fields` order, converted like SQLAlchemy would."""
        return self.readers[1](rows) if self.converters else rows

    def records(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Rows as dicts keyed by :attr:`fields`, converted like SQLAlchemy would."""
        return self.readers[0](rows)  # type: ignore[no-any-return]

    def models(self, cls: type[_M], rows: Sequence[Sequence[Any]]) -> list[_M]:
        """Rows as ``cls`` instances: ``construct_all(cls, self.records(rows))`` in one
        generated loop, without the list of dicts in between (the statement must select
        exactly the model's fields)."""
        reader = self.model_readers.get(cls)
        if reader is None:
            reader = self.model_readers[cls] = _model_reader(cls, self.fields, self.converters)
        return reader(rows)


def _empty_records(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{} for _ in rows]


def _readers(
    fields: tuple[str, ...], converters: tuple[tuple[int, str, Any], ...]
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """The row readers of one statement: rows to dicts, and rows to converted tuples.

    Generated once per statement as one comprehension that unpacks each row into locals
    and writes a dict (or tuple) display, with each column's result processor inlined:
    half the Python time per row of a loop over fields and processors (~0.7 against
    1.7 us a message row), and reading a 1,000-message conversation is mostly that time.
    """
    code = _RowCode(fields, converters)
    record, row = code.record(code.called), ", ".join(code.called) + code.comma
    source = (
        f"def records(rows):\n    return [{record} for ({code.target}) in rows]\n"
        f"def tuples(rows):\n    return [({row}) for ({code.target}) in rows]\n"
    )
    exec(compile(source, "<convostore row readers>", "exec"), code.namespace)  # noqa: S102
    return code.namespace["records"], code.namespace["tuples"]


class _RowCode:
    """What the generated row readers write per column: the row unpacked into locals
    ``v0, v1, ...`` (:attr:`target`), and each value's expression with its result
    processor ``p<i>`` called (:attr:`called`), or its ``inline`` form written in where the
    processor has one (:attr:`inlined`; see ``types.UTCDateTime``); :attr:`namespace`
    holds the names those expressions use."""

    def __init__(
        self, fields: tuple[str, ...], converters: tuple[tuple[int, str, Any], ...]
    ) -> None:
        self.fields = fields
        names = [f"v{i}" for i in range(len(fields))]
        self.comma = "," if len(names) == 1 else ""  # a one-element tuple display
        self.target = ", ".join(names) + self.comma
        processors = {i: convert for i, _, convert in converters}
        self.namespace: dict[str, Any] = {f"p{i}": p for i, p in processors.items()}
        self.called: list[str] = []
        self.inlined: list[str] = []
        for i, v in enumerate(names):
            convert = processors.get(i)
            if convert is None:
                self.called.append(v)
                self.inlined.append(v)
                continue
            self.called.append(f"None if {v} is None else p{i}({v})")
            inline = getattr(convert, "inline", None)
            if inline is None:
                self.inlined.append(self.called[-1])
                continue
            self.namespace.update(convert.inline_names)
            self.inlined.append(f"None if {v} is None else ({inline.format(v=v, p=f'p{i}')})")

    def record(self, values: list[str]) -> str:
        """A dict display of ``values`` keyed by the fields."""
        pairs = ", ".join(f"{n!r}: {x}" for n, x in zip(self.fields, values, strict=True))
        return "{" + pairs + "}"


def _model_reader(
    cls: type[Any], fields: tuple[str, ...], converters: tuple[tuple[int, str, Any], ...]
) -> Callable[[Any], list[Any]]:
    """The generated loop behind :meth:`CompiledStatement.models`: each row unpacked and
    converted as in :func:`_readers` (:class:`_RowCode`), its dict handed to ``cls`` as
    :func:`~convostore.schemas.construct_all` fills an instance (``schemas.trusted_parts``)."""
    if set(fields) != set(cls.model_fields) or len(fields) != len(cls.model_fields):
        raise TypeError(f"{cls.__name__} needs exactly its fields selected, not {fields}")
    code = _RowCode(fields, converters)
    namespace = {**code.namespace, **trusted_parts(cls)}
    source = (
        "def models(rows):\n"
        "    out = []\n"
        "    append = out.append\n"
        f"    for ({code.target}) in rows:\n"
        "        try:\n"
        f"            values = {code.record(code.inlined)}\n"
        "        except ValueError:  # a value the inlined conversion does not cover\n"
        f"            values = {code.record(code.called)}\n"
        "        obj = new(cls)\n"
        "        set_dict(obj, '__dict__', values)\n"
        "        set_fields(obj, fields_set)\n"
        "        set_extra(obj, None)\n"
        "        set_private(obj, None)\n"
        "        append(obj)\n"
        "    return out\n"
    )
    exec(compile(source, f"<convostore {cls.__name__} reader>", "exec"), namespace)  # noqa: S102
    return namespace["models"]  # type: ignore[no-any-return]


def _binder(
    names: Sequence[str], positional: bool, defaults: dict[str, Any], binds: dict[str, Any]
) -> Callable[[dict[str, Any]], Any]:
    """The parameter binder of one statement, generated once: a dict (or list) display
    with each value looked up and processed in place, where a loop over the statement's
    binds and its defaults costs ~10 bytecodes a parameter (~6% of an append's Python).

    ``names``: the statement's bind names, in ``positional`` order where that is its
    style. A name SQLAlchemy bound a value to itself (:attr:`CompiledStatement.defaults`)
    takes that value unless the call gives one; any other name must be given.
    """
    namespace: dict[str, Any] = {}
    values: dict[str, str] = {}
    once: list[str] = []  # a processed value the SQL uses more than once: processed once
    for i, name in enumerate(dict.fromkeys(names)):
        value = f"values[{name!r}]"
        if name in defaults:
            namespace[f"d{i}"] = defaults[name]
            value = f"values.get({name!r}, d{i})"
        if (processor := binds.get(name)) is not None:
            namespace[f"p{i}"] = processor
            value = f"p{i}({value})"
            if names.count(name) > 1:
                once.append(f"    x{i} = {value}\n")
                value = f"x{i}"
        values[name] = value
    if positional:
        display = "[" + ", ".join(values[name] for name in names) + "]"
    else:
        display = "{" + ", ".join(f"{name!r}: {value}" for name, value in values.items()) + "}"
    source = f"def binder(values):\n{''.join(once)}    return {display}\n"
    exec(compile(source, "<convostore parameter binder>", "exec"), namespace)  # noqa: S102
    return namespace["binder"]  # type: ignore[no-any-return]


#: Output names that differ from column names (``MessagePublic.key`` is ``client_key``).
_FIELD_NAMES = {"client_key": "key"}
# Keyed by the dialect instance (an engine's, with its own serializers) and the statement,
# both held by the cache so that neither id can be reused by another object. It grows with
# the engines a process creates, which are few.
_COMPILED: dict[Dialect, dict[int, tuple[Any, CompiledStatement]]] = {}


def compiled(
    stmt: Select[Any] | TextualSelect | TextClause | Insert | Update | Delete, dialect: Dialect
) -> CompiledStatement:
    """``stmt`` compiled for ``dialect``, once (the hot statements are module-level objects)."""
    cache = _COMPILED.setdefault(dialect, {})
    entry = cache.get(id(stmt))
    if entry is not None and entry[0] is stmt:
        return entry[1]
    result = stmt.compile(dialect=dialect)
    # Keyed by the name in the SQL: an anonymous bind (a literal in ``.values()``) has an
    # internal key until compilation names it (``message_count_1``).
    named = result.bind_names
    binds = {
        named.get(bp, bp.key): bp.type._cached_bind_processor(dialect)
        for bp in result.binds.values()
    }
    # A SELECT's columns, or the RETURNING columns of an INSERT / UPDATE / DELETE.
    columns = list(
        stmt.selected_columns
        if isinstance(stmt, Select | TextualSelect)
        else getattr(stmt, "exported_columns", ())
    )
    fields = tuple(_FIELD_NAMES.get(str(c.key), str(c.key)) for c in columns)
    converters = tuple(
        (i, fields[i], proc)
        for i, c in enumerate(columns)
        if (proc := c.type._cached_result_processor(dialect, None)) is not None
    )
    literals = tuple(named.get(bp, bp.key) for bp in result.literal_execute_params)
    positional = (
        tuple(n for n in result.positiontup if n not in literals) if result.positiontup else None
    )
    defaults = {k: v for k, v in result.params.items() if v is not None}
    names = positional if positional is not None else [n for n in binds if n not in literals]
    query = CompiledStatement(
        str(result),
        positional,
        defaults,
        binds,
        fields,
        converters,
        literals,
        _readers(fields, converters) if fields else (_empty_records, list),
        _binder(names, positional is not None, defaults, binds),
        rows=bool(fields) or not isinstance(stmt, Insert | Update | Delete),
    )
    cache[id(stmt)] = (stmt, query)
    return query


#: The conversation's message under one idempotency key, the lookup before a keyed append
#: (params: ``cid``, ``uid``, ``key``, ``stale``).
MESSAGE_BY_KEY: Select[Any] = select(*MESSAGE_COLUMNS).where(
    M.c.conversation_id == _CID,
    M.c.user_id == _UID,
    M.c.client_key == bindparam("key", type_=String()),
)


def select_messages_by_key(user_id: str, conversation_id: int, keys: Sequence[str]) -> Select[Any]:
    """Messages of the conversation under these idempotency keys, for a batch (param:
    ``stale``; one key: :data:`MESSAGE_BY_KEY`)."""
    return select(*MESSAGE_COLUMNS).where(
        M.c.conversation_id == conversation_id,
        M.c.user_id == user_id,
        M.c.client_key.in_(keys),
    )


_MID = bindparam("mid", type_=BigInteger())

#: One message of a live conversation of its owner, by id (params: ``mid``, ``cid``,
#: ``uid``, ``now``, ``stale``).
MESSAGE_BY_ID: Select[Any] = select(*MESSAGE_COLUMNS).where(
    M.c.id == _MID,
    M.c.conversation_id == _CID,
    M.c.user_id == _UID,
    exists().where(C.c.id == _CID, C.c.user_id == _UID, live()),
)


# The edits of a conversation's messages (pop, delete after, delete one): prebuilt, as the
# appends are, and run in the write's transaction after the conversation's row is locked.
_KEEP = bindparam("keep", type_=Integer())
_POSITION = bindparam("position", type_=Integer())
_COUNT = bindparam("count", type_=Integer())

#: Move the counter back to ``keep`` where it is beyond, the activity now (params: ``cid``,
#: ``uid``, ``now``, ``keep``).
TRUNCATE_CONVERSATION: Update = (
    update(C).where(*_OWNED, C.c.message_count > _KEEP).values(message_count=_KEEP, updated_at=NOW)
)

#: Remove the tail after ``keep``, returning it (params: ``cid``, ``keep``, ``stale``).
DELETE_MESSAGES_AFTER: ReturningDelete[Any] = (
    delete(M).where(M.c.conversation_id == _CID, M.c.position > _KEEP).returning(*MESSAGE_COLUMNS)
)

#: Remove one message, returning it (params: ``cid``, ``mid``, ``stale``).
DELETE_MESSAGE: ReturningDelete[Any] = (
    delete(M).where(M.c.conversation_id == _CID, M.c.id == _MID).returning(*MESSAGE_COLUMNS)
)

#: Move the messages after a deleted ``position`` down by one, keeping positions gapless
#: (params: ``cid``, ``position``, ``count``, the highest position). Two steps, so that no
#: row ever takes a position another still holds (a unique constraint is checked row by
#: row): past ``count``, then back to ``position..count-1``.
CLOSE_GAP: tuple[Update, Update] = (
    update(M)
    .where(M.c.conversation_id == _CID, M.c.position > _POSITION)
    .values(position=M.c.position + _COUNT),
    update(M)
    .where(M.c.conversation_id == _CID, M.c.position > _COUNT)
    .values(position=M.c.position - _COUNT - 1),
)

#: One message fewer (a deleted one), its activity now (params: ``cid``, ``uid``, ``now``).
SHRINK_CONVERSATION: Update = (
    update(C).where(*_OWNED).values(message_count=C.c.message_count - 1, updated_at=NOW)
)


# ----------------------------------------------------------- export / import / stats (io.py)


def export_conversations(
    user_id: str | None, after_id: int | None, limit: int, now: datetime
) -> Select[Any]:
    """Live conversations by id (keyset), with the owner's ``created_at``, for export.

    The owner's ``created_at`` is convostore's own record; with the host's users table it is
    not ours to read, and is left out (null).
    """
    if users_table is None:
        stmt = select(*CONVERSATION_COLUMNS, null().label("user_created_at"))
    else:
        stmt = select(
            *CONVERSATION_COLUMNS, users_table.c.created_at.label("user_created_at")
        ).join(users_table, users_table.c.id == C.c.user_id)
    stmt = stmt.where(live(now))
    if user_id is not None:
        stmt = stmt.where(C.c.user_id == user_id)
    if after_id is not None:
        stmt = stmt.where(C.c.id > after_id)
    return stmt.order_by(C.c.id).limit(limit)


def count_conversations(user_id: str | None, now: datetime) -> Select[Any]:
    stmt = select(func.count()).select_from(C).where(live(now))
    return stmt.where(C.c.user_id == user_id) if user_id is not None else stmt


def conversation_exists(conversation_id: int) -> Select[Any]:
    """Any user's conversation with this id (import keeps ids and must not collide)."""
    return select(C.c.id, C.c.user_id, C.c.created_at).where(C.c.id == conversation_id)


def import_conversation(values: dict[str, Any]) -> Insert:
    """Insert a conversation exactly as exported (timestamps, counter, optionally its id)."""
    return insert(C).values(**values).returning(C.c.id)


def import_messages() -> Insert:
    """Insert messages exactly as exported (positions, timestamps, keys); executemany."""
    return insert(M)


def pg_advance_id_sequences() -> list[TextClause]:
    """Move the conversations' and messages' id sequences to at least ``:top``.

    Never backwards (a concurrent writer may hold a newer value), so safe to run after
    each imported conversation while the service is writing too.
    """
    return [
        text(
            "SELECT setval(seq, GREATEST(CAST(:top AS BIGINT), pg_sequence_last_value(seq)))"
            f" FROM (SELECT pg_get_serial_sequence('{table}', 'id')::regclass AS seq) s"
        )
        for table in ("conversations", "messages")
    ]


def table_counts() -> Select[Any]:
    """Users, conversations and messages, in one statement.

    Users are convostore's own records, or with the host's table the users who have chats.
    """
    users = (
        select(func.count(C.c.user_id.distinct()))
        if users_table is None
        else select(func.count()).select_from(users_table)
    )
    return select(
        users.scalar_subquery().label("users"),
        select(func.count()).select_from(C).scalar_subquery().label("conversations"),
        select(func.count()).select_from(M).scalar_subquery().label("messages"),
    )


#: Report label -> table, for the tables convostore owns (the host's users table is the
#: host's: its size is not convostore's to report).
_OWN_TABLES = {
    **({"users": USERS_TABLE} if OWNS_USERS else {}),
    "conversations": "conversations",
    "messages": "messages",
}
_LABELS = ", ".join(f"('{label}', '{table}')" for label, table in _OWN_TABLES.items())


def pg_table_sizes() -> TextClause:
    """Total on-disk size (table + indexes + TOAST) of each convostore table, in bytes."""
    return text(
        f"WITH v(label, t) AS (VALUES {_LABELS})"
        " SELECT label, pg_total_relation_size(to_regclass(t)) FROM v"
    )


def sqlite_table_sizes() -> TextClause:
    """Bytes per table including its indexes; needs SQLite's ``dbstat`` (may be absent)."""
    return text(
        f"WITH v(label, t) AS (VALUES {_LABELS}) SELECT v.label, SUM(s.pgsize) FROM v"
        " JOIN sqlite_master m ON m.tbl_name = v.t JOIN dbstat s ON m.name = s.name"
        " GROUP BY v.label"
    )


def pg_database_size() -> TextClause:
    return text("SELECT pg_database_size(current_database())")


# ------------------------------------------------------------------ full-text search

#: Around each match in a snippet.
HIGHLIGHT = "**"
_HEADLINE_OPTIONS = f"StartSel={HIGHLIGHT}, StopSel={HIGHLIGHT}, MaxWords=24, MinWords=8"
#: Hit kinds in the order ties are broken (a title before its conversation's messages).
SEARCH_KINDS = ("title", "message")
SEARCH_FIELDS = tuple(f"m_{c.key}" for c in MESSAGE_COLUMNS)

# Rank on SQLite: the matches in the text (FTS5's highlight() marks each one), saturating
# and damped by length, as BM25 does, but without BM25's collection statistics (document
# frequencies, average length): those count every user's rows, and one user's ranks must
# not depend on another's messages. PostgreSQL's ts_rank_cd already looks at one text only.
# ``{h}`` is the text as highlight() returns it, one char(1) before each match: a column
# of a subquery with a LIMIT (SQLite computes it once per row, not once per mention).
_SQLITE_MATCHES = "(length({h}) - length(replace({h}, char(1), '')))"


def _sqlite_highlight(fts: str) -> str:
    return f"highlight({fts}, 0, char(1), '')"


def _sqlite_rank(h: str) -> str:
    n = _SQLITE_MATCHES.format(h=h)
    return f"({n} * 1.0 / (1.0 + {n} + (length({h}) - {n}) / 500.0))"


def _search_filters(
    alias: str, time_col: str, *, conversation: bool, since: bool, until: bool
) -> str:
    parts = []
    if conversation:
        parts.append(f" AND {alias}.{'id' if alias == 'c' else 'conversation_id'} = :cid")
    if since:
        parts.append(f" AND {alias}.{time_col} >= :since")
    if until:
        parts.append(f" AND {alias}.{time_col} < :until")
    return "".join(parts)


@cache
def search_query(
    pg: bool,
    config: str,
    *,
    phrases: bool,
    prefixes: bool,
    conversation: bool,
    roles: tuple[str, ...] | None,
    since: bool,
    until: bool,
    paged: bool,
) -> TextualSelect:
    """One page of a user's search hits, best first; the snippets for that page only.

    Every branch is filtered by ``user_id`` before anything is ranked or counted. Only the
    newest ``cand`` matching messages are ranked, so a word in every message costs what a
    word in ``cand`` of them does. Params: ``uid``, ``lim``, ``cand``, the query
    (PostgreSQL: ``w`` websearch text and/or ``p`` prefix tsquery; SQLite: ``q`` and
    ``qt``, FTS5 queries of quoted phrases for messages and titles, and ``qs`` for the
    snippets), and as flagged
    ``cid``, ``since``, ``until`` and the cursor's ``score``, ``kind``, ``hit_id``.
    ``roles`` (a sorted tuple of valid role names, written into the SQL) leaves title
    hits out.
    """
    mfilter = _search_filters(
        "m", "created_at", conversation=conversation, since=since, until=until
    )
    if roles is not None:
        mfilter += " AND m.role IN ({})".format(", ".join(f"'{r}'" for r in roles))
    cfilter = _search_filters(
        "c", "updated_at", conversation=conversation, since=since, until=until
    )
    kind_message, kind_title = SEARCH_KINDS.index("message"), SEARCH_KINDS.index("title")
    if pg:
        cfg = f"'{config}'::regconfig"
        # Written out where it is used, not in a CTE: planned with the query's value (see
        # db.custom_plans), PostgreSQL knows from its statistics how common the words are
        # and picks the plan: the user's newest messages, filtered by the words, for a
        # common word (it stops at :cand matches); the (user_id, search_vector) index for
        # a rare one.
        parts = [f"websearch_to_tsquery({cfg}, :w)"] * phrases + [f"to_tsquery({cfg}, :p)"] * (
            prefixes
        )
        query = f"({' && '.join(parts)})"
        title_vector = f"to_tsvector({cfg}, coalesce(c.title, ''))"
        head = "WITH"
        message_hits = f"""
  SELECT {kind_message} AS kind, cand.id AS hit_id, cand.conversation_id AS cid,
         CAST(ts_rank_cd(cand.search_vector, {query}) AS DOUBLE PRECISION) AS score
    FROM (SELECT m.id, m.conversation_id, m.search_vector
            FROM messages AS m JOIN conversations AS mc ON mc.id = m.conversation_id
           WHERE m.user_id = :uid AND m.search_vector @@ {query}{mfilter} AND {live_sql("mc")}
           ORDER BY m.created_at DESC, m.id DESC
           LIMIT :cand) AS cand"""
        title_hits = f"""
  SELECT {kind_title}, c.id, c.id,
         CAST(ts_rank_cd({title_vector}, {query}) AS DOUBLE PRECISION)
    FROM conversations AS c
   WHERE c.user_id = :uid AND {title_vector} @@ {query}{cfilter} AND {live_sql("c")}"""
        snippet = f"""CASE page.kind
           WHEN {kind_message} THEN ts_headline({cfg}, m.content, {query}, '{_HEADLINE_OPTIONS}')
           ELSE ts_headline({cfg}, c.title, {query}, '{_HEADLINE_OPTIONS}') END"""
    else:
        head = "WITH"
        # :q and :qt name the owner (the FTS5 tables' owner column), so FTS5 walks this
        # user's matches only, newest (highest rowid) first, and stops at :cand of them.
        # The snippets' :qs leaves the owner out: for one row by rowid it would only make
        # FTS5 read that user's whole posting list again.
        message_hits = f"""
  SELECT {kind_message} AS kind, cand.id AS hit_id, cand.conversation_id AS cid,
         {_sqlite_rank("cand.h")} AS score
    FROM (SELECT m.id, m.conversation_id, {_sqlite_highlight("messages_fts")} AS h
            FROM messages_fts CROSS JOIN messages AS m ON m.id = messages_fts.rowid
                 JOIN conversations AS mc ON mc.id = m.conversation_id
           WHERE messages_fts MATCH :q AND m.user_id = :uid{mfilter} AND {live_sql("mc")}
           ORDER BY messages_fts.rowid DESC
           LIMIT :cand) AS cand"""
        title_hits = f"""
  SELECT {kind_title}, cand.id, cand.id, {_sqlite_rank("cand.h")}
    FROM (SELECT c.id, {_sqlite_highlight("conversations_fts")} AS h
            FROM conversations_fts CROSS JOIN conversations AS c ON c.id = conversations_fts.rowid
           WHERE conversations_fts MATCH :qt AND c.user_id = :uid{cfilter} AND {live_sql("c")}
           ORDER BY conversations_fts.rowid DESC
           LIMIT :cand) AS cand"""
        snippet = f"""CASE page.kind
           WHEN {kind_message} THEN (SELECT snippet(messages_fts, 0, '{HIGHLIGHT}',
                '{HIGHLIGHT}', '…', 16) FROM messages_fts
                WHERE messages_fts MATCH :qs AND messages_fts.rowid = page.hit_id)
           ELSE (SELECT snippet(conversations_fts, 0, '{HIGHLIGHT}', '{HIGHLIGHT}', '…', 16)
                FROM conversations_fts
                WHERE conversations_fts MATCH :qs AND conversations_fts.rowid = page.hit_id)
           END"""
    hits = message_hits if roles is not None else f"{message_hits}\n  UNION ALL{title_hits}"
    # Best first; ties by kind, then newest id: (-score, kind, -id) ascending.
    after = " WHERE (-score, kind, -hit_id) > (-:score, :kind, -:hit_id)" if paged else ""
    message_cols = ", ".join(f"m.{c.name} AS m_{c.key}" for c in MESSAGE_COLUMNS)
    sql = f"""{head}
hits AS ({hits}
),
page AS (
  SELECT kind, hit_id, cid, score FROM hits{after}
   ORDER BY score DESC, kind, hit_id DESC
   LIMIT :lim
)
SELECT page.kind, page.score, page.hit_id, c.id AS conversation_id,
       c.title AS conversation_title, {message_cols},
       {snippet} AS snippet
  FROM page
  JOIN conversations AS c ON c.id = page.cid AND c.user_id = :uid
  LEFT JOIN messages AS m ON m.id = CASE page.kind WHEN {kind_message} THEN page.hit_id
       ELSE (SELECT n.id FROM messages AS n WHERE n.conversation_id = page.cid
              ORDER BY n.position DESC LIMIT 1) END
 ORDER BY page.score DESC, page.kind, page.hit_id DESC"""
    binds: list[BindParameter[Any]] = [
        bindparam("uid", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("lim", type_=Integer()),
        bindparam("cid", type_=BigInteger()),
        bindparam("since", type_=UTCDateTime()),
        bindparam("until", type_=UTCDateTime()),
        bindparam("score", type_=Float()),
        bindparam("kind", type_=Integer()),
        bindparam("hit_id", type_=BigInteger()),
        bindparam("w", type_=Text()),
        bindparam("p", type_=Text()),
        bindparam("q", type_=Text()),
        bindparam("qt", type_=Text()),
        bindparam("qs", type_=Text()),
        bindparam("cand", type_=Integer()),
    ]
    used = [b for b in binds if f":{b.key}" in sql]
    return (
        text(sql)
        .bindparams(*used)
        .columns(
            # Untyped numbers come back as the driver reads them (psycopg: float for
            # DOUBLE PRECISION; SQLAlchemy's Float would insist on knowing the column type).
            column("kind"),
            column("score"),
            column("hit_id"),
            column("conversation_id"),
            column("conversation_title", String()),
            *(column(f"m_{c.key}", c.type) for c in MESSAGE_COLUMNS),
            column("snippet", Text()),
        )
    )


def search_terms(
    pg: bool, user_id: str, phrases: Sequence[str], prefixes: Sequence[str]
) -> dict[str, str]:
    """The query parameters for :func:`search_query`, from parsed (already safe) parts.

    Nothing the user typed is read as syntax: PostgreSQL gets every phrase quoted for
    ``websearch_to_tsquery`` (which never raises; phrases hold no ``"``) and prefixes, which
    are letters and digits only, as ``'tok':*``; SQLite gets FTS5 strings ``"..."`` with
    any ``"`` doubled (prefixes as ``"tok"*``), all of which must match in the text column,
    ANDed with the user's owner token (letters and digits only).
    """
    if pg:
        params = {}
        if phrases:
            params["w"] = " ".join(f'"{p}"' for p in phrases)
        if prefixes:
            params["p"] = " & ".join(f"'{p}':*" for p in prefixes)
        return params
    quoted = ['"{}"'.format(p.replace('"', '""')) for p in phrases]
    quoted += ['"{}"*'.format(p.replace('"', '""')) for p in prefixes]
    terms, owner = " ".join(quoted), f'{OWNER_COLUMN} : "{owner_token(user_id)}"'
    return {
        "q": f"{owner} AND content : ({terms})",
        "qt": f"{owner} AND title : ({terms})",
        "qs": terms,
    }


def encode_search_cursor(score: float, kind: int, hit_id: int) -> str:
    raw = json.dumps([score, kind, hit_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_search_cursor(cursor: str) -> tuple[float, int, int]:
    """Parse an opaque search cursor; a tampered one is a validation error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        score, kind, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise ValueError
        if not math.isfinite(score) or isinstance(kind, bool) or kind not in (0, 1):
            raise ValueError
        if isinstance(ident, bool) or not isinstance(ident, int) or not -(2**63) <= ident < 2**63:
            raise ValueError
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor", "is not a cursor returned by this API") from None
    return float(score), int(kind), ident


# ------------------------------------------------------------------------- the purge

_PURGE_RETURNS: dict[str, TypeEngine[Any]] = {
    "conversations": Integer(),
    "temporary": Integer(),
    "messages": Integer(),
}
_EXPIRED = f"{EXPIRING} AND expires_at <= :now"

#: PostgreSQL: one batch in one statement. ``SKIP LOCKED`` passes over rows another purger
#: or an appender holds (an append in flight either commits first, moving ``expires_at``
#: on, which the lock re-checks, or waits and then finds no row: NotFound). The foreign
#: keys cascade to the messages; the search column goes with them. Params: ``now``,
#: ``deleted_at``, ``lim``.
PG_PURGE_BATCH: TextualSelect = (
    text(
        f"""
WITH doomed AS (
    SELECT id FROM conversations
     WHERE {_EXPIRED}
     ORDER BY expires_at
     LIMIT :lim
       FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM conversations AS c USING doomed WHERE c.id = doomed.id
    RETURNING c.id, c.user_id, c.temporary, c.message_count
), stones AS (
    INSERT INTO convostore_tombstones (conversation_id, user_id, deleted_at, reason)
    SELECT id, user_id, :deleted_at, CASE WHEN temporary THEN 'temporary' ELSE 'expired' END
      FROM gone
)
SELECT count(*), count(*) FILTER (WHERE temporary), COALESCE(sum(message_count), 0)
  FROM gone"""
    )
    .bindparams(
        bindparam("now", type_=UTCDateTime()),
        bindparam("deleted_at", type_=UTCDateTime()),
        bindparam("lim", type_=Integer()),
    )
    .columns(**_PURGE_RETURNS)
)

#: SQLite: one batch's deletion, inside a short ``BEGIN IMMEDIATE`` (params: ``now``,
#: ``lim``); the tombstones follow with :data:`INSERT_TOMBSTONE`.
SQLITE_PURGE_BATCH: TextualSelect = (
    text(
        "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations"
        f" WHERE {_EXPIRED} ORDER BY expires_at LIMIT :lim)"
        " RETURNING id, user_id, temporary, message_count"
    )
    .bindparams(bindparam("now", type_=UTCDateTime()), bindparam("lim", type_=Integer()))
    .columns(id=BigInteger(), user_id=String(), temporary=Integer(), message_count=Integer())
)

#: What a purge at ``now`` would delete, counted (a dry run; params: ``now``).
COUNT_EXPIRED: TextualSelect = (
    text(
        "SELECT count(*), COALESCE(sum(CASE WHEN temporary THEN 1 ELSE 0 END), 0),"
        f" COALESCE(sum(message_count), 0) FROM conversations WHERE {_EXPIRED}"
    )
    .bindparams(bindparam("now", type_=UTCDateTime()))
    .columns(**_PURGE_RETURNS)
)

T = tombstones_table
#: One tombstone (executemany; params: ``conversation_id``, ``user_id``, ``deleted_at``,
#: ``reason``).
INSERT_TOMBSTONE: Insert = insert(T).values(
    {
        name: bindparam(name, type_=T.c[name].type)
        for name in ("conversation_id", "user_id", "deleted_at", "reason")
    }
)


def tombstone_reason(temporary: Any) -> str:
    return "temporary" if temporary else "expired"


def delete_expired_by_external_id(
    user_id: str, external_id: str, now: datetime
) -> ReturningDelete[Any]:
    """Free an external id held by an expired conversation (it is gone for the user)."""
    return (
        delete(C)
        .where(C.c.user_id == user_id, C.c.external_id == external_id, ~live(now))
        .returning(C.c.id, C.c.user_id, C.c.temporary)
    )


P = policies_table
#: A user's retention defaults (params: ``uid``).
USER_POLICY: Select[Any] = select(P.c.retention, P.c.temporary_retention).where(P.c.user_id == _UID)


def upsert_user_policy(pg: bool, user_id: str, values: dict[str, Any]) -> Insert:
    """Set some of a user's retention defaults (the others are kept)."""
    ins = postgresql.insert(P) if pg else sqlite.insert(P)
    return ins.values(user_id=user_id, **values).on_conflict_do_update(
        index_elements=[P.c.user_id], set_=values
    )
