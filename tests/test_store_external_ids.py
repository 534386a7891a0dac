"""Conversations found by the host's own id (``external_id``), e.g. an Agents SDK session."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from convostore import AsyncStore, ConflictError, NotFoundError, Store, ValidationError
from tests.conftest import MaybeAsync


async def test_get_or_create_returns_one_conversation(api: MaybeAsync) -> None:
    first = await api.get_or_create_conversation("alice", "sess-1", title="Trip", metadata={"a": 1})
    again = await api.get_or_create_conversation("alice", "sess-1", title="ignored")
    assert again.id == first.id
    assert (again.title, again.metadata, again.external_id) == ("Trip", {"a": 1}, "sess-1")
    found = await api.get_conversation_by_external_id("alice", "sess-1")
    assert found.id == first.id
    page = await api.list_conversations("alice")
    assert [c.id for c in page.data] == [first.id]


async def test_external_ids_are_per_user(api: MaybeAsync) -> None:
    alice = await api.get_or_create_conversation("alice", "shared-id")
    bob = await api.get_or_create_conversation("bob", "shared-id")
    assert alice.id != bob.id
    with pytest.raises(NotFoundError) as foreign:
        await api.get_conversation_by_external_id("carol", "shared-id")
    with pytest.raises(NotFoundError) as missing:
        await api.get_conversation_by_external_id("alice", "no-such-id")
    assert type(foreign.value) is type(missing.value)


async def test_duplicate_external_id_is_a_conflict_and_writes_nothing(api: MaybeAsync) -> None:
    await api.create_conversation("alice", external_id="sess-1")
    with pytest.raises(ConflictError, match="external_id"):
        await api.create_conversation(
            "alice", external_id="sess-1", messages=[{"role": "user", "content": "hi"}]
        )
    page = await api.list_conversations("alice")
    assert len(page.data) == 1 and page.data[0].message_count == 0


@pytest.mark.parametrize("bad", ["", "   ", "x" * 256, "nul\x00"])
async def test_bad_external_ids_are_rejected(api: MaybeAsync, bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        await api.get_or_create_conversation("alice", bad)
    assert info.value.field == "external_id"
    with pytest.raises(ValidationError):
        await api.create_conversation("alice", external_id=bad)
    assert (await api.list_conversations("alice")).data == []


def test_concurrent_first_calls_create_one_conversation(store: Store) -> None:
    writers = 8
    barrier = threading.Barrier(writers)

    def call(_: int) -> int:
        barrier.wait()
        return store.get_or_create_conversation("brand-new-user", "sess-race").id

    with ThreadPoolExecutor(writers) as pool:
        ids = list(pool.map(call, range(writers)))
    assert len(set(ids)) == 1
    assert len(store.list_conversations("brand-new-user").data) == 1


async def test_concurrent_first_calls_create_one_conversation_async(astore: AsyncStore) -> None:
    results = await asyncio.gather(
        *(astore.get_or_create_conversation("new-user", "sess-race") for _ in range(8))
    )
    assert len({c.id for c in results}) == 1
    assert len((await astore.list_conversations("new-user")).data) == 1
