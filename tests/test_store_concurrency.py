"""Real concurrency: many writers at once (threads on ``Store``, tasks on ``AsyncStore``).

Writers are released together by a barrier (threads) or ``asyncio.gather`` (tasks); no
sleeps. Whatever the interleaving, nothing is lost, positions are unique and gapless, and
each writer's own order is preserved. On SQLite no writer may fail with "database is locked".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, text

from convostore import AsyncStore, MessagePublic, Store
from convostore.db import make_async_engine, make_engine

WRITERS = 8
PER_WRITER = 12
T = TypeVar("T")


@pytest.fixture
def big_store(db_url: str) -> Iterator[Store]:
    """A sync store whose pool can serve every thread at once."""
    with Store(db_url, pool_size=2 * WRITERS + 2) as s:
        yield s


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def run_together(n: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(0..n-1)`` on ``n`` threads released at the same instant; re-raise errors."""
    barrier = threading.Barrier(n)

    def start(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(start, i) for i in range(n)]
        return [f.result() for f in futures]


def msg(writer: int, seq: int) -> dict[str, Any]:
    return {"role": "user", "content": f"w{writer}-{seq}"}


def check_conversation(messages: list[MessagePublic], writers: range, per_writer: int) -> None:
    """Nothing lost, positions 1..n gapless, each writer's messages in the order it sent them."""
    assert [m.position for m in messages] == list(range(1, len(messages) + 1))
    assert len(messages) == len(writers) * per_writer
    for w in writers:
        own = [int(m.content.split("-")[1]) for m in messages if m.content.startswith(f"w{w}-")]
        assert own == list(range(per_writer)), w


def test_threads_append_to_one_and_to_many_conversations(big_store: Store) -> None:
    shared = big_store.create_conversation("alice")
    own = [big_store.create_conversation(f"u{i}") for i in range(WRITERS)]

    def work(i: int) -> None:
        if i < WRITERS:  # half the threads contend on one conversation...
            for seq in range(PER_WRITER):
                big_store.append_message("alice", shared.id, msg(i, seq))
        else:  # ...while the other half write to their own, at the same time
            w = i - WRITERS
            for seq in range(0, PER_WRITER, 3):
                batch = [msg(w, s) for s in range(seq, seq + 3)]
                stored = big_store.append_messages(f"u{w}", own[w].id, batch)
                assert [m.position for m in stored] == list(range(seq + 1, seq + 4))

    run_together(2 * WRITERS, work)

    check_conversation(big_store.get_messages("alice", shared.id), range(WRITERS), PER_WRITER)
    assert big_store.get_conversation("alice", shared.id).message_count == WRITERS * PER_WRITER
    for w, conv in enumerate(own):
        messages = big_store.get_messages(f"u{w}", conv.id)
        check_conversation(messages, range(w, w + 1), PER_WRITER)
        assert big_store.get_conversation(f"u{w}", conv.id).message_count == PER_WRITER


def test_threads_append_batches_to_one_conversation(big_store: Store) -> None:
    conv = big_store.create_conversation("alice")

    def work(i: int) -> list[int]:
        taken: list[int] = []
        for seq in range(0, PER_WRITER, 4):
            stored = big_store.append_messages(
                "alice", conv.id, [msg(i, s) for s in range(seq, seq + 4)]
            )
            taken += [m.position for m in stored]
            # A batch is atomic: its positions are consecutive.
            assert [m.position for m in stored] == list(
                range(stored[0].position, stored[0].position + 4)
            )
        return taken

    taken = run_together(WRITERS, work)
    flat = sorted(p for positions in taken for p in positions)
    assert flat == list(range(1, WRITERS * PER_WRITER + 1))
    check_conversation(big_store.get_messages("alice", conv.id), range(WRITERS), PER_WRITER)


def test_concurrent_first_writes_for_a_new_user(big_store: Store, raw: Engine) -> None:
    created = run_together(
        WRITERS, lambda i: big_store.create_conversation("newcomer", title=f"t{i}")
    )
    assert len({c.id for c in created}) == WRITERS
    listed = big_store.list_conversations("newcomer", limit=100).data
    assert {c.title for c in listed} == {f"t{i}" for i in range(WRITERS)}
    with raw.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM convostore_users WHERE id = 'newcomer'")
            ).scalar_one()
            == 1
        )


def test_concurrent_first_writes_with_messages(big_store: Store) -> None:
    created = run_together(
        WRITERS, lambda i: big_store.create_conversation("fresh", messages=[msg(i, 0), msg(i, 1)])
    )
    for i, conv in enumerate(created):
        assert [m.content for m in big_store.get_messages("fresh", conv.id)] == [
            f"w{i}-0",
            f"w{i}-1",
        ]


