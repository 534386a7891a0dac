"""Engines: URL normalisation, SQLite set-up, and the write-transaction switch.

SQLite gets, on every connection: foreign keys on (cascades are real), WAL (readers never
block the writer), a busy timeout (a writer waits for the lock instead of failing with
"database is locked"; 30 s, or the URL's ``?timeout=SECONDS``), ``synchronous = FULL``
(durable commits; ``CONVOSTORE_SQLITE_SYNCHRONOUS=normal`` trades that away), and
``BEGIN IMMEDIATE``
for write transactions, so two writers never both hold a read lock and deadlock on the
upgrade to a write lock.

PostgreSQL behind a transaction-mode pooler (PgBouncer, Neon's pooled URLs; see
:func:`convostore.config.uses_pooler`) gets no server-side prepared statements: psycopg
prepares a statement after its fifth run, and a pooler before PgBouncer 1.21 hands the
next transaction a server connection that never saw it ("prepared statement ... does not
exist"). Nothing else convostore does needs a session: autocommit is a client-side flag
of the driver, and the migration lock is transaction-scoped.

PostgreSQL engines convostore creates itself (not a pooler's, not a host's) rename a
session's zone to ``UTC`` when it connects in UTC under another name (``Etc/UTC`` is
Debian's default): the driver then hands timestamps over as UTC datetimes and they need
no conversion, a third of a microsecond each (~15% of reading 1,000 messages). Every
other session keeps its zone and its values are converted; either way every timestamp
comes back aware and in UTC.
"""

from __future__ import annotations

import os
import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from convostore._ddl import MESSAGES_FTS, TITLES_FTS
from convostore.config import POOLER_FLAG, get_settings, normalize_url, uses_pooler
from convostore.errors import ConfigurationError, require_extra

__all__ = [
    "WRITE_OPTION",
    "analyze",
    "check_in",
    "configure_engine",
    "custom_plans",
    "driver_call",
    "driver_error",
    "is_pooled",
    "make_async_engine",
    "make_engine",
    "observed",
    "sqlite_write_lock",
    "transactions_watched",
    "watched",
]

#: Execution option that makes a SQLite transaction ``BEGIN IMMEDIATE``.
WRITE_OPTION = "convostore_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_CONFIGURED = "_convostore_configured"
#: Zones that are UTC under another name: psycopg hands their timestamps over in a zone
#: object of that name, which convostore converts; ``UTC`` itself it gives as UTC.
_UTC_ALIASES = frozenset(
    ("Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu")
    + ("GMT", "Etc/GMT", "Etc/GMT0", "GMT0", "Etc/Greenwich", "Greenwich")
)
_POOLED = "_convostore_pooled"
#: libpq's PQTRANS_IDLE: no transaction open (psycopg.pq.TransactionStatus.IDLE, whose
#: import would load psycopg for SQLite-only installs).
_PQ_IDLE = 0


def _check_driver(url: URL) -> None:
    if url.get_backend_name() == "postgresql":
        require_extra("psycopg", "postgres", "PostgreSQL support")
    else:
        _busy_timeout_ms(url)  # a bad ?timeout= is a clear error before the driver sees it


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """A sync engine for ``url`` (default: ``DATABASE_URL`` or the embedded SQLite file)."""
    parsed = normalize_url(url if url is not None else get_settings().database_url)
    _check_driver(parsed)
    # Looked up at call time, so instrumentation that wraps SQLAlchemy's factories after
    # convostore was imported (OpenTelemetry's SQLAlchemyInstrumentor) still sees engines.
    return _utc_sessions(configure_engine(sqlalchemy.create_engine(parsed, **kwargs)))


