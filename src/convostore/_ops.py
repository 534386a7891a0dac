"""The store's operations, written once against a sync SQLAlchemy ``Connection``.

Both :class:`convostore.Store` and :class:`convostore.AsyncStore` run these functions:
the sync store directly, the async store through ``AsyncConnection.run_sync`` (greenlets)
on PostgreSQL and in a worker thread on SQLite, so the two APIs cannot drift apart. Each
operation declares how it must be run (see :class:`Mode`); the stores open the connection
or transaction accordingly.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Delete, Insert, Select, TextClause, Update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.util import await_only

from convostore import _sql
from convostore.db import check_in, custom_plans, driver_error, observed
from convostore.errors import ConflictError, NotFoundError, ValidationError
from convostore.history import TokenCounter, approximate_tokens, select_window, system_message
from convostore.models import MessageRole
from convostore.schemas import (
    STREAMABLE_ROLES,
    ChatMessage,
    ConversationPublic,
    MessageCreate,
    MessageInput,
    MessagePublic,
    Order,
    Page,
    PurgeReport,
    RetentionPolicy,
    SearchHit,
    StreamChunk,
    StreamRead,
    construct_all,
    construct_trusted,
    normalize_retention,
    parse_retention,
    parse_search_query,
    validate_after_seq,
    validate_cursor,
    validate_delta,
    validate_hold,
    validate_id,
    validate_limit,
    validate_message,
    validate_messages,
    validate_metadata,
    validate_partial_message,
    validate_position,
    validate_title,
    validate_user_id,
    validate_window,
)
from convostore.types import as_utc, utcnow

MAX_CONVERSATION_PAGE = 100
MAX_MESSAGE_PAGE = 1000
MAX_BATCH = 1000
MAX_SEARCH_PAGE = 100
#: How many of the newest matching messages a search ranks: a word in every message of a
#: long history costs what one in this many does (flat), and results past the newest
#: 1,000 matches are not reached (narrow the query, or window it with since/until).
SEARCH_CANDIDATES = 1000
AUTO_TITLE_LENGTH = 80
_HISTORY_CHUNK = 200


class Mode(enum.Enum):
    """How an operation must be run."""

    READ = "read"  # reads only: no transaction (autocommit) on either database
    STATEMENT = "statement"  # atomic on PostgreSQL as one statement; SQLite BEGIN IMMEDIATE
    WRITE = "write"  # several writes: a transaction everywhere (BEGIN IMMEDIATE on SQLite)


MODES: dict[str, Mode] = {}
#: Reads whose work is capped by a page size (one row, or at most ``MAX_MESSAGE_PAGE``):
#: ``AsyncStore`` on SQLite runs these on the event loop's own thread, where a hop to a
#: worker thread would cost more than the read itself (see ``AsyncStore``).
BOUNDED: set[str] = set()
F = TypeVar("F", bound=Callable[..., Any])


def operation(mode: Mode, *, bounded: bool = False) -> Callable[[F], F]:
    """Register an operation and the way it must be run (``bounded``: see :data:`BOUNDED`).

    An operation whose first argument is ``user_id`` gets it validated here, once for all
    of them, before any statement is sent: a bad id (not a string, NUL, a lone surrogate)
    is the same ``ValidationError`` naming ``user_id`` on every path and database.
    """

    def register(fn: F) -> F:
        assert not bounded or mode is Mode.READ, "only reads can be bounded"
        MODES[fn.__name__] = mode
        if bounded:
            BOUNDED.add(fn.__name__)
        if list(inspect.signature(fn).parameters)[1:2] != ["user_id"]:
            return fn

        @functools.wraps(fn)
        def checked(tx: Tx, user_id: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(tx, validate_user_id(user_id), *args, **kwargs)

        return checked  # type: ignore[return-value]

    return register


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Per-store behaviour that is not part of any one call."""

    max_content_length: int = 10_000
    auto_title: bool = True
    token_counter: TokenCounter = approximate_tokens
    #: PostgreSQL's text-search configuration (``CONVOSTORE_SEARCH_CONFIG``); it must be
    #: the one the search index was built with.
    search_config: str = "simple"
    #: A streaming reply not renewed (by a delta) for this long reads as interrupted.
    stream_lease_seconds: float = 60.0
    #: Default lifetime after the last activity, in seconds (``None``: never expires), of
    #: conversations and of temporary ones (``CONVOSTORE_RETENTION``,
    #: ``CONVOSTORE_TEMPORARY_RETENTION``); a user's own policy overrides them.
    retention: int | None = None
    temporary_retention: int | None = 86_400
    #: The store's notion of "now": every timestamp written and every expiry check.
    clock: Callable[[], datetime] = utcnow


class Tx:
    """What an operation runs on: a pooled DB-API connection, its engine and dialect, the
    store's config, and a SQLAlchemy ``Connection`` around that DB-API connection.

    Built from a ``Connection`` (transactions, and wherever anything watches the
    engine's connections or statements), or :meth:`lean` from a bare pool checkout: then
    the ``Connection`` is made the first time an operation asks for :attr:`conn` (its
    Core statements), and the prebuilt statements, which run on the driver, never need it.
    A ``Connection`` per call joins the engine's event dispatch afresh and costs ~45k
    instructions, ~6% of a short read.
    """

    __slots__ = (
        "_conn",
        "config",
        "dialect",
        "driver_transaction",
        "engine",
        "fairy",
        "observed",
        "pg",
    )

    def __init__(self, conn: Connection, pg: bool, config: StoreConfig) -> None:
        self._conn: Connection | None = conn
        self.engine, self.dialect, self.fairy = conn.engine, conn.dialect, conn.connection
        self.pg, self.config = pg, config
        #: Whether the prebuilt statements go through SQLAlchemy's execution (events, echo).
        self.observed = observed(conn)
        #: Whether the caller opened a transaction on the driver itself (:meth:`lean`).
        self.driver_transaction = False

    @classmethod
    def lean(
        cls,
        engine: Engine,
        fairy: PoolProxiedConnection,
        pg: bool,
        config: StoreConfig,
        *,
        driver_transaction: bool = False,
    ) -> Tx:
        """A call's ``Tx`` on a connection checked out of ``engine``'s pool, where nothing
        watches (:func:`convostore.db.watched` is false): no ``Connection`` unless asked.

        ``driver_transaction``: the caller runs the call in a transaction of the driver's
        own (a write where :func:`convostore.db.transactions_watched` is false).
        """
        tx = cls.__new__(cls)
        tx._conn, tx.engine, tx.dialect, tx.fairy = None, engine, engine.dialect, fairy
        tx.pg, tx.config, tx.observed = pg, config, False
        tx.driver_transaction = driver_transaction
        return tx

    @property
    def conn(self) -> Connection:
        """The SQLAlchemy connection, made around :attr:`fairy` on first use.

        Inside a transaction begun on the driver it must not begin one of its own (its
        ``begin`` would send a second ``BEGIN``): its statements run in the driver's.
        """
        conn = self._conn
        if conn is None:
            conn = self._conn = Connection(
                self.engine, connection=self.fairy, _allow_autobegin=not self.driver_transaction
            )
        return conn

    def invalidate(self) -> None:
        """Discard the DB-API connection (never back into the pool)."""
        (self._conn or self.fairy).invalidate()

    def release(self) -> None:
        """Return the DB-API connection to the pool (a lean ``Tx``'s end of call)."""
        if self._conn is not None:
            self._conn.close()
        else:
            check_in(self.fairy)