def test_concurrent_retries_of_one_key_store_one_row(big_store: Store, raw: Engine) -> None:
    conv = big_store.create_conversation("alice")
    stored = run_together(
        WRITERS,
        lambda i: big_store.append_message(
            "alice", conv.id, {"role": "user", "content": "hi", "key": "k"}
        ),
    )
    assert len({m.id for m in stored}) == 1 and {m.position for m in stored} == {1}
    assert big_store.get_conversation("alice", conv.id).message_count == 1
    with raw.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 1


def test_concurrent_keyed_batches_store_each_key_once(big_store: Store) -> None:
    """Overlapping retried batches: a writer may lose the key race more than once."""
    for round_ in range(4):
        conv = big_store.create_conversation("alice")
        keys = [f"r{round_}k{i}" for i in range(6)]

        def work(i: int, keys: list[str] = keys, cid: int = conv.id) -> list[int]:
            batch = [{"role": "user", "content": k, "key": k} for k in keys[i % 3 : i % 3 + 4]]
            return [m.id for m in big_store.append_messages("alice", cid, batch)]

        ids = run_together(WRITERS, work)
        messages = big_store.get_messages("alice", conv.id)
        assert sorted(m.key or "" for m in messages) == keys
        assert [m.position for m in messages] == list(range(1, 7))
        by_key = {m.key: m.id for m in messages}
        for i, got in enumerate(ids):  # every writer got the stored rows back
            assert got == [by_key[k] for k in keys[i % 3 : i % 3 + 4]]


def test_concurrent_pops_and_appends_keep_positions_gapless(big_store: Store) -> None:
    conv = big_store.create_conversation("alice", messages=[msg(99, i) for i in range(40)])

    def work(i: int) -> int:
        if i % 2:
            popped = [big_store.pop_message("alice", conv.id) for _ in range(PER_WRITER)]
            return -sum(1 for p in popped if p is not None)
        for seq in range(PER_WRITER):
            big_store.append_message("alice", conv.id, msg(i, seq))
        return PER_WRITER

    delta = sum(run_together(WRITERS, work))
    messages = big_store.get_messages("alice", conv.id)
    assert len(messages) == 40 + delta
    assert [m.position for m in messages] == list(range(1, len(messages) + 1))
    assert big_store.get_conversation("alice", conv.id).message_count == len(messages)


@asynccontextmanager
async def async_store(db_url: str, engine_kind: str) -> AsyncIterator[AsyncStore]:
    """An AsyncStore on its own engine, or on a host's AsyncEngine (the async driver path)."""
    if engine_kind == "owned":
        async with AsyncStore(db_url, pool_size=2 * WRITERS + 2) as a:
            yield a
        return
    engine = make_async_engine(db_url, pool_size=2 * WRITERS + 2)
    try:
        async with AsyncStore(engine) as a:
            yield a
    finally:
        await engine.dispose()


@pytest.mark.parametrize("engine_kind", ["owned", "host"])
async def test_tasks_append_to_one_and_to_many_conversations(db_url: str, engine_kind: str) -> None:
    async with async_store(db_url, engine_kind) as a:
        shared = await a.create_conversation("alice")
        own = [await a.create_conversation(f"u{i}") for i in range(WRITERS)]

        async def to_shared(i: int) -> None:
            for seq in range(PER_WRITER):
                await a.append_message("alice", shared.id, msg(i, seq))

        async def to_own(w: int) -> None:
            for seq in range(0, PER_WRITER, 2):
                await a.append_messages(f"u{w}", own[w].id, [msg(w, seq), msg(w, seq + 1)])

        await asyncio.gather(
            *(to_shared(i) for i in range(WRITERS)), *(to_own(w) for w in range(WRITERS))
        )

        check_conversation(await a.get_messages("alice", shared.id), range(WRITERS), PER_WRITER)
        assert (await a.get_conversation("alice", shared.id)).message_count == WRITERS * PER_WRITER
        for w, conv in enumerate(own):
            check_conversation(await a.get_messages(f"u{w}", conv.id), range(w, w + 1), PER_WRITER)


@pytest.mark.parametrize("engine_kind", ["owned", "host"])
async def test_tasks_first_writes_and_key_retries(db_url: str, engine_kind: str) -> None:
    async with async_store(db_url, engine_kind) as a:
        created = await asyncio.gather(
            *(a.create_conversation("newcomer", title=f"t{i}") for i in range(WRITERS))
        )
        assert len({c.id for c in created}) == WRITERS
        conv = created[0]
        stored = await asyncio.gather(
            *(
                a.append_message("newcomer", conv.id, {"role": "user", "content": "hi", "key": "k"})
                for _ in range(WRITERS)
            )
        )
        assert len({m.id for m in stored}) == 1
        assert [m.key for m in await a.get_messages("newcomer", conv.id)] == ["k"]
        assert len((await a.list_conversations("newcomer", limit=100)).data) == WRITERS


