"""What is benchmarked: convostore (sync, async), the raw-driver baseline, the alternatives.

Every subject exposes the same small surface. A method may return a value or an awaitable
(the runner awaits it inside the timed region); inputs are converted to the subject's own
format by ``prepare_*`` *before* the clock starts, and results are converted to plain
strings by ``texts``/``titles`` *after* it stops, for the correctness checks.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import psycopg

from benchmarks.data import Database, sqlite_connect, sqlite_ts
from convostore import AsyncStore, Store
from convostore.history import approximate_tokens

Msg = tuple[str, str]  # (role, content)
Writer = Callable[[str, Any, Any], Any]

ALL_WORKLOADS = frozenset({"W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"})
#: W7: the history window's token budget (on 1,000 messages of ~55 tokens: ~70 of them).
HISTORY_TOKENS = 4000


class Subject:
    """Base class: the uniform surface the workloads drive."""

    name: ClassVar[str] = "?"
    is_async: ClassVar[bool] = False
    #: Works on the convostore schema, so it reads the shared data set (W3..W5).
    shares_schema: ClassVar[bool] = True
    supports: ClassVar[frozenset[str]] = ALL_WORKLOADS
    note: ClassVar[str] = ""
    #: Keeps the conversation's counter and positions (checked after every write workload).
    keeps_counter: ClassVar[bool] = True

    def __init__(self, db: Database) -> None:
        self.db = db

    async def open(self) -> None:
        """Connect (not timed)."""

    async def close(self) -> None:
        """Release connections (not timed)."""

    def create_conversation(self, user_id: str, title: str) -> Any:
        raise NotImplementedError

    def prepare_one(self, role: str, content: str) -> Any:
        return {"role": role, "content": content}

    def prepare_batch(self, messages: Sequence[Msg]) -> Any:
        return [self.prepare_one(r, c) for r, c in messages]

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        raise NotImplementedError

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        raise NotImplementedError

    def read_all(self, user_id: str, conv: Any) -> Any:
        raise NotImplementedError

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        raise NotImplementedError

    def list_recent(self, user_id: str, n: int) -> Any:
        raise NotImplementedError

    def history(self, user_id: str, conv: Any, max_tokens: int) -> Any:
        """The model-ready window (chat dicts, oldest first) within ``max_tokens``."""
        raise NotImplementedError

    def texts(self, result: Any) -> list[str]:
        """The message contents of a read result, in the order returned."""
        return [m.content for m in result]

    def titles(self, result: Any) -> list[str]:
        """The conversation titles of a listing result, in the order returned."""
        return [c.title for c in result.data]

    def writers(self, k: int) -> list[Writer]:
        """``k`` append callables for concurrent writers (each with its own connection
        where the subject needs one); opened before the clock starts."""
        return [self.append] * k

    def release_writers(self) -> None:
        """Close what :meth:`writers` opened."""


# ------------------------------------------------------------------------- convostore


class ConvoSync(Subject):
    name = "convostore"
    store: Store

    async def open(self) -> None:
        self.store = Store(self.db.url)

    async def close(self) -> None:
        self.store.close()

    def create_conversation(self, user_id: str, title: str) -> Any:
        return self.store.create_conversation(user_id, title=title).id

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return self.store.append_message(user_id, conv, message)

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        return self.store.append_messages(user_id, conv, batch)

    def read_all(self, user_id: str, conv: Any) -> Any:
        return self.store.get_messages(user_id, conv)

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        return self.store.last_messages(user_id, conv, n)

    def list_recent(self, user_id: str, n: int) -> Any:
        return self.store.list_conversations(user_id, limit=n)

    def history(self, user_id: str, conv: Any, max_tokens: int) -> Any:
        return self.store.get_history(user_id, conv, max_tokens=max_tokens)


class ConvoAsync(Subject):
    name = "convostore-async"
    is_async = True
    store: AsyncStore

    async def open(self) -> None:
        self.store = AsyncStore(self.db.url)

    async def close(self) -> None:
        await self.store.aclose()

    async def create_conversation(self, user_id: str, title: str) -> Any:
        return (await self.store.create_conversation(user_id, title=title)).id

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return self.store.append_message(user_id, conv, message)

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        return self.store.append_messages(user_id, conv, batch)

    def read_all(self, user_id: str, conv: Any) -> Any:
        return self.store.get_messages(user_id, conv)

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        return self.store.last_messages(user_id, conv, n)

    def list_recent(self, user_id: str, n: int) -> Any:
        return self.store.list_conversations(user_id, limit=n)

    def history(self, user_id: str, conv: Any, max_tokens: int) -> Any:
        return self.store.get_history(user_id, conv, max_tokens=max_tokens)


# ------------------------------------------------------------------------ raw drivers

MESSAGE_COLS = (
    "id, conversation_id, user_id, position, role, content, tool_calls, tool_call_id, "
    "metadata, client_key, created_at"
)
CONVERSATION_COLS = "id, user_id, title, metadata, message_count, created_at, updated_at"

# One round trip, atomic by itself: the UPDATE's row lock serialises appenders, the
# counter gives the position, the INSERT reads it from the CTE.
PG_APPEND_ONE = """
WITH c AS (
    UPDATE conversations SET message_count = message_count + 1, updated_at = now()
     WHERE id = %(cid)s AND user_id = %(uid)s
 RETURNING id, user_id, message_count)
