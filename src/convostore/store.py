"""``Store`` and ``AsyncStore``: the API a chat endpoint calls on every request.

    from convostore import Store

    with Store("sqlite:///chat.db") as store:
        store.migrate()
        conv = store.create_conversation("alice", title="Trip")
        store.append_message("alice", conv.id, {"role": "user", "content": "Hi"})
        history = store.get_history("alice", conv.id, max_tokens=4000)

Read replicas (``read_urls=``, ``DATABASE_READ_URL``) take the pure reads; writes go to the
primary. After a write, the store remembers the primary's WAL position for that user, and
that user's next reads through this store wait (up to ``replica_wait_timeout``) for the
replica to have replayed it, else go to the primary: a store never shows a user the data
from before their own write. A replica that is down, lagging or failing is skipped for
the primary, never an error.

Both classes expose the same methods, generated from the single implementation in
:mod:`convostore._ops`; ``AsyncStore`` runs it on psycopg's async driver inside
SQLAlchemy's greenlet bridge on PostgreSQL, and on SQLite in a worker thread (except reads
of one page, which cost less than the hop and run on the event loop). Every method takes
the ``user_id`` first: all reads and writes are scoped to it, and another user's
conversation raises the same ``NotFoundError`` as a missing one.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

# SQLAlchemy's asyncio bridge (what AsyncConnection.run_sync runs on), used directly so
# that one call costs one greenlet.
from sqlalchemy.util import await_only, greenlet_spawn

from convostore import _ops
from convostore import apikeys as _apikeys  # noqa: F401  (registers the API-key operations)
from convostore._ops import MODES, Mode, StoreConfig, Tx
from convostore.config import get_settings, normalize_url
from convostore.db import (
    WRITE_OPTION,
    configure_engine,
    driver_call,
    make_async_engine,
    make_engine,
    sqlite_write_lock,
    transactions_watched,
    watched,
)
from convostore.errors import (
    ConfigurationError,
    ConflictError,
    UnavailableError,
    ValidationError,
)
from convostore.history import TokenCounter, approximate_tokens
from convostore.retention import parse_retention
from convostore.schemas import PurgeReport
from convostore.types import utcnow

__all__ = ["AsyncStore", "Store"]

log = logging.getLogger("convostore")
P = ParamSpec("P")
R = TypeVar("R")

_KEY_INDEX = "uq_messages_conversation_client_key"
# Each retry of a keyed append is caused by a concurrent writer storing one of its keys,
# which the next attempt then finds: a few attempts cover overlapping retried batches.
_ATTEMPTS = 8


def _constraint_of(exc: sa_exc.IntegrityError) -> str:
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return str(name) if name else str(exc.orig)


def _is_key_race(exc: sa_exc.IntegrityError) -> bool:
    """A concurrent retry stored the same idempotency key first: re-run to return it."""
    text = _constraint_of(exc)
    return _KEY_INDEX in text or "messages.client_key" in text


_STREAMING_INDEX = "uq_messages_one_streaming"


def _is_second_stream(exc: sa_exc.IntegrityError) -> bool:
    """A reply is already streaming in the conversation (SQLite names only the column:
    the partial index is the only unique one on ``conversation_id`` alone)."""
    text = _constraint_of(exc)
    return _STREAMING_INDEX in text or text.endswith("messages.conversation_id")


def _raw_connection(engine: Engine) -> PoolProxiedConnection:
    """A bare checkout of ``engine``'s pool (its pool events fire as usual)."""
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        # What engine.connect() raises for it: wrapped, the pool invalidated if the
        # server went away, the engine's handle_error hooks run.
        Connection._handle_dbapi_exception_noconnection(exc, engine.dialect, engine)
        raise  # pragma: no cover (the line above always raises)


def _translated(exc: sa_exc.DBAPIError, *, may_retry: bool) -> Exception:
    """The convostore exception for a driver error (one place for all of them); ``exc``
    itself when it is not ours to translate."""
    if isinstance(exc, sa_exc.IntegrityError):
        if may_retry and _is_key_race(exc):
            return _Retry()
        if _is_second_stream(exc):
            return ConflictError(
                "a reply is already streaming in this conversation; finish, fail or "
                "interrupt it first (or wait for its lease to run out)",
                constraint=_STREAMING_INDEX,
            )
        return ConflictError(
            "the change conflicts with stored data", constraint=_constraint_of(exc)
        )
    if isinstance(exc, sa_exc.DataError):
        return ValidationError("body", f"rejected by the database: {exc.orig}")
    if (missing := _missing_schema(exc)) is not None:
        return ConfigurationError(
            f"the database lacks convostore's schema ({missing}): it was never migrated, or"
            " not to this version's head; run `convostore db upgrade` (or Store.migrate())"
        )
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) and _is_unavailable(exc):
        # The driver's text names hosts and ports: it goes to the log, not to API clients.
        log.warning("database unavailable: %s", exc.orig)
        return UnavailableError("the database is unavailable; retry later")
    return exc