def _stale(tx: Tx) -> Any:
    """The lease cutoff of this call (bound as ``stale`` wherever a status is read), by
    the store's clock."""
    return _sql.stale_before(tx.config.stream_lease_seconds, now=_now(tx))


_MSG_FIELDS = tuple("key" if c.key == "client_key" else str(c.key) for c in _sql.MESSAGE_COLUMNS)


def _message(row: Sequence[Any]) -> MessagePublic:
    # Rows come from our own tables: no re-validation, just a typed container.
    return construct_trusted(MessagePublic, dict(zip(_MSG_FIELDS, row, strict=True)))


def _driver_execute(
    tx: Tx,
    stmt: Select[Any] | TextualSelect | TextClause | Insert | Update | Delete,
    params: dict[str, Any] | Sequence[dict[str, Any]],
) -> tuple[_sql.CompiledStatement, Sequence[Any]]:
    """Run a prebuilt statement on the DB-API cursor of the operation's connection.

    Same SQL, parameters and type conversions as ``tx.conn.execute``, without the
    per-execution overhead that dominates short statements (``_sql.CompiledStatement``).
    A sequence of parameter dicts runs as ``executemany`` (and returns no rows).
    """
    dialect = tx.dialect
    query = _sql.compiled(stmt, dialect)
    if tx.observed:
        return query, _observed_execute(tx.conn, query, params)
    if dialect.is_async:
        return query, _native_execute(tx, query, params)
    cursor = tx.fairy.cursor()
    try:
        if isinstance(params, dict):
            cursor.execute(query.statement(params), query.params(params))
            return query, cursor.fetchall() if query.rows else []
        cursor.executemany(query.sql, query.params_many(params))
        return query, []
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, query.sql, params, exc) from exc
    finally:
        cursor.close()


def _native_execute(
    tx: Tx, query: _sql.CompiledStatement, params: dict[str, Any] | Sequence[dict[str, Any]]
) -> Sequence[Any]:
    """:func:`_driver_execute` on psycopg's ``AsyncConnection`` (``AsyncStore`` on
    PostgreSQL): the statement and its fetch in one await from the greenlet bridge, where
    SQLAlchemy's adapted cursor spends three (open, execute, fetch) and a layer of calls."""
    driver = tx.fairy.driver_connection
    try:
        if isinstance(params, dict):
            sql, values = query.statement(params), query.params(params)
            return await_only(_fetch(driver, sql, values, query.rows))
        await_only(_execute_many(driver, query.sql, query.params_many(params)))
        return []
    except tx.dialect.loaded_dbapi.Error as exc:
        raise driver_error(tx.dialect, query.sql, params, exc) from exc


async def _fetch(driver: Any, sql: str, params: Any, rows: bool) -> list[Any]:
    # ``rows``: the compiled statement's own (not ``cursor.description``: psycopg builds a
    # Column object per column at each access).
    async with driver.cursor() as cursor:
        await cursor.execute(sql, params)
        return await cursor.fetchall() if rows else []


async def _execute_many(driver: Any, sql: str, params: Any) -> None:
    async with driver.cursor() as cursor:
        await cursor.executemany(sql, params)


def _observed_execute(
    conn: Connection,
    query: _sql.CompiledStatement,
    params: dict[str, Any] | Sequence[dict[str, Any]],
) -> Sequence[Any]:
    """The same SQL through ``exec_driver_sql``, which fires every execution event and logs
    the statement: observers see exactly what the fast path would have sent."""
    if isinstance(params, dict):
        sql, values = query.statement(params), _driver_params(query.params(params))
        result = conn.exec_driver_sql(sql, values)
        return result.fetchall() if query.rows else []
    conn.exec_driver_sql(query.sql, [_driver_params(p) for p in query.params_many(params)])
    return []


def _driver_params(params: Any) -> Any:
    # Positional (SQLite) parameters come as lists; exec_driver_sql takes tuples for those.
    return tuple(params) if isinstance(params, list) else params