INSERT INTO messages (conversation_id, user_id, position, role, content, created_at)
SELECT id, user_id, message_count, %(role)s, %(content)s, now() FROM c
RETURNING id, position
"""
PG_APPEND_BATCH = """
WITH c AS (
    UPDATE conversations SET message_count = message_count + %(n)s, updated_at = now()
     WHERE id = %(cid)s AND user_id = %(uid)s
 RETURNING id, user_id, message_count - %(n)s AS base)
INSERT INTO messages (conversation_id, user_id, position, role, content, created_at)
SELECT c.id, c.user_id, c.base + v.ord, v.role, v.content, now()
  FROM c, unnest(%(roles)s::text[], %(contents)s::text[]) WITH ORDINALITY AS v(role, content, ord)
RETURNING id, position
"""
SELECT_ALL = (
    f"SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = {{p}} AND user_id = {{p}} "
    "ORDER BY position"
)
SELECT_LAST = (
    f"SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = {{p}} AND user_id = {{p}} "
    "ORDER BY position DESC LIMIT {p}"
)
# W7, a page at a time, newest first: only what the chat format needs.
SELECT_HISTORY = (
    "SELECT role, content, tool_calls, tool_call_id, position FROM messages"
    " WHERE conversation_id = {p} AND user_id = {p} AND position < {p}"
    " ORDER BY position DESC LIMIT {p}"
)
HISTORY_PAGE = 200
# n + 1 rows, as any keyset pager fetches to know whether there is a next page.
SELECT_RECENT = (
    f"SELECT {CONVERSATION_COLS} FROM conversations WHERE user_id = {{p}} "
    "ORDER BY updated_at DESC, id DESC LIMIT {p}"
)


class RawDriver(Subject):
    """The raw baselines' reads: the same hand-written SELECTs on a DB-API connection."""

    conn: Any
    select_all: str
    select_last: str
    select_recent: str
    select_history: str

    def read_all(self, user_id: str, conv: Any) -> Any:
        return self.conn.execute(self.select_all, (conv, user_id)).fetchall()

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        rows = self.conn.execute(self.select_last, (conv, user_id, n)).fetchall()
        rows.reverse()
        return rows

    def list_recent(self, user_id: str, n: int) -> Any:
        return self.conn.execute(self.select_recent, (user_id, n + 1)).fetchall()[:n]

    def history(self, user_id: str, conv: Any, max_tokens: int) -> Any:
        """What a hand-written chat endpoint does: pages newest first, a tool result joins
        the call stored before it, whole units are taken until the budget is spent."""
        units: list[list[dict[str, Any]]] = []
        tokens, results, before = 0, [], 2**31 - 1
        while True:
            page = self.conn.execute(
                self.select_history, (conv, user_id, before, HISTORY_PAGE)
            ).fetchall()
            for role, content, calls, call_id, _ in page:
                if role == "tool":
                    results.append({"role": "tool", "content": content, "tool_call_id": call_id})
                    continue
                if calls:
                    calls = json.loads(calls) if isinstance(calls, str) else calls
                    call = {"role": "assistant", "content": content or None, "tool_calls": calls}
                    unit = [call, *reversed(results)]
                else:
                    unit = [{"role": role, "content": content}]
                results = []
                cost = sum(approximate_tokens(m) for m in unit)
                if tokens + cost > max_tokens:
                    return [m for u in reversed(units) for m in u]
                tokens += cost
                units.append(unit)
            if len(page) < HISTORY_PAGE:
                return [m for u in reversed(units) for m in u]
            before = page[-1][4]

    def texts(self, result: Any) -> list[str]:
        return [row[5] for row in result]

    def titles(self, result: Any) -> list[str]:
        return [row[2] for row in result]