#: SQLSTATEs of a schema that is not there: undefined table, undefined column.
_MISSING_SCHEMA_STATES = frozenset({"42P01", "42703"})


def _missing_schema(exc: sa_exc.DBAPIError) -> str | None:
    """The driver's first line when ``exc`` says a table or column does not exist."""
    orig = exc.orig
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    if type(orig).__module__.startswith("sqlite3"):
        return first if first.startswith(("no such table", "no such column")) else None
    return first if getattr(orig, "sqlstate", None) in _MISSING_SCHEMA_STATES else None


def _is_unavailable(exc: sa_exc.DBAPIError) -> bool:
    """Connection loss or a lock that outlived the busy timeout, not a broken schema.

    sqlite3 raises OperationalError for "no such table" too: that one is a bug or a
    missing migration, and must not masquerade as a transient outage.
    """
    if type(exc.orig).__module__.startswith("sqlite3"):
        text = str(exc.orig).lower()
        return "locked" in text or "unable to open" in text or "busy" in text
    return True


_FIRST_CONNECT = threading.Lock()
_NO_LOCK = nullcontext()
#: (dialect, driver) pairs whose write transactions run on the driver itself (psycopg's
#: sync and async connections alike; not aiosqlite, whose calls hop to its own thread).
_DRIVER_WRITES = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})


class _Retry(Exception):
    """Internal: run the operation once more in a fresh transaction."""


#: A replica that could not be reached is skipped (reads go to the primary) this long.
REPLICA_RETRY_SECONDS = 5.0
#: libpq's connect_timeout for replica URLs that set none: a dead host costs this, once.
REPLICA_CONNECT_TIMEOUT_SECONDS = 3
#: Users whose latest write position a store remembers (least recently written forgotten).
TRACKED_WRITERS = 10_000
#: "This user's latest write position is not known": their reads go to the primary.
_UNKNOWN = 1 << 64
_PRIMARY_LSN = "SELECT CAST(pg_current_wal_insert_lsn() AS text)"
_REPLAY_LSN = "SELECT CAST(pg_last_wal_replay_lsn() AS text)"


def _lsn(text: str | None) -> int | None:
    """A ``pg_lsn`` as text (``16/B374D848``) as an integer; ``None`` stays ``None``."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _user_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    user = args[0] if args else kwargs.get("user_id")
    return user if isinstance(user, str) else None


class _Replica:
    """A read replica's engine, the newest replay position seen on it, and its back-off."""

    __slots__ = ("down_until", "engine", "replayed")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.replayed = 0
        self.down_until = 0.0


class _WriteMarks:
    """Read-your-writes bookkeeping: for each user, the primary's WAL insert position
    read right after that user's latest write through this store. A replica that has
    replayed up to it has that write (and everything before it)."""

    def __init__(self, size: int = TRACKED_WRITERS) -> None:
        self._marks: OrderedDict[str | None, int] = OrderedDict()
        self._floor = 0  # the highest mark forgotten: applies to every user not remembered
        self._size = size
        self._lock = threading.Lock()

    def needed(self, user: str | None) -> int:
        return self._marks.get(user, self._floor)

    def wrote(self, user: str | None, lsn: int) -> None:
        with self._lock:
            prior = self._marks.pop(user, 0)
            # A later write's position bounds an earlier one whose position was not read.
            self._marks[user] = lsn if prior == _UNKNOWN or lsn == _UNKNOWN else max(prior, lsn)
            while len(self._marks) > self._size:
                _, forgotten = self._marks.popitem(last=False)
                if forgotten == _UNKNOWN:  # every remembered write came later: bounds it
                    known = [m for m in self._marks.values() if m != _UNKNOWN]
                    forgotten = max(known, default=_UNKNOWN)
                self._floor = max(self._floor, forgotten)


