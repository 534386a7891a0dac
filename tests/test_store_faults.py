"""PostgreSQL restarted and crashed under the store: nothing acknowledged is lost, nothing
is half-written, and the first request after the restart already works.

Runs on a cluster of its own (``tests/pgcluster.py``), never the shared server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from convostore import AsyncStore, Store, UnavailableError
from convostore.db import make_engine
from convostore.migrate import upgrade
from tests.pgcluster import Cluster, own_cluster

pytestmark = pytest.mark.postgres

WRITERS = 3
BATCH = 3
#: Bounds every wait below; far above what a restart takes, so only a hang reaches it.
PATIENCE_S = 90.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster() as running:
        engine = make_engine(running.url)
        upgrade(engine)
        engine.dispose()
        yield running


@pytest.fixture
def pool_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """ERROR records of SQLAlchemy's pool (e.g. "Exception during reset or similar")."""
    with caplog.at_level(logging.WARNING, logger="sqlalchemy.pool"):
        yield caplog.records


def _errors(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name.startswith("sqlalchemy") and r.levelno >= 40]


def test_idle_pooled_connections_are_replaced_after_a_restart(
    cluster: Cluster, pool_errors: list[logging.LogRecord]
) -> None:
    with Store(cluster.url, pool_size=4) as store:
        conv = store.create_conversation("idle")
        held = [store.engine.connect() for _ in range(4)]
        for conn in held:
            conn.exec_driver_sql("SELECT 1")
            conn.close()
        assert store.engine.pool.checkedin() == 4  # type: ignore[attr-defined]
        cluster.restart()
        # Every pooled connection is stale now; each call must still succeed at once.
        for n in range(8):
            store.append_message("idle", conv.id, {"role": "user", "content": f"after {n}"})
        assert [m.content for m in store.get_messages("idle", conv.id)] == [
            f"after {n}" for n in range(8)
        ]
    assert _errors(pool_errors) == []


async def test_idle_async_connections_are_replaced_after_a_restart(
    cluster: Cluster, pool_errors: list[logging.LogRecord]
) -> None:
    async with AsyncStore(cluster.url, pool_size=4) as store:
        conv = await store.create_conversation("idle-async")
        held = [await store.engine.connect() for _ in range(4)]
        for conn in held:
            await conn.exec_driver_sql("SELECT 1")
            await conn.close()
        await asyncio.to_thread(cluster.restart)
        for n in range(8):
            await store.append_message("idle-async", conv.id, {"role": "user", "content": str(n)})
        stored = await store.get_messages("idle-async", conv.id)
        assert [m.content for m in stored] == [str(n) for n in range(8)]
    assert _errors(pool_errors) == []


class Traffic:
    """Writers appending keyed batches (retried on 503 until acknowledged) and a reader."""

    def __init__(self, store: Store, user: str) -> None:
        self.store, self.user = store, user
        self.convs = [store.create_conversation(user).id for _ in range(WRITERS)]
        self.acked: dict[int, list[str]] = {conv: [] for conv in self.convs}
        self.unexpected: list[BaseException] = []
        self.outages = 0
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.threads = [
            threading.Thread(target=self._guard, args=(self._write, conv)) for conv in self.convs
        ] + [threading.Thread(target=self._guard, args=(self._read, None))]

    def _guard(self, body: Any, conv: int | None) -> None:
        try:
            body(conv)
        except BaseException as exc:  # recorded, and the test fails on it
            self.unexpected.append(exc)
            with self.progress:
                self.progress.notify_all()

    def _retrying(self, call: Any) -> Any:
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                return call()
            except UnavailableError:
                self.outages += 1
                if time.monotonic() > deadline:
                    raise
                self.stop.wait(0.05)  # a client's back-off while the server is down

    def _write(self, conv: int) -> None:
        n = 0
        while not self.stop.is_set():
            keys = [f"{conv}-{n}-{j}" for j in range(BATCH)]
            batch = [{"role": "user", "content": k, "key": k} for k in keys]
            stored = self._retrying(
                lambda b=batch: self.store.append_messages(self.user, conv, b)  # type: ignore[misc]
            )
            assert [m.content for m in stored] == keys
            with self.progress:
                self.acked[conv].extend(keys)
                self.progress.notify_all()
            n += 1

    def _read(self, _: None) -> None:
        while not self.stop.is_set():
            for conv in self.convs:
                self._retrying(lambda c=conv: self.store.get_history(self.user, c, max_messages=5))
                self._retrying(lambda: self.store.list_conversations(self.user, limit=5))

    def total(self) -> int:
        return sum(len(keys) for keys in self.acked.values())

    def wait_for_more(self, count: int) -> None:
        target = self.total() + count
        with self.progress:
            reached = self.progress.wait_for(
                lambda: self.total() >= target or bool(self.unexpected), timeout=PATIENCE_S
            )
        assert reached and not self.unexpected, self.unexpected


def test_a_restart_and_a_crash_under_traffic_lose_nothing_acknowledged(
    cluster: Cluster, pool_errors: list[logging.LogRecord]
) -> None:
    with Store(cluster.url, pool_size=WRITERS + 1) as store:
        traffic = Traffic(store, "busy")
        for thread in traffic.threads:
            thread.start()
        try:
            traffic.wait_for_more(30)
            cluster.restart()
            traffic.wait_for_more(30)
            cluster.crash_and_start()  # stop -m immediate: recovery replays the WAL
            traffic.wait_for_more(30)
        finally:
            traffic.stop.set()
            for thread in traffic.threads:
                thread.join(PATIENCE_S)
        assert traffic.unexpected == []
        for conv, keys in traffic.acked.items():
            stored = store.get_messages("busy", conv)
            # Every acknowledged batch is there once, whole and in order; a batch retried
            # after a lost acknowledgement was not stored twice (its keys say so).
            assert [m.content for m in stored][: len(keys)] == keys
            assert len(stored) - len(keys) in (0, BATCH)  # at most the batch in flight at stop
            assert [m.position for m in stored] == list(range(1, len(stored) + 1))
            assert store.get_conversation("busy", conv).message_count == len(stored)
    assert traffic.outages > 0  # the faults really met the traffic
    assert _errors(pool_errors) == []  # outages are 503s (logged by convostore), not noise