class RawPostgres(RawDriver):
    """psycopg 3, autocommit, hand-written SQL (server-side prepared after 5 runs)."""

    name = "raw psycopg"
    conn: psycopg.Connection[Any]
    _extra: list[psycopg.Connection[Any]]
    select_all = SELECT_ALL.format(p="%s")
    select_last = SELECT_LAST.format(p="%s")
    select_recent = SELECT_RECENT.format(p="%s")
    select_history = SELECT_HISTORY.format(p="%s")

    async def open(self) -> None:
        self.conn = psycopg.connect(self.db.libpq_url, autocommit=True)
        self._extra = []

    async def close(self) -> None:
        self.release_writers()
        self.conn.close()

    def create_conversation(self, user_id: str, title: str) -> Any:
        return _raw_create(self.conn, True, user_id, title)

    def prepare_one(self, role: str, content: str) -> Any:
        return (role, content)

    def prepare_batch(self, messages: Sequence[Msg]) -> Any:
        return ([r for r, _ in messages], [c for _, c in messages])

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return self._append_on(self.conn, user_id, conv, message)

    @staticmethod
    def _append_on(conn: psycopg.Connection[Any], user_id: str, conv: Any, message: Any) -> Any:
        params = {"cid": conv, "uid": user_id, "role": message[0], "content": message[1]}
        row = conn.execute(PG_APPEND_ONE, params).fetchone()
        if row is None:
            raise LookupError(conv)
        return row

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        roles, contents = batch
        params = {
            "cid": conv,
            "uid": user_id,
            "n": len(roles),
            "roles": roles,
            "contents": contents,
        }
        rows = self.conn.execute(PG_APPEND_BATCH, params).fetchall()
        if not rows:
            raise LookupError(conv)
        return rows

    def writers(self, k: int) -> list[Writer]:
        out: list[Writer] = []
        for _ in range(k):
            conn = psycopg.connect(self.db.libpq_url, autocommit=True)
            self._extra.append(conn)
            out.append(partial(self._append_on, conn))
        return out

    def release_writers(self) -> None:
        for conn in self._extra:
            conn.close()
        self._extra = []


def _raw_create(conn: Any, pg: bool, user_id: str, title: str) -> int:
    now = datetime.now(UTC)
    p, stamp = ("%s", now) if pg else ("?", sqlite_ts(now))
    conn.execute(
        f"INSERT INTO convostore_users (id, created_at) VALUES ({p}, {p}) ON CONFLICT DO NOTHING",
        (user_id, stamp),
    )
    row = conn.execute(
        "INSERT INTO conversations (user_id, title, message_count, created_at, updated_at) "
        f"VALUES ({p}, {p}, 0, {p}, {p}) RETURNING id",
        (user_id, title, stamp, stamp),
    ).fetchone()
    return int(row[0])


