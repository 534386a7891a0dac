"""On PostgreSQL the hot calls cost one network round trip each, read off the libpq trace.

A round trip is one ``Sync`` (extended protocol) or one ``Query`` (simple protocol, which is
what a ``BEGIN``/``COMMIT`` would use) sent by the client.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg.pq import Trace

from convostore import Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    from tests.conftest import _truncate_pg

    _truncate_pg(pg_url)
    # One pooled connection, so the traced connection is the one every call uses.
    with Store(pg_url, pool_size=1, max_overflow=0) as store:
        yield store


def round_trips(store: Store, call: Callable[[], Any]) -> int:
    raw = store.engine.raw_connection()
    pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        raw.close()  # back to the pool, still traced
        call()
        raw = store.engine.raw_connection()
        raw.driver_connection.pgconn.untrace()  # type: ignore[union-attr]
        raw.close()
        trace.seek(0)
        lines = trace.read().decode(errors="replace").splitlines()
    sent = [line.split("\t")[2].split()[0] for line in lines if line.startswith("F\t")]
    return sum(1 for kind in sent if kind in {"Sync", "Query"})


def test_append_message_is_one_round_trip(pg_store: Store) -> None:
    conv = pg_store.create_conversation("alice")
    msg = {"role": "user", "content": "hello"}
    assert round_trips(pg_store, lambda: pg_store.append_message("alice", conv.id, msg)) == 1


def test_append_batch_is_one_round_trip(pg_store: Store) -> None:
    conv = pg_store.create_conversation("alice")
    batch = [{"role": "user", "content": f"m{i}"} for i in range(100)]
    assert round_trips(pg_store, lambda: pg_store.append_messages("alice", conv.id, batch)) == 1
    assert pg_store.get_conversation("alice", conv.id).message_count == 100


def test_reads_are_one_round_trip(pg_store: Store) -> None:
    conv = pg_store.create_conversation("alice", messages=[{"role": "user", "content": "hi"}])
    assert round_trips(pg_store, lambda: pg_store.get_messages("alice", conv.id)) == 1
    assert round_trips(pg_store, lambda: pg_store.last_messages("alice", conv.id, 20)) == 1
    assert round_trips(pg_store, lambda: pg_store.list_conversations("alice", limit=20)) == 1
    assert (
        round_trips(pg_store, lambda: pg_store.get_history("alice", conv.id, max_messages=20)) == 1
    )