def _signature_without_tx(op: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(op)
    params = list(sig.parameters.values())
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    return sig.replace(parameters=[self_param, *params[1:]])


def _copy_metadata(method: Callable[..., Any], op: Callable[..., Any]) -> None:
    method.__name__ = op.__name__
    method.__qualname__ = op.__name__
    method.__doc__ = op.__doc__
    method.__signature__ = _signature_without_tx(op)  # type: ignore[attr-defined]


def _sync(op: Callable[Concatenate[Tx, P], R]) -> Callable[Concatenate[Store, P], R]:
    def method(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._runner.call(op, *args, **kwargs)

    _copy_metadata(method, op)
    return method


def _async(
    op: Callable[Concatenate[Tx, P], R],
) -> Callable[Concatenate[AsyncStore, P], Coroutine[Any, Any, R]]:
    async def method(self: AsyncStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._call(op, *args, **kwargs)

    _copy_metadata(method, op)
    return method


class _Runner:
    """Runs operations on a sync engine: the connection or transaction each one's mode
    needs, driver errors translated, keyed appends that lost a race retried.

    ``Store`` calls it directly and ``AsyncStore`` inside one greenlet per call (the
    bridge SQLAlchemy's asyncio engines run on), so both stores share this one path.
    """

    def __init__(
        self,
        engine: Engine,
        config: StoreConfig,
        write_lock: AbstractContextManager[Any] | None,
        *,
        replicas: Sequence[Engine] = (),
        replica_wait_timeout: float = 0.5,
        sleep: Callable[[float], Any] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        pg = engine.dialect.name == "postgresql"
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._pg, self._config = pg, config
        self._write_lock = write_lock or _NO_LOCK
        # Drivers whose transactions the runner can drive itself (_in_driver_transaction).
        self._driver_writes = (engine.dialect.name, engine.dialect.driver) in _DRIVER_WRITES
        # Reads are single statements; on PostgreSQL so is every STATEMENT-mode write, and
        # one statement is atomic by itself: autocommit saves the BEGIN/COMMIT round trips.
        # (SQLite needs no switch: without a BEGIN its connections are in autocommit mode.)
        self._transactional = {
            name: not (mode is Mode.READ or (pg and mode is Mode.STATEMENT))
            for name, mode in MODES.items()
        }
        # Replicas: reads are routed to them, writes leave a mark (see _WriteMarks).
        self._replicas = [_Replica(r) for r in replicas]
        self._marks = _WriteMarks() if replicas else None
        self._routed = {name: bool(replicas) and mode is Mode.READ for name, mode in MODES.items()}
        self._marking = {
            name: bool(replicas) and mode is not Mode.READ for name, mode in MODES.items()
        }
        self._wait, self._sleep = replica_wait_timeout, sleep
        #: The clock of the replicas' back-off (a test moves it instead of waiting).
        self._monotonic = monotonic
        self._turn = itertools.count()

    def call(self, op: Callable[Concatenate[Tx, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        name = op.__name__
        if self._routed[name]:
            served, result = self._from_replica(op, args, kwargs)
            if served:
                return result  # type: ignore[no-any-return]
        transactional, marking = self._transactional[name], self._marking[name]
        for attempt in range(_ATTEMPTS):
            try:
                if transactional:
                    if self._driver_writes and not transactions_watched(self._engine):
                        return self._in_driver_transaction(op, marking, *args, **kwargs)
                    with self._write_lock, self._writer.connect() as conn:
                        tx = Tx(conn, self._pg, self._config)
                        with conn.begin():
                            result = op(tx, *args, **kwargs)
                        if marking:
                            self._mark(tx, args, kwargs)
                        return result
                tx = self._checkout(self._engine)
                try:
                    if self._pg:
                        result = self._autocommit(tx, op, *args, **kwargs)
                        if marking:
                            self._mark(tx, args, kwargs)
                        return result
                    return op(tx, *args, **kwargs)
                finally:
                    tx.release()
            except sa_exc.DBAPIError as exc:
                translated = _translated(exc, may_retry=attempt < _ATTEMPTS - 1)
                if isinstance(translated, _Retry):
                    continue
                if translated is exc:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkout(self, engine: Engine) -> Tx:
        """A call's ``Tx`` on a connection of ``engine``'s pool, outside any transaction:
        without a SQLAlchemy ``Connection`` unless something watches the engine (then
        one, so that every event fires as SQLAlchemy fires it). ``Tx.release`` returns it.
        """
        if watched(engine):
            return Tx(engine.connect(), self._pg, self._config)
        return Tx.lean(engine, _raw_connection(engine), self._pg, self._config)

    def _in_driver_transaction(
        self,
        op: Callable[Concatenate[Tx, P], R],
        marking: bool,
        /,
        *a: P.args,
        **kw: P.kwargs,
    ) -> R:
        """Run a write in a transaction of the driver's own, on a bare pool checkout, where
        nothing but convostore watches the engine's transactions: SQLite's ``BEGIN
        IMMEDIATE``, or psycopg's implicit ``BEGIN`` at the first statement; then ``COMMIT``.

        The same statements SQLAlchemy's ``Connection`` and its transaction send, without
        their ~1,000 bytecodes per call (a joined event dispatch, the transaction objects):
        ~16% of a SQLite append, ~7% of a streamed delta on PostgreSQL. On any error the
        transaction is rolled back before the connection goes back to the pool; one that
        cannot be rolled back is discarded.
        """
        engine = self._engine
        dialect = engine.dialect
        with self._write_lock:
            fairy = _raw_connection(engine)
            tx = Tx.lean(engine, fairy, self._pg, self._config, driver_transaction=True)
            dbapi = fairy.dbapi_connection
            assert dbapi is not None
            try:
                try:
                    if not self._pg:
                        driver_call(dialect, "BEGIN IMMEDIATE", dbapi.execute, "BEGIN IMMEDIATE")
                    result = op(tx, *a, **kw)
                    driver_call(dialect, "COMMIT", dbapi.commit)
                except BaseException:
                    try:
                        dbapi.rollback()  # a no-op where no transaction is open
                    except Exception:  # a broken connection: never back into the pool
                        tx.invalidate()
                    raise
                if marking:
                    self._mark(tx, a, kw)
                return result
            finally:
                tx.release()

    def _autocommit(
        self, tx: Tx, op: Callable[Concatenate[Tx, P], R], /, *a: P.args, **kw: P.kwargs
    ) -> R:
        """Run ``op`` with the driver in autocommit mode, for this call only.

        Set on the DB-API connection: ``isolation_level="AUTOCOMMIT"`` does the same with
        five driver calls per checkout and return (each an await on the async driver),
        the dominant fixed cost of a short read. The previous mode is restored before the
        connection goes back to the pool; if that fails, the connection is discarded, so
        the pool never hands out a connection in the wrong mode.
        """
        dbapi = tx.fairy.dbapi_connection
        assert dbapi is not None
        previous = dbapi.autocommit
        if not previous:
            dbapi.autocommit = True
        try:
            return op(tx, *a, **kw)
        finally:
            if not previous:
                try:
                    dbapi.autocommit = False
                except Exception:  # a broken connection: never back into the pool
                    tx.invalidate()

    def _mark(self, tx: Tx, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Remember where the primary's WAL is now, after this user's committed write.

        One extra statement per write, only on a store with replicas. The write is
        already committed: if the position cannot be read, the call still succeeds and
        the user's reads go to the primary until their next write.
        """
        assert self._marks is not None
        try:
            lsn = self._autocommit(tx, _primary_lsn)
        except sa_exc.DBAPIError as exc:
            log.warning("WAL position after a write unknown (%s): reading from the primary", exc)
            lsn = _UNKNOWN
        self._marks.wrote(_user_of(args, kwargs), lsn)

    def _pick(self) -> _Replica | None:
        """The next replica in turn that is not backing off, or ``None``."""
        count, now = len(self._replicas), self._monotonic()
        start = next(self._turn)
        for i in range(count):
            replica = self._replicas[(start + i) % count]
            if replica.down_until <= now:
                return replica
        return None

    def _from_replica(
        self, op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bool, Any]:
        """``(True, result)`` if a replica answered; ``(False, None)``: ask the primary."""
        assert self._marks is not None
        need = self._marks.needed(_user_of(args, kwargs))
        replica = self._pick() if need != _UNKNOWN else None
        if replica is None:
            return False, None

        def read(tx: Tx) -> tuple[bool, Any]:
            if need > replica.replayed and not self._caught_up(tx.conn, replica, need):
                return False, None
            return True, op(tx, *args, **kwargs)

        try:
            conn = replica.engine.connect()
        except sa_exc.DBAPIError as exc:
            self._back_off(replica, exc)
            return False, None
        try:
            with conn:
                return self._autocommit(Tx(conn, True, self._config), read)
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._back_off(replica, exc)
            else:  # e.g. a query cancelled by a conflict with recovery
                log.warning("replica read failed, reading from the primary: %s", exc.orig)
            return False, None

    def _caught_up(self, conn: Connection, replica: _Replica, need: int) -> bool:
        """Whether the replica replays up to ``need`` within the wait timeout."""
        deadline, delay = time.monotonic() + self._wait, 0.001
        while True:
            replayed = _lsn(conn.exec_driver_sql(_REPLAY_LSN).scalar())
            if replayed is None:  # not a standby: it cannot show that it has the write
                return False
            if replayed > replica.replayed:
                replica.replayed = replayed
            if replayed >= need:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.debug("replica behind the user's last write: reading from the primary")
                return False
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, 0.02)

    def _back_off(self, replica: _Replica, exc: sa_exc.DBAPIError) -> None:
        replica.down_until = self._monotonic() + REPLICA_RETRY_SECONDS
        log.warning(
            "read replica unavailable, reads go to the primary for %.0f s: %s",
            REPLICA_RETRY_SECONDS,
            exc.orig,
        )


def _primary_lsn(tx: Tx) -> int:
    lsn = _lsn(tx.conn.exec_driver_sql(_PRIMARY_LSN).scalar())
    assert lsn is not None
    return lsn


def _greenlet_sleep(seconds: float) -> None:
    """``asyncio.sleep`` from the sync code AsyncStore runs in its greenlet: the event
    loop goes on serving other requests while a read waits for a replica."""
    await_only(asyncio.sleep(seconds))


def _replica_url(url: str | URL, *, is_async: bool) -> URL:
    parsed = normalize_url(url, is_async=is_async)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError("DATABASE_READ_URL: read replicas must be PostgreSQL servers")
    if "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(REPLICA_CONNECT_TIMEOUT_SECONDS)})
    return parsed


class _Base:
    """Configuration shared by both stores (no I/O here)."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_content_length: int | None,
        auto_title: bool,
        token_counter: TokenCounter | None,
        stream_lease_seconds: float | None = None,
        retention: str | None = None,
        temporary_retention: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        configure_engine(engine)
        self._pg = engine.dialect.name == "postgresql"
        settings = get_settings()
        self._own_replicas: list[Any] = []
        self.config = StoreConfig(
            max_content_length=max_content_length or settings.max_content_length,
            auto_title=auto_title,
            token_counter=token_counter or approximate_tokens,
            search_config=settings.search_config,
            stream_lease_seconds=stream_lease_seconds or settings.stream_lease_seconds,
            retention=parse_retention(retention or settings.retention, "retention"),
            temporary_retention=parse_retention(
                temporary_retention or settings.temporary_retention, "temporary_retention"
            ),
            clock=clock or utcnow,
        )

    def _purge_plan(
        self,
        batch_size: int,
        now: datetime | None,
        dry_run: bool,
        on_batch: Callable[[PurgeReport], None] | None,
    ) -> Generator[_ops.PurgeStep, PurgeReport, PurgeReport]:
        return _ops.purge_plan(
            self.config, batch_size=batch_size, now=now, dry_run=dry_run, on_batch=on_batch
        )

    def _scale_out(
        self,
        from_environment: bool,
        read_urls: Sequence[Any] | None,
        direct_url: str | URL | None,
        replica_wait_timeout: float | None,
    ) -> tuple[list[Any], str | URL | None, float]:
        """Replicas, direct URL and wait timeout: as given, else (for a store built from
        ``DATABASE_URL``) from the settings."""
        settings = get_settings()
        if read_urls is None and from_environment:
            read_urls = settings.database_read_urls
        if direct_url is None and from_environment:
            direct_url = settings.database_direct_url
        wait = (
            settings.replica_wait_timeout if replica_wait_timeout is None else replica_wait_timeout
        )
        if wait < 0:
            raise ConfigurationError("replica_wait_timeout must be >= 0 seconds")
        if read_urls and not self._pg:
            raise ConfigurationError(
                "DATABASE_READ_URL: read replicas need a PostgreSQL primary (DATABASE_URL)"
            )
        return list(read_urls or ()), direct_url, wait


class Store(_Base):
    """The synchronous store. Give it a URL (default: ``DATABASE_URL``) or your own engine."""

    def __init__(
        self,
        url_or_engine: str | URL | Engine | None = None,
        *,
        read_urls: Sequence[str | URL | Engine] | None = None,
        direct_url: str | URL | None = None,
        replica_wait_timeout: float | None = None,
        max_content_length: int | None = None,
        auto_title: bool = True,
        token_counter: TokenCounter | None = None,
        stream_lease_seconds: float | None = None,
        retention: str | None = None,
        temporary_retention: str | None = None,
        clock: Callable[[], datetime] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        """``read_urls``: read replicas (default, for a store built from the environment:
        ``DATABASE_READ_URL``); ``direct_url``: where :meth:`migrate` connects when the
        main URL goes through a pooler (``DATABASE_DIRECT_URL``)."""
        if isinstance(url_or_engine, Engine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = make_engine(url_or_engine, **engine_kwargs), True
        super().__init__(
            self.engine,
            max_content_length=max_content_length,
            auto_title=auto_title,
            token_counter=token_counter,
            stream_lease_seconds=stream_lease_seconds,
            retention=retention,
            temporary_retention=temporary_retention,
            clock=clock,
        )
        replicas, self._direct_url, wait = self._scale_out(
            url_or_engine is None, read_urls, direct_url, replica_wait_timeout
        )
        read_engines: list[Engine] = []
        for replica in replicas:
            if isinstance(replica, Engine):
                read_engines.append(configure_engine(replica))
            else:
                read_engines.append(
                    make_engine(_replica_url(replica, is_async=False), **engine_kwargs)
                )
                self._own_replicas.append(read_engines[-1])
        #: The read replicas' engines (empty: every call goes to ``engine``).
        self.read_engines: tuple[Engine, ...] = tuple(read_engines)
        self._runner = _Runner(
            self.engine,
            self.config,
            sqlite_write_lock(self.engine),
            replicas=read_engines,
            replica_wait_timeout=wait,
        )

    def purge_expired(
        self,
        *,
        batch_size: int = 1000,
        now: datetime | None = None,
        dry_run: bool = False,
        on_batch: Callable[[PurgeReport], None] | None = None,
    ) -> PurgeReport:
        """Delete every conversation expired at ``now`` (default: the store's clock) and
        not on hold, with its messages, in batches of ``batch_size``, each its own short
        transaction; a content-free tombstone records each one. Safe beside the app and
        beside other purgers. ``dry_run`` only counts; ``on_batch(total)`` after each batch.
        """
        plan = self._purge_plan(batch_size, now, dry_run, on_batch)
        try:
            op, kwargs = next(plan)
            while True:
                op, kwargs = plan.send(self._runner.call(op, **kwargs))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the shipped Alembic migrations (on the
        direct URL if the store has one: never through a pooler)."""
        from convostore.migrate import upgrade

        if self._direct_url is None:
            upgrade(self.engine, revision)
            return
        direct = make_engine(self._direct_url)
        try:
            upgrade(direct, revision)
        finally:
            direct.dispose()

    def close(self) -> None:
        """Release the connection pools (only those this store created)."""
        for replica in self._own_replicas:
            replica.dispose()
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    ensure_user = _sync(_ops.ensure_user)
    delete_user = _sync(_ops.delete_user)
    create_conversation = _sync(_ops.create_conversation)
    get_or_create_conversation = _sync(_ops.get_or_create_conversation)
    get_conversation_by_external_id = _sync(_ops.get_conversation_by_external_id)
    get_conversation = _sync(_ops.get_conversation)
    list_conversations = _sync(_ops.list_conversations)
    update_conversation = _sync(_ops.update_conversation)
    delete_conversation = _sync(_ops.delete_conversation)
    append_message = _sync(_ops.append_message)
    append_messages = _sync(_ops.append_messages)
    list_messages = _sync(_ops.list_messages)
    get_messages = _sync(_ops.get_messages)
    last_messages = _sync(_ops.last_messages)
    get_history = _sync(_ops.get_history)
    get_message = _sync(_ops.get_message)
    delete_message = _sync(_ops.delete_message)
    pop_message = _sync(_ops.pop_message)
    delete_messages_after = _sync(_ops.delete_messages_after)
    search = _sync(_ops.search)
    begin_message = _sync(_ops.begin_message)
    append_delta = _sync(_ops.append_delta)
    finish_message = _sync(_ops.finish_message)
    fail_message = _sync(_ops.fail_message)
    interrupt_message = _sync(_ops.interrupt_message)
    read_stream = _sync(_ops.read_stream)
    get_retention_policy = _sync(_ops.get_retention_policy)
    set_retention_policy = _sync(_ops.set_retention_policy)


class AsyncStore(_Base):
    """The asyncio store: the same methods as :class:`Store`, awaited."""

    def __init__(
        self,
        url_or_engine: str | URL | AsyncEngine | None = None,
        *,
        read_urls: Sequence[str | URL | AsyncEngine] | None = None,
        direct_url: str | URL | None = None,
        replica_wait_timeout: float | None = None,
        max_content_length: int | None = None,
        auto_title: bool = True,
        token_counter: TokenCounter | None = None,
        stream_lease_seconds: float | None = None,
        retention: str | None = None,
        temporary_retention: str | None = None,
        clock: Callable[[], datetime] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        """The same arguments as :class:`Store`; replicas are async engines or URLs."""
        if isinstance(url_or_engine, AsyncEngine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine = make_async_engine(url_or_engine, **engine_kwargs)
            self._owns_engine = True
        super().__init__(
            self.engine.sync_engine,
            max_content_length=max_content_length,
            auto_title=auto_title,
            token_counter=token_counter,
            stream_lease_seconds=stream_lease_seconds,
            retention=retention,
            temporary_retention=temporary_retention,
            clock=clock,
        )
        self._connected = False
        # SQLite has no network to wait on: aiosqlite would hop to its thread for every
        # statement, fetch and commit. Running the sync implementation in a worker thread
        # costs one hop per operation instead (and shares the in-process write lock), and
        # page-bounded reads (_ops.BOUNDED) none. A host's own engine is used as given, so
        # that its pool really is shared.
        self._threaded: Store | None = None
        # An in-memory database lives in one connection, and SQLAlchemy's pool gives each
        # thread a connection of its own: every call then runs on one thread of its own.
        self._memory_thread: ThreadPoolExecutor | None = None
        if not self._pg and self._owns_engine:
            if self.engine.url.database in (None, "", ":memory:"):
                self._memory_thread = ThreadPoolExecutor(1, "convostore-sqlite-memory")
            self._threaded = Store(
                self.engine.url.set(drivername="sqlite+pysqlite"),
                max_content_length=self.config.max_content_length,
                auto_title=auto_title,
                token_counter=token_counter,
                stream_lease_seconds=stream_lease_seconds,
                retention=retention,
                temporary_retention=temporary_retention,
                clock=clock,
                **engine_kwargs,
            )
        replicas, self._direct_url, wait = self._scale_out(
            url_or_engine is None, read_urls, direct_url, replica_wait_timeout
        )
        read_engines: list[AsyncEngine] = []
        for replica in replicas:
            if isinstance(replica, AsyncEngine):
                configure_engine(replica.sync_engine)
                read_engines.append(replica)
            else:
                url = _replica_url(replica, is_async=True)
                read_engines.append(make_async_engine(url, **engine_kwargs))
                self._own_replicas.append(read_engines[-1])
        #: The read replicas' engines (empty: every call goes to ``engine``).
        self.read_engines: tuple[AsyncEngine, ...] = tuple(read_engines)
        # Everything else runs the sync path on the async engine's sync facade, in one
        # greenlet per call. No in-process SQLite write lock there: a thread lock held
        # across an await would block the whole event loop.
        self._runner = _Runner(
            self.engine.sync_engine,
            self.config,
            None,
            replicas=[r.sync_engine for r in read_engines],
            replica_wait_timeout=wait,
            sleep=_greenlet_sleep,
        )
        # PostgreSQL LISTEN connections of follow_stream, one per event loop.
        self._stream_listeners: dict[Any, Any] = {}

    async def _first_connect(self) -> None:
        """Make the engine's first connection under a lock that every event loop shares.

        SQLAlchemy initialises the dialect on the first connection under an asyncio lock
        that binds to the first loop contending for it, so loops in other threads sharing
        this store would fail ("bound to a different event loop") or hang. The threading
        lock is awaited in a worker thread, so no loop is blocked while it waits.
        """
        acquiring = asyncio.ensure_future(asyncio.to_thread(_FIRST_CONNECT.acquire))
        try:
            await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # The thread still takes the lock: hand it back as soon as it has.
            acquiring.add_done_callback(lambda _: _FIRST_CONNECT.release())
            raise
        try:
            if not self._connected:
                async with self.engine.connect():
                    pass
                for replica in self.read_engines:
                    try:  # initialised here too, under the lock; a replica may be down
                        async with replica.connect():
                            pass
                    except sa_exc.DBAPIError as exc:
                        log.warning("read replica unavailable at start: %s", exc.orig)
                self._connected = True
        except sa_exc.DBAPIError as exc:
            translated = _translated(exc, may_retry=False)
            if translated is exc:
                raise
            raise translated from exc
        finally:
            _FIRST_CONNECT.release()

    async def _call(
        self, op: Callable[Concatenate[Tx, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        threaded = self._threaded
        if threaded is not None:
            if op.__name__ in _ops.BOUNDED and self._memory_thread is None:
                # A page read from a local file is a copy out of the page cache, and WAL
                # readers never wait for a lock: it takes less (~0.05 ms) than the hop to a
                # worker thread and back (0.13-0.27 ms on a 2-core VM). Writes (which wait
                # for the write lock and fsync) and unbounded reads still take the thread.
                return threaded._runner.call(op, *args, **kwargs)
            return await self._in_thread(lambda: threaded._runner.call(op, *args, **kwargs))
        if not self._connected:
            await self._first_connect()
        # One greenlet for the whole call (checkout, statements, return to the pool), where
        # AsyncConnection would spawn one for each of the three.
        return await greenlet_spawn(lambda: self._runner.call(op, *args, **kwargs))

    async def _in_thread(self, fn: Callable[[], R]) -> R:
        """``fn()`` in a worker thread (SQLite): the in-memory database's own, if any."""
        if self._memory_thread is None:
            return await asyncio.to_thread(fn)
        return await asyncio.get_running_loop().run_in_executor(self._memory_thread, fn)

    async def purge_expired(
        self,
        *,
        batch_size: int = 1000,
        now: datetime | None = None,
        dry_run: bool = False,
        on_batch: Callable[[PurgeReport], None] | None = None,
    ) -> PurgeReport:
        """:meth:`Store.purge_expired`, awaited (each batch its own transaction)."""
        plan = self._purge_plan(batch_size, now, dry_run, on_batch)
        try:
            op, kwargs = next(plan)
            while True:
                op, kwargs = plan.send(await self._call(op, **kwargs))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the shipped Alembic migrations."""
        if (threaded := self._threaded) is not None:
            await self._in_thread(lambda: threaded.migrate(revision))
            return
        from convostore.migrate import upgrade_connection

        if self._direct_url is not None:
            direct = make_async_engine(self._direct_url)
            try:
                async with direct.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                    await conn.run_sync(upgrade_connection, revision)
            finally:
                await direct.dispose()
            return
        if not self._connected:
            await self._first_connect()
        async with self.engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            await conn.run_sync(upgrade_connection, revision)

    async def aclose(self) -> None:
        """Release the connection pools (the engine only if this store created it)."""
        listeners, self._stream_listeners = self._stream_listeners, {}
        running = asyncio.get_running_loop()
        for loop, listener in listeners.items():
            if loop is running:
                await listener.aclose()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(listener.cancel)
        for replica in self._own_replicas:
            await replica.dispose()
        if self._threaded is not None:
            await self._in_thread(self._threaded.close)
        if self._memory_thread is not None:
            self._memory_thread.shutdown()
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    ensure_user = _async(_ops.ensure_user)
    delete_user = _async(_ops.delete_user)
    create_conversation = _async(_ops.create_conversation)
    get_or_create_conversation = _async(_ops.get_or_create_conversation)
    get_conversation_by_external_id = _async(_ops.get_conversation_by_external_id)
    get_conversation = _async(_ops.get_conversation)
    list_conversations = _async(_ops.list_conversations)
    update_conversation = _async(_ops.update_conversation)
    delete_conversation = _async(_ops.delete_conversation)
    append_message = _async(_ops.append_message)
    append_messages = _async(_ops.append_messages)
    list_messages = _async(_ops.list_messages)
    get_messages = _async(_ops.get_messages)
    last_messages = _async(_ops.last_messages)
    get_history = _async(_ops.get_history)
    get_message = _async(_ops.get_message)
    delete_message = _async(_ops.delete_message)
    pop_message = _async(_ops.pop_message)
    delete_messages_after = _async(_ops.delete_messages_after)
    search = _async(_ops.search)
    begin_message = _async(_ops.begin_message)
    append_delta = _async(_ops.append_delta)
    finish_message = _async(_ops.finish_message)
    fail_message = _async(_ops.fail_message)
    interrupt_message = _async(_ops.interrupt_message)
    read_stream = _async(_ops.read_stream)
    get_retention_policy = _async(_ops.get_retention_policy)
    set_retention_policy = _async(_ops.set_retention_policy)