LOOPS = 4


def test_a_fresh_async_store_serves_several_event_loops_at_once(db_url: str) -> None:
    """Threads each running their own loop share one AsyncStore before it has connected
    (the OpenAI Agents SDK's pattern); SQLAlchemy's first-connect lock is per loop."""
    with Store(db_url) as sync:
        conv = sync.create_conversation("loops")
    store = AsyncStore(db_url, pool_size=LOOPS)
    start = threading.Barrier(LOOPS)
    errors: list[BaseException] = []

    def in_own_loop(n: int) -> None:
        async def work() -> None:
            start.wait()  # every loop makes its first call together
            for i in range(3):
                msg = {"role": "user", "content": f"{n}-{i}"}
                await store.append_message("loops", conv.id, msg)
                await store.list_conversations("loops")

        try:
            asyncio.run(work())
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=in_own_loop, args=(n,)) for n in range(LOOPS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a loop hung"
    assert errors == []
    with Store(db_url) as sync:
        stored = sync.get_messages("loops", conv.id)
    assert sorted(m.content for m in stored) == sorted(
        f"{n}-{i}" for n in range(LOOPS) for i in range(3)
    )
    assert [m.position for m in stored] == list(range(1, 3 * LOOPS + 1))
    asyncio.run(store.aclose())


async def test_a_call_cancelled_while_waiting_for_the_first_connect_frees_the_lock(
    pg_url: str,
) -> None:
    # PostgreSQL only: SQLite's store runs the sync implementation, with no first connect.
    from convostore import store as store_module

    async with AsyncStore(pg_url) as fresh:
        lock = store_module._FIRST_CONNECT
        lock.acquire()  # another loop is making its first connection
        try:
            waiting = asyncio.ensure_future(fresh.list_conversations("u"))
            await asyncio.sleep(0)  # one step: the call is now waiting for the lock
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        finally:
            lock.release()
        # The cancelled call's thread takes the lock and hands it back: no one is stuck.
        page = await asyncio.wait_for(fresh.list_conversations("u"), timeout=60)
        assert page.data == []


async def test_sqlite_page_reads_run_on_the_loop_and_writes_in_a_thread(tmp_path: Any) -> None:
    """AsyncStore on SQLite: a bounded read runs where it is awaited, while a writer holds
    the file's write lock (a WAL reader never waits); writes and unbounded reads hop."""
    import sqlite3

    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'loop.db'}"
    with Store(url) as setup:
        setup.migrate()
        conv = setup.create_conversation("u", title="t")
        setup.append_message("u", conv.id, {"role": "user", "content": "hi"})
    async with AsyncStore(url) as store:
        assert store._threaded is not None
        threads: dict[str, set[int]] = {}
        current: list[str] = []

        @event.listens_for(store._threaded.engine, "before_cursor_execute")
        def _seen(*_: Any) -> None:
            threads.setdefault(current[-1], set()).add(threading.get_ident())

        async def call(name: str, *args: Any) -> Any:
            current.append(name)
            return await getattr(store, name)("u", *args)

        blocker = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        try:
            assert [m.content for m in await call("last_messages", conv.id, 5)] == ["hi"]
            assert (await call("get_conversation", conv.id)).title == "t"
            assert len((await call("list_conversations")).data) == 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await call("append_message", conv.id, {"role": "assistant", "content": "yo"})
        assert [m.content for m in await call("get_messages", conv.id)] == ["hi", "yo"]
    loop_thread = threading.get_ident()
    for name in ("last_messages", "get_conversation", "list_conversations"):
        assert threads[name] == {loop_thread}, name
    for name in ("append_message", "get_messages"):
        assert loop_thread not in threads[name], name


async def test_an_in_memory_sqlite_async_store_is_one_database() -> None:
    """``sqlite+aiosqlite:///:memory:``: every call sees the one database that migrate
    created (each thread's connection would be a new, empty one), concurrent calls too."""
    async with AsyncStore("sqlite+aiosqlite:///:memory:") as store:
        await store.migrate()
        conv = await store.create_conversation("u", title="t")
        await asyncio.gather(
            *(
                store.append_message("u", conv.id, {"role": "user", "content": f"m{i}"})
                for i in range(WRITERS)
            )
        )
        assert (await store.get_conversation("u", conv.id)).message_count == WRITERS
        assert len(await store.last_messages("u", conv.id, 3)) == 3
        assert sorted(m.content for m in await store.get_messages("u", conv.id)) == sorted(
            f"m{i}" for i in range(WRITERS)
        )
