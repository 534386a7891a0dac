"""Every statement convostore sends goes through SQLAlchemy's engine events, so logging
(``echo=True``) and OpenTelemetry's SQLAlchemy instrumentation see all of them.

On SQLite the driver's own trace callback is the ground truth: everything the sqlite3
module executes, minus the per-connection PRAGMAs (run at connect time on the raw DBAPI
connection, as SQLAlchemy's own dialect set-up does) and the COMMIT/ROLLBACK the driver
issues for ``commit()``/``rollback()`` (SQLAlchemy's ``commit`` events, not statements).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import event
from sqlalchemy.engine import Engine

from convostore import AsyncStore, Store
from tests.conftest import MaybeAsync

TOOL_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


class Seen:
    """Statements as SQLAlchemy's events and the SQLite driver report them."""

    def __init__(self) -> None:
        self.events = 0  # execute and executemany calls, one each
        self.rows = 0  # statements the driver runs: executemany runs one per parameter set
        self.driver: list[str] = []

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        self.events += 1
        self.rows += len(params) if many else 1

    def connect(self, dbapi_connection: Any, record: Any) -> None:
        if hasattr(dbapi_connection, "set_trace_callback"):  # sqlite3
            dbapi_connection.set_trace_callback(self.driver.append)

    def driver_statements(self) -> list[str]:
        skip = ("PRAGMA", "COMMIT", "ROLLBACK")
        # The FTS5 search tables run SQL of their own (reported nested, "-- ..."), and each
        # connection opens them once (convostore.db): not the store's statements.
        kept = [
            s
            for s in self.driver
            if not s.lstrip().upper().startswith(skip)
            and not s.startswith("--")
            and "_fts" not in s
        ]
        # A statement that fires triggers (or foreign-key cascades) is reported once more
        # per trigger, with the same text: count it once.
        return [s for i, s in enumerate(kept) if i == 0 or kept[i - 1] != s]


