"""``follow_stream``: replay, then follow (PostgreSQL LISTEN/NOTIFY, SQLite polling)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from convostore import AsyncStore, streaming
from convostore.errors import NotFoundError
from convostore.schemas import MessagePublic, StreamChunk

ALICE = "alice"


async def _collect(store: AsyncStore, mid: int, after: int | None = None) -> list[object]:
    return [e async for e in streaming.follow_stream(store, ALICE, mid, after)]


async def test_replays_then_follows_until_the_end(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE)
    msg = await astore.begin_message(ALICE, conv.id)
    await astore.append_delta(ALICE, msg.id, 0, "a")
    await astore.append_delta(ALICE, msg.id, 1, "b")
    events: list[object] = []
    following = asyncio.Event()

    async def follow() -> None:
        async for event in streaming.follow_stream(astore, ALICE, msg.id, 0):
            events.append(event)
            following.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(following.wait(), 30)
    for seq in range(2, 6):
        await astore.append_delta(ALICE, msg.id, seq, str(seq))
    await astore.finish_message(ALICE, msg.id)
    await asyncio.wait_for(task, 30)
    chunks = [e for e in events if isinstance(e, StreamChunk)]
    assert [c.seq for c in chunks] == [1, 2, 3, 4, 5]
    end = events[-1]
    assert isinstance(end, MessagePublic) and (end.status, end.content) == ("complete", "ab2345")


@pytest.mark.postgres
async def test_a_follower_is_woken_by_notifications_on_postgresql(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Re-reads far apart: only a notification can deliver the delta in time.
    monkeypatch.setattr(streaming, "MAX_WAIT_S", 120.0)
    async with AsyncStore(pg_url) as astore:
        await _woken(astore, monkeypatch)


async def _woken(astore: AsyncStore, monkeypatch: pytest.MonkeyPatch) -> None:
    conv = await astore.create_conversation(ALICE)
    msg = await astore.begin_message(ALICE, conv.id)
    read_once = asyncio.Event()
    read_stream = astore.read_stream

    async def reading(*args: Any, **kwargs: Any) -> Any:
        read = await read_stream(*args, **kwargs)
        read_once.set()
        return read

    monkeypatch.setattr(astore, "read_stream", reading)
    agen = streaming.follow_stream(astore, ALICE, msg.id)
    first = asyncio.ensure_future(agen.__anext__())
    await asyncio.wait_for(read_once.wait(), 30)  # it has read (nothing) before the delta
    assert not first.done()
    await astore.append_delta(ALICE, msg.id, 0, "hi")
    chunk = await asyncio.wait_for(first, 20)
    assert isinstance(chunk, StreamChunk) and chunk.text == "hi"
    await astore.interrupt_message(ALICE, msg.id)
    end = await asyncio.wait_for(agen.__anext__(), 20)
    assert isinstance(end, MessagePublic) and end.status == "interrupted"
    await agen.aclose()


async def test_a_follower_ends_when_the_lease_runs_out(db_url: str) -> None:
    # The lease runs on the store's clock: the test moves it past the lease while the
    # follower waits (no real lease to lapse early on a slow machine between two calls).
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    async with AsyncStore(db_url, stream_lease_seconds=60, clock=clock) as store:
        conv = await store.create_conversation(ALICE)
        msg = await store.begin_message(ALICE, conv.id)
        await store.append_delta(ALICE, msg.id, 0, "so far")
        events: list[object] = []
        waiting = asyncio.Event()

        async def follow() -> None:
            async for event in streaming.follow_stream(store, ALICE, msg.id):
                events.append(event)
                waiting.set()  # it has the delta, and waits for more

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(waiting.wait(), 30)
        assert not follower.done()  # the reply is streaming: the follower waits
        offset[0] = timedelta(seconds=61)  # the writer has been quiet past its lease
        await asyncio.wait_for(follower, 30)
    assert isinstance(events[0], StreamChunk)
    end = events[-1]
    assert isinstance(end, MessagePublic) and (end.status, end.content) == (
        "interrupted",
        "so far",
    )


async def test_following_another_users_reply_is_not_found(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE)
    msg = await astore.begin_message(ALICE, conv.id)
    with pytest.raises(NotFoundError):
        async for _ in streaming.follow_stream(astore, "bob", msg.id):
            pass  # pragma: no cover