def _read(
    tx: Tx, stmt: Select[Any] | TextualSelect, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """A prebuilt SELECT's rows as dicts keyed by the output field names."""
    query, rows = _driver_execute(tx, stmt, params)
    return query.records(rows)


def _conversation_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("conversation_id", "must be an integer")
    if not -(2**63) <= value < 2**63:
        # Beyond any id column: cannot exist (and would overflow SQLite's driver).
        raise NotFoundError("conversation", value)
    return value


def _now(tx: Tx) -> datetime:
    """The store's clock (``StoreConfig.clock``), aware UTC."""
    return as_utc(tx.config.clock())


def _require_conversation(
    tx: Tx, user_id: str, conversation_id: int, *, lock: bool = False
) -> ConversationPublic:
    # Locking serialises with concurrent appenders (SQLite's BEGIN IMMEDIATE already does).
    stmt = _sql.CONVERSATION_BY_ID_FOR_UPDATE if lock else _sql.CONVERSATION_BY_ID
    rows = _read(tx, stmt, _sql.owned_params(user_id, conversation_id, _now(tx)))
    if not rows:
        raise NotFoundError("conversation", conversation_id)
    return construct_trusted(ConversationPublic, rows[0])


def derive_title(messages: Sequence[MessageCreate]) -> str | None:
    """First line of the first user message, trimmed to a readable length."""
    for m in messages:
        if m.role == "user":
            line = next((ln.strip() for ln in m.content.splitlines() if ln.strip()), "")
            if not line:
                return None
            if len(line) > AUTO_TITLE_LENGTH:
                line = line[: AUTO_TITLE_LENGTH - 1].rstrip() + "\u2026"
            return line
    return None


# ----------------------------------------------------------------------------- users


@operation(Mode.STATEMENT)
def ensure_user(tx: Tx, user_id: str) -> None:
    """Register ``user_id`` if it is new (the database also does this on first write).

    With the host's users table (``CONVOSTORE_USERS_TABLE``) users are the host's to
    create, and this only checks the id.
    """
    stmt = _sql.upsert_user(tx.pg, user_id, _now(tx))
    if stmt is not None:
        tx.conn.execute(stmt)


@operation(Mode.STATEMENT)
def delete_user(tx: Tx, user_id: str) -> bool:
    """Erase a user and everything of theirs; ``False`` if there was nothing to erase."""
    result = tx.conn.execute(_sql.delete_user(user_id))
    return bool(result.rowcount)


# --------------------------------------------------------------------- conversations


@operation(Mode.WRITE)
def create_conversation(
    tx: Tx,
    user_id: str,
    *,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
    messages: Sequence[MessageInput] = (),
    external_id: str | None = None,
    temporary: bool = False,
    retention: str | None = None,
) -> ConversationPublic:
    """Start a conversation for ``user_id`` (registered if new), optionally with messages.

    ``external_id`` is your own id for the thread (unique per user); a second conversation
    with the same one is a ``ConflictError``. ``retention`` (``"30d"``, ``"12h"``,
    ``"none"``) is how long it lives after its last activity; left out, the user's policy
    or the global default decides, the temporary one for ``temporary=True`` chats.
    """
    title = validate_title(title)
    metadata = validate_metadata(metadata)
    if external_id is not None:
        validate_id(external_id, "external_id")
    items = validate_messages(messages, max_content_length=tx.config.max_content_length)
    if len(items) > MAX_BATCH:
        raise ValidationError("messages", f"must hold at most {MAX_BATCH} messages")
    lifetime = _lifetime(tx, user_id, temporary, retention)
    conv = _insert_conversation(tx, user_id, title, metadata, external_id, lifetime, temporary)
    if conv is None:
        raise ConflictError(f"external_id: the user already has a conversation {external_id!r}")
    if items:
        _append(tx, user_id, conv.id, items)
        conv = _require_conversation(tx, user_id, conv.id)
    return conv


def _lifetime(tx: Tx, user_id: str, temporary: Any, retention: Any) -> int | None:
    """A new conversation's retention in seconds: its own, else its user's, else global."""
    if not isinstance(temporary, bool):
        raise ValidationError("temporary", "must be true or false")
    if retention is not None:
        return parse_retention(retention)
    rows = _read(tx, _sql.USER_POLICY, {"uid": user_id})
    own = rows[0]["temporary_retention" if temporary else "retention"] if rows else None
    if own is not None:
        return parse_retention(own)
    return tx.config.temporary_retention if temporary else tx.config.retention


def _insert_conversation(
    tx: Tx,
    user_id: str,
    title: str | None,
    metadata: dict[str, Any] | None,
    external_id: str | None,
    lifetime: int | None,
    temporary: bool = False,
) -> ConversationPublic | None:
    """Insert (the database registers a new user); ``None`` if ``external_id`` is taken."""
    now = _now(tx)
    stmt = _sql.INSERT_CONVERSATION[tx.pg]
    params = _sql.new_conversation(
        user_id,
        title,
        metadata,
        now,
        external_id=external_id,
        retention_seconds=lifetime,
        temporary=temporary,
    )
    query, rows = _driver_execute(tx, stmt, params)
    if not rows and external_id is not None:
        # An expired conversation is gone for its user, but its row (and so its external
        # id) stays until the purge: bury it now, and the id is free again.
        doomed = _sql.delete_expired_by_external_id(user_id, external_id, now)
        buried = tx.conn.execute(doomed).all()
        if buried:
            _bury(tx, buried, now)
            query, rows = _driver_execute(tx, stmt, params)
    return query.models(ConversationPublic, rows)[0] if rows else None


def _bury(tx: Tx, rows: Sequence[Any], deleted_at: datetime) -> None:
    """Tombstones for deleted conversations (rows of ``id, user_id, temporary``)."""
    stones = [
        {
            "conversation_id": r[0],
            "user_id": str(r[1]),
            "deleted_at": deleted_at,
            "reason": _sql.tombstone_reason(r[2]),
        }
        for r in rows
    ]
    if stones:
        _driver_execute(tx, _sql.INSERT_TOMBSTONE, stones)


@operation(Mode.STATEMENT)
def get_or_create_conversation(
    tx: Tx,
    user_id: str,
    external_id: str,
    *,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> ConversationPublic:
    """The user's conversation with your ``external_id``, created (with ``title`` and
    ``metadata``) if there is none yet. Safe under concurrent first calls: one wins, every
    caller gets that one.
    """
    validate_id(external_id, "external_id")
    title, metadata = validate_title(title), validate_metadata(metadata)
    lifetime = _lifetime(tx, user_id, False, None)
    conv = _insert_conversation(tx, user_id, title, metadata, external_id, lifetime)
    if conv is not None:
        return conv
    return get_conversation_by_external_id(tx, user_id, external_id)


@operation(Mode.READ, bounded=True)
def get_conversation_by_external_id(tx: Tx, user_id: str, external_id: str) -> ConversationPublic:
    """The user's conversation with your ``external_id``; ``NotFoundError`` if none."""
    validate_id(external_id, "external_id")
    params = {"uid": user_id, "external_id": external_id, "now": _now(tx)}
    rows = _read(tx, _sql.LIVE_CONVERSATION_BY_EXTERNAL_ID, params)
    if not rows:
        raise NotFoundError("conversation with external_id", repr(external_id))
    return construct_trusted(ConversationPublic, rows[0])


@operation(Mode.READ, bounded=True)
def get_conversation(tx: Tx, user_id: str, conversation_id: int) -> ConversationPublic:
    """One conversation of ``user_id``; another user's raises the same ``NotFoundError``."""
    return _require_conversation(tx, user_id, _conversation_id(conversation_id))


@operation(Mode.READ, bounded=True)
def list_conversations(
    tx: Tx, user_id: str, *, limit: int = 20, cursor: str | None = None
) -> Page[ConversationPublic]:
    """``user_id``'s conversations, most recently active first (keyset pagination)."""
    validate_limit(limit, maximum=MAX_CONVERSATION_PAGE)
    cursor = validate_cursor(cursor)
    after = _sql.decode_cursor(cursor) if cursor else None
    stmt = _sql.conversations_query(paged=after is not None)
    query, rows = _driver_execute(
        tx, stmt, _sql.conversations_params(user_id, limit + 1, after, _now(tx))
    )
    data = query.models(ConversationPublic, rows[:limit])
    has_more = len(rows) > limit
    last = data[-1] if data else None
    next_cursor = _sql.encode_cursor(last.updated_at, last.id) if has_more and last else None
    if has_more and not data:  # limit=0: the next page starts where this one was asked
        next_cursor = cursor
    return Page(data=data, has_more=has_more, next_cursor=next_cursor)


_UNSET: Any = object()


@operation(Mode.STATEMENT)
def update_conversation(
    tx: Tx,
    user_id: str,
    conversation_id: int,
    *,
    title: str | None = _UNSET,
    metadata: dict[str, Any] | None = _UNSET,
    hold: bool = _UNSET,
    retention: str = _UNSET,
) -> ConversationPublic:
    """Rename, replace the metadata, set or clear a ``hold`` (kept past its expiry), or
    give it its own ``retention`` (``"7d"``; ``"none"``: never expires), counted from its
    last activity. A field left out is not changed. An expired conversation is gone:
    ``NotFoundError``, as everywhere.
    """
    values: dict[str, Any] = {}
    if title is not _UNSET:
        values["title"] = validate_title(title)
    if metadata is not _UNSET:
        values["metadata"] = validate_metadata(metadata)
    if hold is not _UNSET:
        values["hold"] = validate_hold(hold)
    if retention is not _UNSET:
        if retention is None:
            raise ValidationError("retention", 'must be a duration such as "30d", or "none"')
        values["retention_seconds"] = parse_retention(retention)  # sets expires_at too
    cid = _conversation_id(conversation_id)
    if not values:
        return _require_conversation(tx, user_id, cid)
    stmt = _sql.update_conversation(tuple(values), tx.pg)
    params = _sql.update_conversation_params(user_id, cid, values, _now(tx))
    query, rows = _driver_execute(tx, stmt, params)
    if not rows:
        raise NotFoundError("conversation", conversation_id)
    return query.models(ConversationPublic, rows)[0]


@operation(Mode.STATEMENT)
def delete_conversation(tx: Tx, user_id: str, conversation_id: int) -> None:
    """Delete a conversation and (by cascade) its messages."""
    params = _sql.owned_params(user_id, _conversation_id(conversation_id), _now(tx))
    if not _driver_execute(tx, _sql.DELETE_CONVERSATION, params)[1]:
        raise NotFoundError("conversation", conversation_id)


# -------------------------------------------------------------------------- messages


def _append(
    tx: Tx,
    user_id: str,
    conversation_id: int,
    items: Sequence[MessageCreate],
    *,
    status: str = "complete",
) -> list[MessagePublic]:
    """Append validated messages; idempotent for messages that carry a ``key``.

    ``status="streaming"`` (one message: ``begin_message``) reserves the position for a
    reply that is still being written, its lease starting now.
    """
    existing: dict[str, MessagePublic] = {}
    keys = [m.key for m in items if m.key is not None]
    streamed = status != "complete"
    if keys:
        found: Iterable[MessagePublic]
        if len(keys) == 1:  # a retried single append: the prebuilt lookup
            params = {"cid": conversation_id, "uid": user_id, "key": keys[0], "stale": _stale(tx)}
            query, rows = _driver_execute(tx, _sql.MESSAGE_BY_KEY, params)
            found = query.models(MessagePublic, rows)
        else:
            by_key = _sql.select_messages_by_key(user_id, conversation_id, keys)
            found = map(_message, tx.conn.execute(by_key, {"stale": _stale(tx)}))
        existing = {m.key: m for m in found if m.key is not None}
        for item in items:
            if item.key in existing and not _same_message(item, existing[item.key], streamed):
                # As payment APIs do: a key names one request; reusing it for another
                # would silently drop the new message, so it is an error.
                raise ConflictError(
                    f"idempotency key {item.key!r} was already used in this conversation "
                    "for a different message"
                )
    new = [m for m in items if m.key is None or m.key not in existing]
    stored: dict[int, MessagePublic] = {}
    if new:
        now = _now(tx)
        auto_title = derive_title(new) if tx.config.auto_title else None
        if tx.pg:
            stmt, params = _sql.pg_append(
                user_id, conversation_id, new, now, auto_title, status=status
            )
            # RETURNING order is not guaranteed by SQL: pair ids with messages by position.
            query, returned = _driver_execute(tx, stmt, params)
            ids: Sequence[Any] = sorted(returned, key=lambda r: r[1])
            if not ids:
                raise NotFoundError("conversation", conversation_id)
            base = ids[0][1] - 1
            last = query.records(ids[-1:])[0]["created_at"]
        else:
            bump = {
                "cid": conversation_id,
                "uid": user_id,
                "n": len(new),
                "now": now,
                "auto_title": auto_title,
            }
            query, bumped = _driver_execute(tx, _sql.SQLITE_BUMP_CONVERSATION, bump)
            if not bumped:
                raise NotFoundError("conversation", conversation_id)
            record = query.records(bumped)[0]
            base, last = record["message_count"] - len(new), record["updated_at"]
        rows = _sql.message_rows(user_id, conversation_id, base, new, last, status)
        if not tx.pg and len(rows) == 1:
            ids = _driver_execute(tx, _sql.INSERT_ONE_MESSAGE, rows[0])[1]
        elif not tx.pg:
            _driver_execute(tx, _sql.INSERT_MESSAGE, rows)
            inserted = {"cid": conversation_id, "base": base}
            ids = _driver_execute(tx, _sql.NEW_MESSAGE_IDS, inserted)[1]
        for m, row, returned in zip(new, rows, ids, strict=True):
            values = {**row, "id": returned[0], "key": row["client_key"]}
            del values["client_key"], values["stream_heartbeat_at"]
            stored[id(m)] = construct_trusted(MessagePublic, values)
    elif not existing:
        _require_conversation(tx, user_id, conversation_id)
    return [
        existing[m.key] if m.key is not None and m.key in existing else stored[id(m)] for m in items
    ]


def _same_message(item: MessageCreate, stored: MessagePublic, streamed: bool = False) -> bool:
    """Whether a retried message (same key) asks for what is stored.

    A retried ``begin_message`` names the reply, whatever text it has received since.
    """
    if streamed:
        return item.role == stored.role and item.metadata == stored.metadata
    return (
        item.role == stored.role
        and item.content == stored.content
        and item.tool_calls == stored.tool_calls
        and item.tool_call_id == stored.tool_call_id
        and item.metadata == stored.metadata
    )


@operation(Mode.STATEMENT)
def append_message(
    tx: Tx, user_id: str, conversation_id: int, message: MessageInput
) -> MessagePublic:
    """Append one message at the next position; bumps ``updated_at`` and the counter.

    With a ``key`` already stored in this conversation, returns the stored message instead
    of adding a second copy (safe retries); a different message under a stored key is a
    ``ConflictError``.
    """
    item = validate_message(message, max_content_length=tx.config.max_content_length)
    return _append(tx, user_id, _conversation_id(conversation_id), [item])[0]


@operation(Mode.STATEMENT)
def append_messages(
    tx: Tx, user_id: str, conversation_id: int, messages: Sequence[MessageInput]
) -> list[MessagePublic]:
    """Append many messages in order, all or nothing, at consecutive positions."""
    items = validate_messages(messages, max_content_length=tx.config.max_content_length)
    if len(items) > MAX_BATCH:
        raise ValidationError("messages", f"must hold at most {MAX_BATCH} messages")
    if not items:
        _require_conversation(tx, user_id, _conversation_id(conversation_id))
        return []
    return _append(tx, user_id, _conversation_id(conversation_id), items)


def _select(tx: Tx, user_id: str, conversation_id: int, **kwargs: Any) -> list[MessagePublic]:
    stmt, params = _sql.messages_params(
        user_id, conversation_id, _now(tx), stale=_stale(tx), **kwargs
    )
    query, rows = _driver_execute(tx, stmt, params)
    if not rows:
        # An empty answer is ambiguous: an empty page, or not this user's conversation.
        _require_conversation(tx, user_id, conversation_id)
    return query.models(MessagePublic, rows)


@operation(Mode.READ, bounded=True)
def list_messages(
    tx: Tx,
    user_id: str,
    conversation_id: int,
    *,
    after: int | None = None,
    before: int | None = None,
    order: Order = "asc",
    limit: int = 100,
) -> Page[MessagePublic]:
    """Messages strictly between the ``after``/``before`` positions, by position.

    Continue with ``after=int(page.next_cursor)`` (asc) or ``before=...`` (desc); pages stay
    stable while new messages arrive, and every message is seen exactly once.
    """
    validate_limit(limit, maximum=MAX_MESSAGE_PAGE)
    validate_position(after, "after")
    validate_position(before, "before")
    if order not in ("asc", "desc"):
        raise ValidationError("order", "must be 'asc' or 'desc'")
    rows = _select(
        tx,
        user_id,
        _conversation_id(conversation_id),
        after=after,
        before=before,
        descending=order == "desc",
        limit=limit + 1,
    )
    data = rows[:limit]
    has_more = len(rows) > limit
    next_cursor = str(data[-1].position) if has_more and data else None
    if has_more and not data:  # limit=0: the next page starts where this one was asked
        start = after if order == "asc" else before
        next_cursor = None if start is None else str(start)
    return Page(data=data, has_more=has_more, next_cursor=next_cursor)


@operation(Mode.READ)
def get_messages(tx: Tx, user_id: str, conversation_id: int) -> list[MessagePublic]:
    """Every message of a conversation in order (use ``list_messages`` to page)."""
    return _select(tx, user_id, _conversation_id(conversation_id))


@operation(Mode.READ, bounded=True)
def last_messages(tx: Tx, user_id: str, conversation_id: int, n: int) -> list[MessagePublic]:
    """The last ``n`` messages, in chronological order."""
    validate_limit(n, maximum=MAX_MESSAGE_PAGE, field="n")
    rows = _select(tx, user_id, _conversation_id(conversation_id), descending=True, limit=n)
    rows.reverse()
    return rows


class _WindowRow(NamedTuple):
    """What the history window reads of a message (``_sql.WINDOW_COLUMNS``, in order):
    a tuple, not a model, since the window returns chat dicts and never the row."""

    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    position: int
    status: str  # lease-aware, as readers see it


def _newest_first(tx: Tx, user_id: str, conversation_id: int, chunk: int) -> Iterator[_WindowRow]:
    before: int | None = None
    now, stale = _now(tx), _stale(tx)
    while True:
        stmt, params = _sql.messages_params(
            user_id,
            conversation_id,
            now,
            before=before,
            descending=True,
            limit=chunk,
            window=True,
            stale=stale,
        )
        query, rows = _driver_execute(tx, stmt, params)
        if not rows and before is None:
            _require_conversation(tx, user_id, conversation_id)  # empty, or not theirs?
        page = list(map(_WindowRow._make, query.tuples(rows)))
        yield from page
        if len(page) < chunk:
            return
        before = page[-1].position


@operation(Mode.READ)
def get_history(
    tx: Tx,
    user_id: str,
    conversation_id: int,
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
    system_prompt: str | None = None,
    token_counter: TokenCounter | None = None,
    include_incomplete: bool = True,
) -> list[ChatMessage]:
    """The model-ready window: the newest messages that fit, oldest first, chat format.

    ``max_messages`` caps the messages returned; ``max_tokens`` counts everything sent,
    including the pinned ``system_prompt`` (always first, always kept). An assistant tool
    call and its results are kept or dropped together; orphan tool results and calls never
    answered are left out, so the model API always accepts the window.

    A reply that is still streaming is left out (the model should not see half an
    answer); one that ended ``interrupted`` or ``error`` is kept with its partial text,
    unless ``include_incomplete=False`` (an empty one is never sent).
    """
    if not isinstance(include_incomplete, bool):
        raise ValidationError("include_incomplete", "must be a boolean")
    validate_window(max_messages, max_tokens, system_prompt)
    if token_counter is not None and not callable(token_counter):
        raise ValidationError("token_counter", "must be callable")
    counter = token_counter or tx.config.token_counter
    head: list[ChatMessage] = []
    if system_prompt is not None:
        head.append(system_message(system_prompt))
        if max_tokens is not None:
            max_tokens = max(0, max_tokens - counter(head[0]))
    conversation_id = _conversation_id(conversation_id)
    chunk = min(_HISTORY_CHUNK, (max_messages or _HISTORY_CHUNK) + 1)
    messages = _newest_first(tx, user_id, conversation_id, chunk)
    window = select_window(
        (m for m in messages if _in_history(m, include_incomplete)),
        max_messages=max_messages,
        max_tokens=max_tokens,
        token_counter=counter,
    )
    return head + window


def _in_history(message: _WindowRow, include_incomplete: bool) -> bool:
    if message.status == "complete":
        return True
    if message.status == "streaming" or not message.content:
        return False
    return include_incomplete


@operation(Mode.WRITE)
def pop_message(tx: Tx, user_id: str, conversation_id: int) -> MessagePublic | None:
    """Remove and return the last message (``None`` if the conversation is empty)."""
    removed = _truncate(tx, user_id, _conversation_id(conversation_id), keep=None)
    return removed[0] if removed else None


@operation(Mode.WRITE)
def delete_messages_after(
    tx: Tx, user_id: str, conversation_id: int, position: int
) -> list[MessagePublic]:
    """Delete every message after ``position`` (regenerate / edit flows); returns them."""
    keep = validate_position(position, "position")
    if keep is None:
        raise ValidationError("position", "must be an integer")
    return _truncate(tx, user_id, _conversation_id(conversation_id), keep=keep)


def _truncate(tx: Tx, user_id: str, conversation_id: int, keep: int | None) -> list[MessagePublic]:
    conv = _require_conversation(tx, user_id, conversation_id, lock=True)
    keep = conv.message_count - 1 if keep is None else keep
    if keep < 0 or conv.message_count <= keep:
        return []
    owned = {**_sql.owned_params(user_id, conversation_id, _now(tx)), "keep": keep}
    _driver_execute(tx, _sql.TRUNCATE_CONVERSATION, owned)
    tail = {"cid": conversation_id, "keep": keep, "stale": _stale(tx)}
    query, rows = _driver_execute(tx, _sql.DELETE_MESSAGES_AFTER, tail)
    return sorted(query.models(MessagePublic, rows), key=lambda m: m.position)


@operation(Mode.READ, bounded=True)
def get_message(tx: Tx, user_id: str, conversation_id: int, message_id: int) -> MessagePublic:
    """One message of the user's conversation, by id (``NotFoundError`` otherwise)."""
    cid, mid = _conversation_id(conversation_id), _message_id(message_id)
    params = {"mid": mid, "cid": cid, "uid": user_id, "now": _now(tx), "stale": _stale(tx)}
    rows = _read(tx, _sql.MESSAGE_BY_ID, params)
    if not rows:
        _require_conversation(tx, user_id, cid)
        raise NotFoundError("message", message_id)
    return construct_trusted(MessagePublic, rows[0])


@operation(Mode.WRITE)
def delete_message(tx: Tx, user_id: str, conversation_id: int, message_id: int) -> MessagePublic:
    """Delete one message, wherever it is; the later ones move up a position (positions
    stay gapless). Returns the deleted message."""
    cid, mid = _conversation_id(conversation_id), _message_id(message_id)
    conv = _require_conversation(tx, user_id, cid, lock=True)
    params = {"cid": cid, "mid": mid, "stale": _stale(tx)}
    query, rows = _driver_execute(tx, _sql.DELETE_MESSAGE, params)
    if not rows:
        raise NotFoundError("message", message_id)
    removed: MessagePublic = query.models(MessagePublic, rows)[0]
    gap = {"cid": cid, "position": removed.position, "count": conv.message_count}
    for stmt in _sql.CLOSE_GAP:
        _driver_execute(tx, stmt, gap)
    _driver_execute(tx, _sql.SHRINK_CONVERSATION, _sql.owned_params(user_id, cid, _now(tx)))
    return removed


# --------------------------------------------------------------------------- search


def _roles(roles: Sequence[str] | None) -> tuple[str, ...] | None:
    if roles is None:
        return None
    if isinstance(roles, str) or not isinstance(roles, Sequence | set | frozenset):
        raise ValidationError("roles", "must be a list of roles")
    valid = {r.value for r in MessageRole}
    for role in roles:
        if not isinstance(role, str) or role not in valid:
            raise ValidationError("roles", f"must hold only {', '.join(sorted(valid))}")
    return tuple(sorted(set(roles)))


def _instant(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, "must be a datetime")
    try:  # naive is UTC, as everywhere; year 1 at +14:00 has no UTC instant
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, "is out of range") from None


@operation(Mode.READ)
def search(
    tx: Tx,
    user_id: str,
    query: str,
    *,
    conversation_id: int | None = None,
    roles: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> Page[SearchHit]:
    """Full-text search over ``user_id``'s messages and conversation titles, best first.

    Every word or ``"quoted phrase"`` of ``query`` must match; ``word*`` matches a prefix;
    nothing in it is syntax that can fail. A query with no letter or digit (empty,
    punctuation, emoji only) is an empty page; over 1,000 characters a ``ValidationError``.
    ``conversation_id``, ``roles`` and the ``since`` <= ``created_at`` < ``until`` window
    narrow the message hits; title hits (``kind="title"``) come only without ``roles``, and
    are windowed on the conversation's ``updated_at``. Keyset pages, as elsewhere.
    """
    parsed = parse_search_query(query)
    validate_limit(limit, maximum=MAX_SEARCH_PAGE)
    cid = None if conversation_id is None else _conversation_id(conversation_id)
    role_names = _roles(roles)
    start, end = _instant(since, "since"), _instant(until, "until")
    cursor = validate_cursor(cursor)
    after = _sql.decode_search_cursor(cursor) if cursor else None
    if parsed.empty or limit == 0:
        return Page(data=[], has_more=False, next_cursor=None)
    stmt = _sql.search_query(
        tx.pg,
        tx.config.search_config,
        phrases=bool(parsed.phrases),
        prefixes=bool(parsed.prefixes),
        conversation=cid is not None,
        roles=role_names,
        since=start is not None,
        until=end is not None,
        paged=after is not None,
    )
    params: dict[str, Any] = {
        "uid": user_id,
        "lim": limit + 1,
        "cand": SEARCH_CANDIDATES,
        "now": _now(tx),
    }
    params.update(_sql.search_terms(tx.pg, user_id, parsed.phrases, parsed.prefixes))
    if cid is not None:
        params["cid"] = cid
    if start is not None:
        params["since"] = start
    if end is not None:
        params["until"] = end
    if after is not None:
        params["score"], params["kind"], params["hit_id"] = after
    with custom_plans(tx.conn):
        rows = _read(tx, stmt, params)
    hits = [_search_hit(r) for r in rows[:limit]]
    has_more = len(rows) > limit
    next_cursor = None
    if has_more:
        last = rows[limit - 1]
        next_cursor = _sql.encode_search_cursor(last["score"], last["kind"], last["hit_id"])
    return Page(data=hits, has_more=has_more, next_cursor=next_cursor)


def _search_hit(row: dict[str, Any]) -> SearchHit:
    message = None
    if row["m_id"] is not None:
        message = _message([row[f] for f in _sql.SEARCH_FIELDS])
    return construct_trusted(
        SearchHit,
        {
            "kind": _sql.SEARCH_KINDS[row["kind"]],
            "conversation_id": row["conversation_id"],
            "conversation_title": row["conversation_title"],
            "message": message,
            "snippet": row["snippet"] or "",
            "rank": float(row["score"]),
        },
    )


# ------------------------------------------------------------------ streamed replies

MAX_CHUNK_PAGE = 10_000


def _message_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("message_id", "must be an integer")
    if not -(2**63) <= value < 2**63:
        raise NotFoundError("message", value)
    return value


@dataclass(frozen=True, slots=True)
class _Streamed:
    message: MessagePublic
    stored_status: str  # as stored: ``status`` is the lease-aware one
    length: int


def _stream_row(
    tx: Tx, user_id: str, message_id: int, conversation_id: int | None, *, lock: bool
) -> _Streamed:
    mid = _message_id(message_id)
    params: dict[str, Any] = {"mid": mid, "uid": user_id, "stale": _stale(tx), "now": _now(tx)}
    if conversation_id is not None:
        params["cid"] = _conversation_id(conversation_id)
    stmt = _sql.stream_message(in_conversation=conversation_id is not None, lock=lock)
    rows = _read(tx, stmt, params)
    if not rows:
        raise NotFoundError("message", message_id)
    record = rows[0]
    stored, length = record.pop("stored_status"), record.pop("length")
    return _Streamed(construct_trusted(MessagePublic, record), stored, length)


def _notify(tx: Tx, message_id: int) -> None:
    """Wake the reply's followers (PostgreSQL; SQLite's followers poll)."""
    if tx.pg:
        _driver_execute(tx, _sql.PG_NOTIFY, {"payload": str(message_id)})


@operation(Mode.WRITE)
def begin_message(
    tx: Tx,
    user_id: str,
    conversation_id: int,
    *,
    role: str = "assistant",
    key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> MessagePublic:
    """Reserve the next position for a reply that will be streamed: an empty message
    with status ``streaming``, returned with its id (for ``append_delta``).

    With a ``key``, a retried begin returns the same message. A conversation has at most
    one reply streaming (the database enforces it): beginning another is a
    ``ConflictError``, unless the first one's lease has run out, in which case it is
    marked ``interrupted`` first. Messages appended meanwhile come after this one.
    """
    cid = _conversation_id(conversation_id)
    if not isinstance(role, str) or role not in STREAMABLE_ROLES:
        raise ValidationError("role", "must be 'assistant', 'user' or 'system'")
    data = {"role": role, "content": "", "metadata": metadata, "key": key}
    item = validate_partial_message(data, max_content_length=tx.config.max_content_length)
    _driver_execute(tx, _sql.INTERRUPT_STALE, {"cid": cid, "uid": user_id, "stale": _stale(tx)})
    return _append(tx, user_id, cid, [item], status="streaming")[0]


@operation(Mode.WRITE)
def append_delta(
    tx: Tx,
    user_id: str,
    message_id: int,
    seq: int,
    text: str,
    *,
    conversation_id: int | None = None,
) -> bool:
    """Add the delta ``seq`` to a streaming reply and renew its lease; ``False`` if this
    delta was stored already (a retry: nothing changes).

    Deltas are joined in ``seq`` order whatever order they arrive in, so the message's
    ``content`` is always the text so far. The same ``seq`` with different text, or a
    delta for a reply that has ended (or whose lease ran out), is a ``ConflictError``;
    content beyond the store's ``max_content_length`` is a ``ValidationError``. With
    ``conversation_id``, the message must be in that conversation.
    """
    validate_delta(seq, text, max_content_length=tx.config.max_content_length)
    row = _stream_row(tx, user_id, message_id, conversation_id, lock=True)
    mid = row.message.id
    if row.message.status == "streaming":
        now = _now(tx)
        params = {"message_id": mid, "uid": user_id, "seq": seq, "text": text, "created_at": now}
        if _driver_execute(tx, _sql.insert_chunk(tx.pg), params)[1]:
            if row.length + len(text) > tx.config.max_content_length:
                raise ValidationError(
                    "text",
                    f"the streamed content would exceed {tx.config.max_content_length} characters",
                )
            update = {"mid": mid, "uid": user_id, "seq": seq, "text": text, "now": now}
            _driver_execute(tx, _sql.add_chunk_to_content(tx.pg), update)
            _notify(tx, mid)
            return True
    stored = _driver_execute(tx, _sql.CHUNK_TEXT, {"mid": mid, "uid": user_id, "seq": seq})[1]
    if stored and stored[0][0] == text:
        return False
    if stored:
        raise ConflictError(f"delta {seq} of message {mid} was already stored with other text")
    raise ConflictError(f"message {mid} is {row.message.status}: it takes no more deltas")


@operation(Mode.WRITE)
def finish_message(
    tx: Tx,
    user_id: str,
    message_id: int,
    *,
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
    conversation_id: int | None = None,
) -> MessagePublic:
    """Complete a streaming reply, in one transaction: its content is the deltas joined
    in order unless ``content`` is given; ``tool_calls`` and ``metadata`` (replacing the
    begin's) as for any message, validated by the same rules.

    A retried finish (same arguments) returns the completed message; finishing a reply
    that is complete otherwise, or that was interrupted or failed, is a ``ConflictError``.
    The deltas stay (deleted with the message), so a follower that is behind still
    receives every one of them; the message's ``content`` is the final text.
    """
    row = _stream_row(tx, user_id, message_id, conversation_id, lock=True)
    msg = row.message
    if msg.status == "complete":
        if (
            (content is None or content == msg.content)
            and (tool_calls is None or tool_calls == msg.tool_calls)
            and (metadata is None or metadata == msg.metadata)
        ):
            return msg
        raise ConflictError(f"message {msg.id} is already complete")
    if msg.status != "streaming":
        raise ConflictError(f"message {msg.id} is {msg.status}: it can no longer be finished")
    final = validate_message(
        {
            "role": msg.role,
            "content": msg.content if content is None else content,
            "tool_calls": tool_calls,
            "metadata": msg.metadata if metadata is None else metadata,
        },
        max_content_length=tx.config.max_content_length,
    )
    values = {
        "status": "complete",
        "content": final.content,
        "tool_calls": final.tool_calls,
        "metadata": final.metadata,
        "stream_heartbeat_at": _now(tx),
    }
    _driver_execute(tx, _sql.end_stream(tuple(values)), _sql.end_stream_params(msg.id, values))
    _notify(tx, msg.id)
    del values["stream_heartbeat_at"]
    return msg.model_copy(update=values)


def _end(
    tx: Tx,
    user_id: str,
    message_id: int,
    status: str,
    metadata: dict[str, Any] | None,
    conversation_id: int | None,
) -> MessagePublic:
    """End a streaming reply as ``interrupted`` or ``error``, keeping its partial text."""
    metadata = validate_metadata(metadata)
    row = _stream_row(tx, user_id, message_id, conversation_id, lock=True)
    msg = row.message
    if msg.status == status and row.stored_status == status and metadata is None:
        return msg  # a retry
    if row.stored_status != "streaming" and row.stored_status != status:
        raise ConflictError(f"message {msg.id} is {msg.status}: it is no longer streaming")
    values: dict[str, Any] = {"status": status}
    if metadata is not None:
        values["metadata"] = metadata
    _driver_execute(tx, _sql.end_stream(tuple(values)), _sql.end_stream_params(msg.id, values))
    _notify(tx, msg.id)
    return msg.model_copy(update=values)


@operation(Mode.WRITE)
def fail_message(
    tx: Tx,
    user_id: str,
    message_id: int,
    *,
    metadata: dict[str, Any] | None = None,
    conversation_id: int | None = None,
) -> MessagePublic:
    """End a streaming reply with status ``error`` (the model call failed), keeping the
    text received so far; ``metadata``, if given, replaces the message's (e.g. the error).
    Failing a failed reply again returns it; one that completed or was interrupted is a
    ``ConflictError``."""
    return _end(tx, user_id, message_id, "error", metadata, conversation_id)


@operation(Mode.WRITE)
def interrupt_message(
    tx: Tx,
    user_id: str,
    message_id: int,
    *,
    metadata: dict[str, Any] | None = None,
    conversation_id: int | None = None,
) -> MessagePublic:
    """End a streaming reply with status ``interrupted`` (the user pressed stop, the
    client went away), keeping the text received so far. Idempotent; a reply that
    completed or failed is a ``ConflictError``."""
    return _end(tx, user_id, message_id, "interrupted", metadata, conversation_id)


@operation(Mode.READ, bounded=True)
def read_stream(
    tx: Tx,
    user_id: str,
    message_id: int,
    after_seq: int | None = None,
    *,
    limit: int = 1000,
    conversation_id: int | None = None,
) -> StreamRead:
    """A streamed reply for a reader that resumes: the message (lease-aware ``status``,
    content so far) and its stored deltas after ``after_seq`` (all if ``None``), in seq
    order, at most ``limit`` of them (``has_more`` says if there are more).

    The message is read before its deltas, so when it reads as ended the deltas returned
    are all there will be. When ``finish_message`` was given the final ``content``, that
    (not the deltas) is the reply's text.
    """
    after = validate_after_seq(after_seq)
    validate_limit(limit, maximum=MAX_CHUNK_PAGE)
    row = _stream_row(tx, user_id, message_id, conversation_id, lock=False)
    params = {"mid": row.message.id, "uid": user_id, "after": after, "lim": limit + 1}
    chunks = construct_all(StreamChunk, _read(tx, _sql.CHUNKS_AFTER, params))
    return StreamRead(message=row.message, chunks=chunks[:limit], has_more=len(chunks) > limit)


# ------------------------------------------------------------------------- retention


@operation(Mode.READ, bounded=True)
def get_retention_policy(tx: Tx, user_id: str) -> RetentionPolicy:
    """``user_id``'s own retention defaults (``None``: the global default applies)."""
    rows = _read(tx, _sql.USER_POLICY, {"uid": user_id})
    return RetentionPolicy(**rows[0]) if rows else RetentionPolicy()


@operation(Mode.WRITE)
def set_retention_policy(
    tx: Tx,
    user_id: str,
    *,
    retention: str | None = _UNSET,
    temporary_retention: str | None = _UNSET,
) -> RetentionPolicy:
    """Set ``user_id``'s defaults for new conversations (``"30d"``, ``"none"``; ``None``
    goes back to the global default). A field left out is not changed. Conversations
    that exist keep the policy they were created with.
    """
    values: dict[str, Any] = {}
    for field, value in (("retention", retention), ("temporary_retention", temporary_retention)):
        if value is not _UNSET:
            values[field] = None if value is None else normalize_retention(value, field)
    if values:
        if (register := _sql.upsert_user(tx.pg, user_id, _now(tx))) is not None:
            tx.conn.execute(register)
        tx.conn.execute(_sql.upsert_user_policy(tx.pg, user_id, values))
    return get_retention_policy(tx, user_id)


@operation(Mode.READ)
def count_expired(tx: Tx, now: datetime) -> PurgeReport:
    """What a purge at ``now`` would delete (no user: the purge is the operator's)."""
    [row] = _read(tx, _sql.COUNT_EXPIRED, {"now": now})
    return PurgeReport(**{k: int(v) for k, v in row.items()}, dry_run=True)


@operation(Mode.STATEMENT)
def purge_batch(tx: Tx, now: datetime, batch_size: int) -> PurgeReport:
    """Delete up to ``batch_size`` conversations expired at ``now``, with tombstones.

    One statement on PostgreSQL (``FOR UPDATE SKIP LOCKED``), one short ``BEGIN
    IMMEDIATE`` transaction on SQLite; the foreign keys cascade to the messages.
    """
    deleted_at = _now(tx)
    if tx.pg:
        params = {"now": now, "deleted_at": deleted_at, "lim": batch_size}
        [row] = _read(tx, _sql.PG_PURGE_BATCH, params)
        return PurgeReport(**{k: int(v) for k, v in row.items()}, batches=1)
    _, rows = _driver_execute(tx, _sql.SQLITE_PURGE_BATCH, {"now": now, "lim": batch_size})
    _bury(tx, rows, deleted_at)
    return PurgeReport(
        conversations=len(rows),
        temporary=sum(1 for r in rows if r[2]),
        messages=sum(int(r[3]) for r in rows),
        batches=1,
    )


MAX_PURGE_BATCH = 100_000
PurgeStep = tuple[Callable[..., Any], dict[str, Any]]


def purge_plan(
    config: StoreConfig,
    *,
    batch_size: int,
    now: datetime | None,
    dry_run: bool,
    on_batch: Callable[[PurgeReport], None] | None,
) -> Generator[PurgeStep, PurgeReport, PurgeReport]:
    """The purge, written once: yields ``(operation, kwargs)`` for the store to run (each
    batch its own transaction) and is sent each result; returns the total.

    ``now`` (default: the store's clock) is fixed for the whole purge, so a conversation
    that expires meanwhile waits for the next run and the loop always ends.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValidationError("batch_size", "must be an integer")
    if not 1 <= batch_size <= MAX_PURGE_BATCH:
        raise ValidationError("batch_size", f"must be between 1 and {MAX_PURGE_BATCH}")
    at = _instant(now, "now") or as_utc(config.clock())
    if dry_run:
        return (yield count_expired, {"now": at})
    total = PurgeReport()
    while True:
        done = yield purge_batch, {"now": at, "batch_size": batch_size}
        if done.conversations:
            total = PurgeReport(
                conversations=total.conversations + done.conversations,
                temporary=total.temporary + done.temporary,
                messages=total.messages + done.messages,
                batches=total.batches + 1,
            )
            if on_batch is not None:
                on_batch(total)
        if done.conversations < batch_size:
            return total
