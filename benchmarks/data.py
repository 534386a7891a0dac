"""Fresh benchmark databases and fast bulk loading (setup only: never what is timed).

PostgreSQL: a dedicated database (``convostore_bench`` by default) is dropped and created by
the run; SQLite: a file in a temporary directory. Both are brought to the schema by the
shipped migrations, so the raw baseline and convostore work on exactly the same tables,
indexes and constraints. Bulk loads use ``COPY`` (PostgreSQL) and ``executemany`` inside one
transaction (SQLite) on the raw connection, with explicit ids so no round trip is needed to
learn them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from sqlalchemy import make_url

from convostore.config import get_settings
from convostore.db import make_engine
from convostore.migrate import upgrade

Backend = Literal["sqlite", "postgresql"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql")

PG_SERVER_URL = os.environ.get("CONVOSTORE_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
PG_BENCH_DB = os.environ.get("CONVOSTORE_BENCH_PG_DB", "convostore_bench")

# ~200 characters: the size of a short chat turn.
FILLER = (
    "The quick brown fox jumps over the lazy dog while the assistant explains, step by "
    "step, how to paginate a conversation with a keyset cursor instead of an offset."
)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def text_of(tag: str, i: int) -> str:
    """The content of message ``i`` of the conversation tagged ``tag`` (unique, ordered)."""
    return f"{tag}#{i:07d} {FILLER}"


def role_of(i: int) -> str:
    """Alternate user/assistant turns, starting with the user."""
    return "user" if i % 2 else "assistant"


def messages_of(tag: str, start: int, stop: int) -> list[tuple[str, str]]:
    """``(role, content)`` for messages ``start..stop-1`` of conversation ``tag``."""
    return [(role_of(i), text_of(tag, i)) for i in range(start, stop)]


def chat_turn(i: int) -> tuple[str, str, list[dict[str, Any]] | None, str | None]:
    """Message ``i`` of the W7 conversation: user, a tool call, its result, the answer.

    ``(role, content, tool_calls, tool_call_id)``; every fourth message is a tool result
    answering the call right before it, as an agent loop stores them.
    """
    text = text_of("h", i)
    kind = i % 4
    if kind == 1:
        return ("user", text, None, None)
    if kind == 2:
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"query": text[:40]})},
        }
        return ("assistant", "", [call], None)
    if kind == 3:
        return ("tool", text, None, f"call_{i - 1}")
    return ("assistant", text, None, None)


def sqlite_ts(moment: datetime) -> str:
    """The text SQLAlchemy (and so convostore) stores for a UTC datetime on SQLite."""
    return moment.astimezone(UTC).strftime(SQLITE_TS)


def sqlite_connect(path: str | Path) -> sqlite3.Connection:
    """A stdlib connection with the PRAGMAs convostore uses (WAL, FKs, busy timeout)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    # The store's own level (CONVOSTORE_SQLITE_SYNCHRONOUS, default FULL): equal durability.
    conn.execute(f"PRAGMA synchronous = {get_settings().sqlite_synchronous.upper()}")
    return conn


@dataclass
class Database:
    """One fresh, migrated benchmark database."""

    backend: Backend
    url: str
    path: Path | None = None

    @property
    def libpq_url(self) -> str:
        """The PostgreSQL URL as libpq (psycopg) spells it."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)

    def raw(self) -> psycopg.Connection[Any] | sqlite3.Connection:
        """A new raw-driver connection (autocommit on PostgreSQL, no implicit BEGIN)."""
        if self.backend == "postgresql":
            return psycopg.connect(self.libpq_url, autocommit=True)
        assert self.path is not None
        return sqlite_connect(self.path)

    @property
    def async_url(self) -> str:
        """The SQLAlchemy async URL (for the Agents SDK, which wants its own engine)."""
        if self.backend == "postgresql":
            return make_url(self.url).set(drivername="postgresql+psycopg").render_as_string(False)
        return f"sqlite+aiosqlite:///{self.path}"


def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_SERVER_URL, autocommit=True)


def create_database(backend: Backend, workdir: Path, name: str = PG_BENCH_DB) -> Database:
    """Drop/create a database of ``backend`` and migrate it with the shipped migrations."""
    if backend == "postgresql":
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
        db = Database(backend, url)
    else:
        path = workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = Database(backend, f"sqlite:///{path}", path)
    return migrated(db)


def fresh_databases(backends: Iterable[Backend], name: str) -> Iterator[Database]:
    """A fresh, migrated database of each backend in turn, dropped when its turn ends."""
    with tempfile.TemporaryDirectory(prefix="convostore-bench-") as tmp:
        for backend in backends:
            db = create_database(backend, Path(tmp), name=name)
            try:
                yield db
            finally:
                drop_database(db)


def migrated(db: Database) -> Database:
    """Bring ``db`` to the newest schema with convostore's shipped migrations."""
    engine = make_engine(db.url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return db


def drop_database(db: Database) -> None:
    """Remove the benchmark database (best effort: a failed drop must not hide results)."""
    if db.backend == "postgresql":
        name = make_url(db.url).database
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif db.path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db.path}{suffix}").unlink(missing_ok=True)


