"""Following a streamed reply while it is written: :func:`follow_stream`.

    async for event in follow_stream(astore, "alice", message_id, after_seq=last_seen):
        if isinstance(event, StreamChunk):
            ...  # a delta, in seq order (remember event.seq to resume after it)
        else:
            ...  # the reply ended: the final MessagePublic (status and whole content)

The stored deltas after ``after_seq`` come first, then new ones as they are stored, until
the reply completes, fails, is interrupted, or its lease runs out. A follower is woken by
PostgreSQL's ``LISTEN/NOTIFY`` (every delta and end is announced on one channel, by one
connection per store and event loop, outside the pool, shared by all its followers);
SQLite has no notifications, so its followers poll with a backoff. Either way they also
re-read at least every :data:`MAX_WAIT_S`, so a lost notification or a dead writer (whose
lease runs out silently) never leaves a follower waiting for ever.

A delta that arrives after a later one was already sent (the writer sent them out of
order) is not sent live; the final message's ``content`` always holds every delta in
order, so a follower should take it as the reply's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from convostore._sql import STREAM_CHANNEL
from convostore.schemas import MessagePublic, StreamChunk

if TYPE_CHECKING:
    from convostore.store import AsyncStore

__all__ = ["MAX_WAIT_S", "follow_stream"]

log = logging.getLogger("convostore")

#: The longest a follower waits before reading again (bounds how late it notices a lease
#: that ran out, or anything a lost notification would have told it).
MAX_WAIT_S = 1.0
#: SQLite's polling: the first wait after a read that found nothing new, doubled each time.
FIRST_POLL_S = 0.02


class _Listener:
    """One ``LISTEN`` connection (not from the pool) waking every follower in one loop."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    async def subscribe(self, message_id: int) -> asyncio.Event:
        """An event set on every change of the reply (after its transaction commits)."""
        event = asyncio.Event()
        self._waiters.setdefault(message_id, set()).add(event)
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._task = loop.create_task(self._run(self._ready))
        assert self._ready is not None
        with contextlib.suppress(Exception):
            # Listening before the follower's first read, so nothing falls in between;
            # if it cannot listen, the follower still reads every MAX_WAIT_S.
            await asyncio.wait_for(asyncio.shield(self._ready), MAX_WAIT_S)
        return event

    def unsubscribe(self, message_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(message_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[message_id]

    async def _run(self, ready: asyncio.Future[None]) -> None:
        import psycopg

        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True
            ) as conn:
                await conn.execute(f"LISTEN {STREAM_CHANNEL}")
                ready.set_result(None)
                async for note in conn.notifies():
                    try:
                        message_id = int(note.payload)
                    except ValueError:
                        continue
                    for event in self._waiters.get(message_id, ()):
                        event.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Followers fall back to reading every MAX_WAIT_S; the next one reconnects.
            log.warning("stream notifications unavailable: %s", exc)
        finally:
            if not ready.done():
                ready.set_exception(ConnectionError("not listening"))
                ready.exception()  # retrieved: no "never retrieved" warning
            for waiters in self._waiters.values():
                for event in waiters:
                    event.set()

    def cancel(self) -> None:
        """Stop listening (from the listener's own loop)."""
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def _listener(store: AsyncStore) -> _Listener | None:
    """The store's listener for the running loop (PostgreSQL only)."""
    if not store._pg:
        return None
    loop = asyncio.get_running_loop()
    listeners: dict[Any, _Listener] = store._stream_listeners
    found = listeners.get(loop)
    if found is None:
        url = store.engine.url.set(drivername="postgresql")
        found = listeners[loop] = _Listener(url.render_as_string(hide_password=False))
    return found


async def follow_stream(
    store: AsyncStore,
    user_id: str,
    message_id: int,
    after_seq: int | None = None,
    *,
    conversation_id: int | None = None,
) -> AsyncIterator[StreamChunk | MessagePublic]:
    """The reply's deltas after ``after_seq`` as they are stored, then the final message.

    Raises what :meth:`AsyncStore.read_stream` raises (``NotFoundError`` for a message
    that is not the user's), before anything is yielded.
    """
    listener = _listener(store)
    event = await listener.subscribe(message_id) if listener is not None else None
    try:
        after, poll = after_seq, FIRST_POLL_S
        while True:
            if event is not None:
                event.clear()  # set again by any change committed from here on
            read = await store.read_stream(
                user_id, message_id, after, conversation_id=conversation_id
            )
            for chunk in read.chunks:
                yield chunk
                after = chunk.seq
            if read.has_more:
                continue
            if read.done:
                yield read.message
                return
            if read.chunks:
                poll = FIRST_POLL_S
            if event is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), MAX_WAIT_S)
            else:
                await asyncio.sleep(poll)
                poll = min(poll * 2, MAX_WAIT_S)
    finally:
        if listener is not None and event is not None:
            listener.unsubscribe(message_id, event)