@pytest.fixture
def seen() -> Iterator[Seen]:
    """Listen on every engine (class-level), including those a store creates itself."""
    observed = Seen()
    event.listen(Engine, "before_cursor_execute", observed.before_cursor_execute)
    event.listen(Engine, "connect", observed.connect, insert=True)
    yield observed
    event.remove(Engine, "before_cursor_execute", observed.before_cursor_execute)
    event.remove(Engine, "connect", observed.connect)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """OpenTelemetry's auto-instrumentation, as ``opentelemetry-instrument`` installs it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Its declared range stops below SQLAlchemy 2.1 (no release covers it yet); it works.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    yield exporter
    SQLAlchemyInstrumentor().uninstrument()


async def _workload(api: MaybeAsync) -> None:
    conv = await api.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
    await api.append_message("alice", conv.id, {"role": "assistant", "content": "hello"})
    await api.append_messages(
        "alice",
        conv.id,
        [
            {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "content": "42", "tool_call_id": "c1", "key": "k"},
        ],
    )
    await api.append_message(
        "alice", conv.id, {"role": "tool", "content": "42", "tool_call_id": "c1", "key": "k"}
    )
    await api.get_history("alice", conv.id, max_tokens=100)
    await api.list_messages("alice", conv.id, limit=2)
    await api.list_conversations("alice")
    await api.pop_message("alice", conv.id)
    await api.delete_messages_after("alice", conv.id, 1)
    await api.update_conversation("alice", conv.id, title="t")
    await api.delete_conversation("alice", conv.id)
    await api.delete_user("alice")


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_every_statement_is_a_span_and_an_event(
    db_url: str, flavour: str, seen: Seen, spans: InMemorySpanExporter
) -> None:
    # The store (and its engines) are created after instrumentation, as in an app.
    store = Store(db_url) if flavour == "sync" else AsyncStore(db_url)
    api = MaybeAsync(store)
    try:
        await _workload(api)
    finally:
        if isinstance(store, AsyncStore):
            await store.aclose()
        else:
            store.close()
    statements = [
        s for s in spans.get_finished_spans() if s.attributes and "db.statement" in s.attributes
    ]
    assert seen.events > 12  # every operation sent at least one statement
    assert len(statements) == seen.events
    if db_url.startswith("sqlite"):
        assert len(seen.driver_statements()) == seen.rows, seen.driver_statements()


async def test_echo_logs_every_statement(
    db_url: str, seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(db_url, echo=True) as store:
        store.list_conversations("warm-up")  # the dialect's own first-connect queries
        seen.events = 0
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            await _workload(MaybeAsync(store))
    # Statement lines only: not parameter lines ("[cached since ...]") nor SQLAlchemy's
    # notes of a DBAPI-level BEGIN / COMMIT / ROLLBACK (no statement is sent for those).
    not_statements = ("[", "BEGIN (implicit", "COMMIT", "ROLLBACK")
    logged = [
        r for r in caplog.records
        if r.name.startswith("sqlalchemy.engine") and r.levelno == logging.INFO
        and not r.getMessage().lstrip().startswith(not_statements)
    ]  # fmt: skip
    assert seen.events > 12 and len(logged) == seen.events, [r.getMessage()[:40] for r in logged]


@pytest.mark.parametrize("where", ["engine, after the store's first calls", "Connection class"])
def test_a_listener_added_later_sees_every_statement(db_url: str, where: str) -> None:
    # The fast path asks the engine's dispatch whether anything listens (db.observed), and
    # the connection's own only where listeners sit on a connection or its class: both
    # places, and a listener that arrives once connections have been used, are seen.
    from sqlalchemy.engine import Connection

    seen = Seen()
    with Store(db_url) as store:
        conv = store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
        store.last_messages("alice", conv.id, 5)  # resolves the engine's events once
        target: Any = store.engine if where.startswith("engine") else Connection
        event.listen(target, "before_cursor_execute", seen.before_cursor_execute)
        try:
            store.last_messages("alice", conv.id, 5)
            store.append_message("alice", conv.id, {"role": "assistant", "content": "hello"})
            store.list_conversations("alice")
            reads_and_append = seen.events
        finally:
            event.remove(target, "before_cursor_execute", seen.before_cursor_execute)
        store.last_messages("alice", conv.id, 5)
    assert reads_and_append >= 3  # one statement each at least
    assert seen.events == reads_and_append  # and none once the listener is gone


def test_engine_connect_listeners_fire_for_every_call(db_url: str) -> None:
    # A call makes no SQLAlchemy Connection where nothing watches (``db.watched``), but a
    # host's engine_connect hook (per-connection settings, tenancy) keeps firing per call.
    connects: list[Any] = []
    with Store(db_url) as store:
        conv = store.create_conversation("alice")
        event.listen(store.engine, "engine_connect", connects.append)
        store.last_messages("alice", conv.id, 5)
        store.list_conversations("alice")
        store.append_message("alice", conv.id, {"role": "user", "content": "hi"})
    assert len(connects) == 3


def test_unwatched_calls_make_a_connection_only_when_asked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads and single-statement writes on the prebuilt statements run on a bare pool
    checkout; an operation that sends a Core statement gets its Connection on demand;
    every checkout goes back to the pool, whatever the call raised."""
    from sqlalchemy.engine import Connection

    from convostore import NotFoundError

    # SQLAlchemy never clears the flag a listener on the Connection class sets (an earlier
    # test here adds and removes one): start from a process where none was ever added.
    monkeypatch.setattr(Connection, "_has_events", False)
    made: list[Connection] = []
    original = Connection.__init__

    def counting(self: Connection, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    with Store(db_url) as store:
        conv = store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
        pool = store.engine.pool
        monkeypatch.setattr(Connection, "__init__", counting)
        store.last_messages("alice", conv.id, 5)
        store.list_messages("alice", conv.id, limit=2)
        store.list_conversations("alice")
        store.get_conversation("alice", conv.id)
        with pytest.raises(NotFoundError):
            store.last_messages("bob", conv.id, 5)
        assert made == []
        assert pool.checkedout() == 0
        assert store.update_conversation("alice", conv.id, title="t").title == "t"  # prebuilt
        with pytest.raises(NotFoundError):
            store.delete_message("alice", conv.id, 10**9)  # prebuilt too
        assert made == []
        keyed = [{"role": "user", "content": c, "key": c} for c in ("a", "b")]
        with pytest.raises(NotFoundError):
            store.append_messages("bob", conv.id, keyed)  # a Core SELECT of the keys first
        assert store.delete_user("bob") is False  # a Core DELETE
        assert len(made) == 2 and all(c.closed for c in made)
        assert pool.checkedout() == 0