ConversationRow = tuple[int, str, str | None, int, datetime, datetime]
MessageRow = tuple[int, str, int, str, str, datetime]


@dataclass
class Loader:
    """Bulk-load users, conversations and messages through the raw connection."""

    db: Database
    conn: Any = None
    next_conversation: int = 0
    _clock: int = 0
    users: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.conn = self.db.raw()
        row = self.conn.execute("SELECT coalesce(max(id), 0) FROM conversations").fetchone()
        self.next_conversation = int(row[0]) + 1
        self._clock = 0

    @property
    def pg(self) -> bool:
        return self.db.backend == "postgresql"

    def tick(self) -> datetime:
        """A strictly increasing timestamp, so 'written after' is unambiguous."""
        self._clock += 1
        return EPOCH + timedelta(microseconds=self._clock)

    def add_users(self, user_ids: Iterable[str]) -> None:
        new = [u for u in user_ids if u not in self.users]
        self.users.update(new)
        now = self.tick()
        rows = [(u, now if self.pg else sqlite_ts(now)) for u in new]
        sql = (
            "INSERT INTO convostore_users (id, created_at) VALUES ({0}, {0}) ON CONFLICT DO NOTHING"
        )
        self._many(sql.format("%s" if self.pg else "?"), rows)

    def add_conversations(self, rows: Iterable[tuple[str, str | None, datetime]]) -> list[int]:
        """``(user_id, title, updated_at)`` rows; returns their ids (assigned here)."""
        out: list[ConversationRow] = []
        for user_id, title, updated_at in rows:
            out.append((self.next_conversation, user_id, title, 0, updated_at, updated_at))
            self.next_conversation += 1
        cols = "id, user_id, title, message_count, created_at, updated_at"
        self._load("conversations", cols, out, ts_columns=(4, 5))
        self._sync_sequence("conversations")
        return [r[0] for r in out]

    def add_messages(
        self, conversation_id: int, user_id: str, tag: str, start: int, stop: int
    ) -> None:
        """Messages ``start..stop-1`` (positions too) and the conversation's counter."""
        rows: Iterator[MessageRow] = (
            (conversation_id, user_id, i, role_of(i), text_of(tag, i), self.tick())
            for i in range(start, stop)
        )
        cols = "conversation_id, user_id, position, role, content, created_at"
        self._load("messages", cols, rows, ts_columns=(5,))
        last = self.tick()
        p = "%s" if self.pg else "?"
        self.conn.execute(
            f"UPDATE conversations SET message_count = {p}, updated_at = {p} WHERE id = {p}",
            (stop - 1, last if self.pg else sqlite_ts(last), conversation_id),
        )

    def add_chat(self, conversation_id: int, user_id: str, n: int) -> None:
        """Messages 1..n of :func:`chat_turn` (tool calls and results), and the counter."""
        rows: list[tuple[Any, ...]] = []
        for i in range(1, n + 1):
            role, content, calls, call_id = chat_turn(i)
            calls_json = json.dumps(calls) if calls is not None else None
            rows.append(
                (conversation_id, user_id, i, role, content, calls_json, call_id, self.tick())
            )
        cols = (
            "conversation_id, user_id, position, role, content, tool_calls, tool_call_id,"
            " created_at"
        )
        self._load("messages", cols, rows, ts_columns=(7,))
        last = self.tick()
        p = "%s" if self.pg else "?"
        self.conn.execute(
            f"UPDATE conversations SET message_count = {p}, updated_at = {p} WHERE id = {p}",
            (n, last if self.pg else sqlite_ts(last), conversation_id),
        )

    def analyze(self) -> None:
        """Fresh planner statistics, as a production database would have."""
        self.conn.execute("ANALYZE")
        if not self.pg:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.close()

    def _load(
        self, table: str, cols: str, rows: Iterable[tuple[Any, ...]], ts_columns: tuple[int, ...]
    ) -> None:
        if self.pg:
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * (cols.count(",") + 1))

        def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(sqlite_ts(v) if i in ts_columns else v for i, v in enumerate(row))

        self._many(f"INSERT INTO {table} ({cols}) VALUES ({marks})", map(convert, rows))

    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        if self.pg:
            with self.conn.cursor() as cur:
                cur.executemany(sql, list(rows))
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(sql, rows)
        self.conn.execute("COMMIT")

    def _sync_sequence(self, table: str) -> None:
        # Explicit ids bypass the PostgreSQL sequence; SQLite's AUTOINCREMENT follows them.
        if self.pg:
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )


@dataclass
class ReadSet:
    """The shared read data set (W3, W4, W5) and the answers a correct store must give."""

    reader: str
    conv_read: int
    conv_tail: int
    n_read: int
    n_tail: int
    lister: str
    n_list: int
    conv_history: int = 0
    n_history: int = 0

    def expected_all(self) -> list[str]:
        return [text_of(f"c{self.conv_read}", i) for i in range(1, self.n_read + 1)]

    def expected_top(self, n: int) -> list[str]:
        """Titles of the lister's ``n`` most recently active conversations, newest first."""
        return [f"L{k:07d}" for k in range(self.n_list - 1, max(-1, self.n_list - 1 - n), -1)]

    def expected_tail(self, n: int) -> list[str]:
        tag = f"c{self.conv_tail}"
        return [text_of(tag, i) for i in range(self.n_tail - n + 1, self.n_tail + 1)]


def build_read_set(
    db: Database,
    *,
    n_read: int = 1000,
    n_tail: int = 20_000,
    noise_conversations: int = 20,
    noise_messages: int = 1000,
    n_list: int = 2000,
    other_users: int = 10,
    n_history: int = 1000,
) -> ReadSet:
    """Load W3/W4/W5 data: other conversations' messages are written after the tail one,
    and the listed user's conversations are interleaved in time with other users'."""
    load = Loader(db)
    try:
        reader, lister = "bench-reader", "bench-lister"
        others = [f"bench-other-{k:02d}" for k in range(other_users)]
        load.add_users([reader, lister, "bench-noise", *others])
        conv_read, conv_tail = load.add_conversations(
            [(reader, "read", load.tick()), (reader, "tail", load.tick())]
        )
        load.add_messages(conv_read, reader, f"c{conv_read}", 1, n_read + 1)
        load.add_messages(conv_tail, reader, f"c{conv_tail}", 1, n_tail + 1)
        (conv_history,) = load.add_conversations([(reader, "history", load.tick())])
        load.add_chat(conv_history, reader, n_history)
        noise = load.add_conversations(
            ("bench-noise", "noise", load.tick()) for _ in range(noise_conversations)
        )
        for cid in noise:
            load.add_messages(cid, "bench-noise", f"c{cid}", 1, noise_messages + 1)
        # Round-robin in time: the lister's k-th conversation, then each other user's.
        rows: list[tuple[str, str | None, datetime]] = []
        for k in range(n_list):
            rows.append((lister, f"L{k:07d}", load.tick()))
            rows.extend((other, f"O{k:07d}", load.tick()) for other in others)
        load.add_conversations(rows)
        load.analyze()
    finally:
        load.close()
    return ReadSet(
        reader, conv_read, conv_tail, n_read, n_tail, lister, n_list, conv_history, n_history
    )