def make_async_engine(url: str | URL | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; same drivers and set-up as :func:`make_engine`."""
    parsed = normalize_url(url if url is not None else get_settings().database_url, is_async=True)
    _check_driver(parsed)
    engine = sa_asyncio.create_async_engine(parsed, **kwargs)
    _utc_sessions(configure_engine(engine.sync_engine))
    return engine


def _utc_sessions(engine: Engine) -> Engine:
    """Name UTC ``UTC`` in each PostgreSQL session of an engine of ours (module text).

    Only a session already in a zone that is UTC by another name (Debian's default
    ``Etc/UTC``, ``GMT``, ...) is changed, so no instant, offset or chosen zone ever
    differs. Not behind a transaction pooler: a server connection's zone is the pooler's
    to juggle between its clients there, with a ``SET`` of its own where they differ.
    """
    if engine.dialect.name != "postgresql" or is_pooled(engine):
        return engine

    @event.listens_for(engine, "connect")
    def _in_utc(dbapi_connection: Any, _record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        if driver.info.parameter_status("TimeZone") not in _UTC_ALIASES:
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET TIME ZONE 'UTC'")
        finally:
            cursor.close()
        dbapi_connection.commit()  # the SET is a transaction's until it commits

    return engine


def configure_engine(engine: Engine) -> Engine:
    """Install convostore's per-connection set-up on ``engine`` (idempotent).

    SQLite: the pragmas and transaction control above. PostgreSQL: pooled connections the
    server has closed are replaced at checkout. Engines handed in by a host app get the
    same set-up.
    """
    if getattr(engine, _CONFIGURED, False):
        return engine
    setattr(engine, _CONFIGURED, True)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "checkout", _replace_if_closed)
        pooled = uses_pooler(engine.url)
        setattr(engine, _POOLED, pooled)

        @event.listens_for(engine, "do_connect")
        def _pooler_arguments(_dialect: Any, _record: Any, _cargs: Any, cparams: Any) -> None:
            # libpq rejects options it does not know: the flag is ours, not the driver's.
            cparams.pop(POOLER_FLAG, None)
            if pooled:
                cparams["prepare_threshold"] = None

    if engine.dialect.name != "sqlite":
        return engine
    memory = engine.url.database in (None, "", ":memory:")
    busy_ms = _busy_timeout_ms(engine.url)
    synchronous = get_settings().sqlite_synchronous.upper()

    def set_up(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control away from the sqlite3 module so "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsynced at every commit, so an acknowledged write survives
            # power loss (NORMAL only at checkpoints); CONVOSTORE_SQLITE_SYNCHRONOUS.
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        _open_search_tables(cursor)
        cursor.close()
        record.info[_CONFIGURED] = True

    event.listen(engine, "connect", set_up)

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A host engine may hold connections opened before we were handed it.
        if not record.info.get(_CONFIGURED):
            set_up(dbapi_connection, record)

    event.listen(engine, "begin", _begin_sqlite)

    return engine


def _begin_sqlite(conn: Connection) -> None:
    """A SQLite transaction's ``BEGIN``: ``IMMEDIATE`` for writes (:data:`WRITE_OPTION`)."""
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    statement = "BEGIN IMMEDIATE" if write else "BEGIN"
    if observed(conn):
        conn.exec_driver_sql(statement)
        return
    # The same statement without SQLAlchemy's execution machinery (~30 us a write).
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    driver_call(conn.dialect, statement, dbapi.execute, statement)


def driver_call(dialect: Dialect, statement: str, call: Any, *args: Any) -> Any:
    """``call(*args)`` on a DB-API connection (``execute("BEGIN")``, ``commit``): its
    errors ("database is locked" past the busy timeout, a failed commit) wrapped as
    SQLAlchemy wraps them, naming ``statement``."""
    try:
        return call(*args)
    except dialect.loaded_dbapi.Error as exc:
        raise driver_error(dialect, statement, (), exc) from exc


def transactions_watched(engine: Engine) -> bool:
    """Whether anything besides convostore listens to ``engine``'s transactions (``begin``,
    ``commit``, ``rollback``), or :func:`watched` holds: then a write transaction needs a
    SQLAlchemy ``Connection``, so that every event fires as SQLAlchemy fires it."""
    if watched(engine):
        return True
    dispatch = engine.dispatch
    if dispatch.commit or dispatch.rollback:
        return True
    return any(fn is not _begin_sqlite for fn in dispatch.begin)


def observed(conn: Connection) -> bool:
    """Whether anything watches this connection's statements: execution event listeners
    (OpenTelemetry, a host's hooks) or SQLAlchemy's statement logging (``echo``). Where
    nothing does, convostore may run its own prebuilt SQL on the driver directly."""
    if conn._echo:  # SQLAlchemy's own per-connection "log statements" check
        return True
    # A Connection's dispatch joins its engine's afresh for every connection, and its first
    # read of each event costs ~15k instructions (a caught AttributeError, a new listener
    # view): ~4% of a short read. Instrumentation listens on the engine (or the Engine
    # class), whose dispatch keeps its resolved events; only listeners on a connection or
    # on the Connection class (which set its ``_has_events``) need the joined one.
    return _statement_listeners(conn.dispatch if conn._has_events else conn.engine.dispatch)


def watched(engine: Engine) -> bool:
    """Whether anything watches the engine's connections or statements: statement events
    (:func:`observed`), ``engine_connect`` listeners, listeners on the ``Connection``
    class, statement logging. Where nothing does, a call needs no SQLAlchemy
    ``Connection`` for convostore's prebuilt statements (``_ops.Tx.lean``)."""
    if Connection._has_events or engine._should_log_info():
        return True
    return _statement_listeners(engine.dispatch) or bool(engine.dispatch.engine_connect)


def _statement_listeners(dispatch: Any) -> bool:
    """Whether ``dispatch`` has listeners of the statement events (``echo`` aside)."""
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def check_in(fairy: PoolProxiedConnection) -> None:
    """Return a bare pool checkout to its pool, without the pool's rollback where the
    driver shows no transaction open (psycopg: idle; sqlite3: not ``in_transaction``).

    That rollback is a driver call that does nothing there, yet on the async driver it
    is an await with a lock: ~34k instructions, ~4% of a short read. The pool is told
    what a ``Connection`` tells it after its own commit or rollback ("already reset"):
    its ``reset`` event still fires, and ``pool_reset_on_return="commit"`` still commits.
    Any other driver, or a transaction left open, gets the usual reset.
    """
    driver = fairy.driver_connection
    if isinstance(driver, sqlite3.Connection):
        at_rest = not driver.in_transaction
    else:
        pgconn = getattr(driver, "pgconn", None)  # psycopg's (sync and async) libpq handle
        at_rest = pgconn is not None and pgconn.transaction_status == _PQ_IDLE
    if at_rest:  # SQLAlchemy's own call for it (private; tests/test_db.py pins what it does)
        fairy._close_special(transaction_reset=True)
    else:
        fairy.close()


@contextmanager
def custom_plans(conn: Connection) -> Iterator[None]:
    """Send this connection's statements unprepared for the duration (psycopg only).

    psycopg prepares a statement it has run ``prepare_threshold`` times, and PostgreSQL
    may then reuse one generic plan for every value. For a search that is the wrong plan
    for some word whatever it is: only a plan made for the words themselves knows whether
    they are rare (an index lookup) or in every message (read the newest ones and stop).
    An unnamed statement is always planned with its values.
    """
    driver = conn.connection.driver_connection
    previous = getattr(driver, "prepare_threshold", None)
    if previous is None:  # not psycopg, or never prepares (a pooler's URL)
        yield
        return
    driver.prepare_threshold = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        driver.prepare_threshold = previous  # type: ignore[union-attr]


def analyze(engine: Engine) -> None:
    """Refresh PostgreSQL's planner statistics of the conversations and messages (after a
    bulk import; SQLite: nothing to do).

    Until autovacuum's next pass (a minute or more) a table just filled has no
    statistics, and the planner may read one conversation's page through the index of
    every user's messages: 1.0 instead of 0.2 ms for the last 20 of 2,000 messages.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE conversations, messages")
        conn.commit()


def driver_error(dialect: Dialect, statement: str, params: Any, exc: Exception) -> Exception:
    """A DB-API error wrapped as SQLAlchemy wraps it, for statements run on the driver
    directly: the stores then translate it in their one place."""
    dbapi_error = dialect.loaded_dbapi.Error
    return sa_exc.DBAPIError.instance(statement, params, exc, dbapi_error)


def _open_search_tables(cursor: Any) -> None:
    """Make SQLite open the FTS5 tables now, outside any transaction.

    FTS5 reads its configuration the first time a connection prepares a statement that
    touches the table (a write to ``messages`` does, through its trigger). Inside a deferred
    ``BEGIN`` (an ORM session's, a host's own) that read would start a read snapshot before
    the write lock is taken, and a concurrent writer's commit meanwhile makes the write fail
    at once with "database is locked" (SQLITE_BUSY_SNAPSHOT; no busy timeout helps).
    """
    for table in (MESSAGES_FTS, TITLES_FTS):
        try:
            cursor.execute(f"SELECT 1 FROM {table} WHERE rowid = 0")
        except sqlite3.Error:  # not migrated (yet): nothing to open
            continue


def is_pooled(engine: Engine) -> bool:
    """Whether ``engine`` talks to PostgreSQL through a transaction pooler."""
    configure_engine(engine)
    return bool(getattr(engine, _POOLED, False))


def _replace_if_closed(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Drop a pooled connection whose server has spoken while it sat idle in the pool.

    An idle connection is sent nothing, unless the server is going away: a restart or
    an administrator's termination sends an error and closes the socket. A poll of the
    socket costs about a microsecond, where the pool's ``pre_ping`` costs a round trip
    per checkout; raising DisconnectionError makes the pool connect afresh, so the
    first request after a restart succeeds instead of failing (and logging) once per
    stale connection. (A host app that LISTENs on a pooled connection would lose it to
    a pending notification: convostore itself never LISTENs.)
    """
    fileno = getattr(record.driver_connection, "fileno", None)
    if fileno is None or not hasattr(select, "poll"):  # not psycopg, or no poll (Windows)
        return
    try:
        poller = select.poll()
        poller.register(fileno(), select.POLLIN)
        closed = bool(poller.poll(0))
    except Exception:  # the driver's "connection is closed", a bad descriptor: unusable
        closed = True
    if closed:
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def _busy_timeout_ms(url: URL) -> int:
    """30 s, or the URL's own ``?timeout=SECONDS`` (the sqlite3 module's parameter)."""
    raw = url.query.get("timeout")
    if raw is None:
        return SQLITE_BUSY_TIMEOUT_MS
    try:
        seconds = float(raw if isinstance(raw, str) else raw[0])
    except ValueError:
        raise ConfigurationError(
            f"DATABASE_URL: timeout must be a number of seconds, got {raw!r}"
        ) from None
    if not 0 <= seconds <= 86_400:
        raise ConfigurationError("DATABASE_URL: timeout must be between 0 and 86400 seconds")
    return round(seconds * 1000)


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def sqlite_write_lock(engine: Engine) -> threading.Lock | None:
    """The in-process lock of a SQLite file's writers (``None`` for other databases).

    SQLite admits one writer at a time. Writers of this process queue on this lock instead
    of meeting in SQLite's busy handler, which sleeps in steps of up to 100 ms and so
    turns contention into idle time; other processes are still handled by busy_timeout.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    key = os.path.realpath(str(engine.url.database))
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())