SQLITE_BUMP = (
    "UPDATE conversations SET message_count = message_count + ?, updated_at = ? "
    "WHERE id = ? AND user_id = ? RETURNING message_count"
)
SQLITE_INSERT = (
    "INSERT INTO messages (conversation_id, user_id, position, role, content, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


class RawSqlite(RawDriver):
    """stdlib sqlite3, same PRAGMAs, ``BEGIN IMMEDIATE`` + two statements per append."""

    name = "raw sqlite3"
    conn: sqlite3.Connection
    _extra: list[sqlite3.Connection]
    select_all = SELECT_ALL.format(p="?")
    select_last = SELECT_LAST.format(p="?")
    select_recent = SELECT_RECENT.format(p="?")
    select_history = SELECT_HISTORY.format(p="?")

    async def open(self) -> None:
        assert self.db.path is not None
        self.conn = sqlite_connect(self.db.path)
        self._extra = []

    async def close(self) -> None:
        self.release_writers()
        self.conn.close()

    def create_conversation(self, user_id: str, title: str) -> Any:
        return _raw_create(self.conn, False, user_id, title)

    def prepare_one(self, role: str, content: str) -> Any:
        return (role, content)

    def prepare_batch(self, messages: Sequence[Msg]) -> Any:
        return list(messages)

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return self._append_on(self.conn, user_id, conv, [message])

    @staticmethod
    def _append_on(conn: sqlite3.Connection, user_id: str, conv: Any, batch: Any) -> Any:
        now = sqlite_ts(datetime.now(UTC))
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(SQLITE_BUMP, (len(batch), now, conv, user_id)).fetchone()
            if row is None:
                raise LookupError(conv)
            base = row[0] - len(batch)
            conn.executemany(
                SQLITE_INSERT,
                [(conv, user_id, base + i, r, c, now) for i, (r, c) in enumerate(batch, 1)],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return base

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        return self._append_on(self.conn, user_id, conv, batch)

    @classmethod
    def _append_one_on(cls, conn: sqlite3.Connection, user_id: str, conv: Any, msg: Any) -> Any:
        return cls._append_on(conn, user_id, conv, [msg])

    def writers(self, k: int) -> list[Writer]:
        assert self.db.path is not None
        out: list[Writer] = []
        for _ in range(k):
            conn = sqlite_connect(self.db.path)
            self._extra.append(conn)
            out.append(partial(self._append_one_on, conn))
        return out

    def release_writers(self) -> None:
        for conn in self._extra:
            conn.close()
        self._extra = []


# ------------------------------------------------------------------------- the floor

FLOOR_WORKLOADS = frozenset({"W1", "W2", "W3", "W4", "W5"})


class _Floor:
    """The physical floor of the job, for the second table: a bare ``INSERT`` per message
    (the position counted in Python: no counter, no ``updated_at``, no isolation check
    beyond the row itself) and reads of ``role, content`` only."""

    name: ClassVar[str]
    supports = FLOOR_WORKLOADS
    keeps_counter = False
    note = "the floor: bare INSERT, SELECT role, content; not a usable store"
    p: ClassVar[str]
    _next: dict[Any, int]

    def _position(self, conv: Any, n: int) -> int:
        """The first of ``n`` new positions in ``conv`` (this process is its only writer)."""
        first = self._next.get(conv, 1)
        self._next[conv] = first + n
        return first

    async def open(self) -> None:
        await super().open()  # the raw driver's (next in the MRO): connect
        self._next = {}
        self.insert, self.select_all, self.select_last, self.select_recent = self._floor_sql()

    def _floor_sql(self) -> tuple[str, str, str, str]:
        p = self.p
        cols = "conversation_id, user_id, position, role, content, created_at"
        insert = f"INSERT INTO messages ({cols}) VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
        where = f"FROM messages WHERE conversation_id = {p} AND user_id = {p}"
        select_all = f"SELECT role, content {where} ORDER BY position"
        select_last = f"SELECT role, content {where} ORDER BY position DESC LIMIT {p}"
        recent = (
            f"SELECT title FROM conversations WHERE user_id = {p}"
            f" ORDER BY updated_at DESC, id DESC LIMIT {p}"
        )
        return insert, select_all, select_last, recent

    def texts(self, result: Any) -> list[str]:
        return [row[1] for row in result]

    def titles(self, result: Any) -> list[str]:
        return [row[0] for row in result]


class FloorPostgres(_Floor, RawPostgres):
    name = "floor psycopg"
    p = "%s"

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        now = datetime.now(UTC)
        row = (conv, user_id, self._position(conv, 1), message[0], message[1], now)
        return self.conn.execute(self.insert, row)

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        roles, contents = batch
        first, now = self._position(conv, len(roles)), datetime.now(UTC)
        rows = [
            (conv, user_id, first + i, r, c, now)
            for i, (r, c) in enumerate(zip(roles, contents, strict=True))
        ]
        with self.conn.cursor() as cur:
            cur.executemany(self.insert, rows)


class FloorSqlite(_Floor, RawSqlite):
    name = "floor sqlite3"
    p = "?"

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return self.append_batch(user_id, conv, [message])

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        first, now = self._position(conv, len(batch)), sqlite_ts(datetime.now(UTC))
        rows = [(conv, user_id, first + i, r, c, now) for i, (r, c) in enumerate(batch)]
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.insert, rows)
        self.conn.execute("COMMIT")


# ----------------------------------------------------------------------- alternatives

ALT_WORKLOADS = frozenset({"W1", "W2", "W3", "W4"})


class LangChainPostgres(Subject):
    """``langchain_postgres.PostgresChatMessageHistory`` (sync psycopg connection)."""

    name = "langchain-postgres"
    shares_schema = False
    supports = ALT_WORKLOADS
    note = "no tail query: W4 reads the whole history and slices the last n"
    table = "langchain_messages"
    conn: psycopg.Connection[Any]

    async def open(self) -> None:
        from langchain_postgres import PostgresChatMessageHistory

        self._cls = PostgresChatMessageHistory
        self.conn = psycopg.connect(self.db.libpq_url)
        PostgresChatMessageHistory.create_tables(self.conn, self.table)

    async def close(self) -> None:
        self.conn.close()

    def create_conversation(self, user_id: str, title: str) -> Any:
        return self._cls(self.table, str(uuid.uuid4()), sync_connection=self.conn)

    def prepare_one(self, role: str, content: str) -> Any:
        from langchain_core.messages import AIMessage, HumanMessage

        return HumanMessage(content) if role == "user" else AIMessage(content)

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return conv.add_message(message)

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        return conv.add_messages(batch)

    def read_all(self, user_id: str, conv: Any) -> Any:
        return conv.get_messages()

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        return conv.get_messages()[-n:]


class AgentsSession(Subject):
    """OpenAI Agents SDK ``SQLAlchemySession`` on an async SQLAlchemy engine."""

    name = "agents-sdk sqlalchemy"
    is_async = True
    shares_schema = False
    supports = ALT_WORKLOADS

    async def open(self) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        self._cls = SQLAlchemySession
        self.engine = create_async_engine(self.db.async_url)
        # Creates the tables once (its documented development path).
        first = SQLAlchemySession("bench-init", engine=self.engine, create_tables=True)
        await first.get_items()

    async def close(self) -> None:
        await self.engine.dispose()

    def create_conversation(self, user_id: str, title: str) -> Any:
        return self._cls(str(uuid.uuid4()), engine=self.engine)

    def append(self, user_id: str, conv: Any, message: Any) -> Any:
        return conv.add_items([message])

    def append_batch(self, user_id: str, conv: Any, batch: Any) -> Any:
        return conv.add_items(batch)

    def read_all(self, user_id: str, conv: Any) -> Any:
        return conv.get_items()

    def read_last(self, user_id: str, conv: Any, n: int) -> Any:
        return conv.get_items(limit=n)

    def texts(self, result: Any) -> list[str]:
        return [item["content"] for item in result]


def subjects_for(db: Database, *, alternatives: bool = True) -> tuple[list[Subject], list[str]]:
    """The subjects to run on ``db`` and a message for each alternative that was skipped."""
    pg = db.backend == "postgresql"
    raw: Subject = RawPostgres(db) if pg else RawSqlite(db)
    floor: Subject = FloorPostgres(db) if pg else FloorSqlite(db)
    out: list[Subject] = [raw, floor, ConvoSync(db), ConvoAsync(db)]
    skipped: list[str] = []
    if not alternatives:
        return out, skipped
    if db.backend == "postgresql":
        try:
            import langchain_postgres  # noqa: F401
        except ImportError as exc:
            skipped.append(f"langchain-postgres skipped: not importable ({exc})")
        else:
            out.append(LangChainPostgres(db))
    try:
        import agents.extensions.memory.sqlalchemy_session  # noqa: F401
    except ImportError as exc:
        skipped.append(f"agents-sdk SQLAlchemySession skipped: not importable ({exc})")
    else:
        out.append(AgentsSession(db))
    return out, skipped
