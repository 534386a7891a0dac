"""The store's public API on both databases and both APIs (sync and async, via ``api``)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import QueuePool

from convostore import AsyncStore, ConflictError, NotFoundError, Store, ValidationError
from convostore.config import normalize_url
from convostore.db import make_engine
from convostore.schemas import (
    MAX_SYSTEM_PROMPT_LENGTH,
    ChatMessage,
    ConversationPublic,
    MessagePublic,
)
from tests.conftest import MaybeAsync
from tests.test_history import api_violations

ALICE = "alice"
BOB = "bob"


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    """A plain engine on the test database, to check what is really stored."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def user(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def assistant(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def call(*ids: str) -> dict[str, Any]:
    """An assistant turn that calls one tool per id, with empty content."""
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
        ],
    }


def result(call_id: str, content: str = "ok") -> dict[str, Any]:
    return {"role": "tool", "content": content, "tool_call_id": call_id}


def positions(messages: list[MessagePublic]) -> list[int]:
    return [m.position for m in messages]


def assert_aware_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# ------------------------------------------------------------------- conversations


async def test_create_with_messages_derives_title(api: MaybeAsync) -> None:
    conv = await api.create_conversation(
        ALICE,
        messages=[
            {"role": "system", "content": "be brief"},
            user("\n  Plan a trip to Rome  \nwith kids"),
            assistant("Sure"),
        ],
    )
    assert conv.title == "Plan a trip to Rome"
    assert conv.message_count == 3
    msgs = await api.get_messages(ALICE, conv.id)
    assert [m.role for m in msgs] == ["system", "user", "assistant"]
    assert positions(msgs) == [1, 2, 3]
    assert all(m.user_id == ALICE and m.conversation_id == conv.id for m in msgs)


async def test_auto_title_is_trimmed_to_80_chars_with_ellipsis(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("word " * 40)])
    assert conv.title is not None
    assert len(conv.title) == 80
    assert conv.title.endswith("\u2026")
    assert conv.title.startswith("word word")


async def test_auto_title_on_first_append_never_overwrites(api: MaybeAsync) -> None:
    untitled = await api.create_conversation(ALICE)
    assert untitled.title is None
    await api.append_message(ALICE, untitled.id, user("First question"))
    await api.append_message(ALICE, untitled.id, user("Second question"))
    assert (await api.get_conversation(ALICE, untitled.id)).title == "First question"

    titled = await api.create_conversation(ALICE, title="Mine", messages=[user("Other")])
    assert titled.title == "Mine"
    await api.append_message(ALICE, titled.id, user("More"))
    assert (await api.get_conversation(ALICE, titled.id)).title == "Mine"


async def test_auto_title_can_be_switched_off(db_url: str) -> None:
    with Store(db_url, auto_title=False) as s:
        conv = s.create_conversation(ALICE, messages=[user("Hello")])
        assert conv.title is None


async def test_get_and_update_conversation(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, title="  Trip  ", metadata={"model": "gpt"})
    assert conv.title == "Trip"
    assert conv.metadata == {"model": "gpt"}
    assert conv.message_count == 0
    got = await api.get_conversation(ALICE, conv.id)
    assert got == conv

    renamed = await api.update_conversation(ALICE, conv.id, title="Rome")
    assert renamed.title == "Rome" and renamed.metadata == {"model": "gpt"}
    remeta = await api.update_conversation(ALICE, conv.id, metadata={"a": [1, "ü"]})
    assert remeta.title == "Rome" and remeta.metadata == {"a": [1, "ü"]}
    cleared = await api.update_conversation(ALICE, conv.id, title=None, metadata=None)
    assert cleared.title is None and cleared.metadata is None
    unchanged = await api.update_conversation(ALICE, conv.id)
    assert unchanged == cleared
    assert await api.get_conversation(ALICE, conv.id) == cleared


@pytest.mark.parametrize(
    ("title", "rule"),
    [("x" * 256, "at most 255"), ("   ", "empty"), ("a\x00b", "NUL"), (42, "string")],
)
async def test_bad_titles_are_rejected(api: MaybeAsync, title: Any, rule: str) -> None:
    with pytest.raises(ValidationError) as create_err:
        await api.create_conversation(ALICE, title=title)
    assert create_err.value.field == "title" and rule in create_err.value.rule
    conv = await api.create_conversation(ALICE, title="ok")
    with pytest.raises(ValidationError) as update_err:
        await api.update_conversation(ALICE, conv.id, title=title)
    assert update_err.value.field == "title"
    assert (await api.get_conversation(ALICE, conv.id)).title == "ok"
    assert (await api.list_conversations(ALICE)).data == [conv]


async def test_title_of_exactly_255_chars_is_kept(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, title="é" * 255)
    assert (await api.get_conversation(ALICE, conv.id)).title == "é" * 255


async def test_bad_conversation_metadata_is_rejected(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, metadata={"ok": 1})
    for metadata in (["not", "an", "object"], {"k": "\x00"}, {"\x00": 1}, {"x": {1, 2}}, "{}"):
        with pytest.raises(ValidationError) as err:
            await api.create_conversation(ALICE, metadata=metadata)
        assert err.value.field == "metadata", metadata
        with pytest.raises(ValidationError) as err:
            await api.update_conversation(ALICE, conv.id, metadata=metadata)
        assert err.value.field == "metadata", metadata
    assert (await api.list_conversations(ALICE)).data == [conv]


async def test_bad_user_ids_are_rejected(api: MaybeAsync) -> None:
    for user_id in ("", "   ", "u" * 256, "a\x00b", "\ud800", 7, None):
        with pytest.raises(ValidationError) as err:
            await api.create_conversation(user_id)
        assert err.value.field == "user_id", user_id
        with pytest.raises(ValidationError) as err:
            await api.delete_user(user_id)
        assert err.value.field == "user_id", user_id


async def test_delete_conversation_removes_its_messages(api: MaybeAsync, raw: Engine) -> None:
    keep = await api.create_conversation(ALICE, messages=[user("keep")])
    gone = await api.create_conversation(ALICE, messages=[user("a"), assistant("b")])
    await api.delete_conversation(ALICE, gone.id)
    with pytest.raises(NotFoundError):
        await api.get_conversation(ALICE, gone.id)
    with pytest.raises(NotFoundError):
        await api.get_messages(ALICE, gone.id)
    with pytest.raises(NotFoundError):
        await api.delete_conversation(ALICE, gone.id)
    assert count(raw, "SELECT count(*) FROM messages WHERE conversation_id = :c", c=gone.id) == 0
    assert [m.content for m in await api.get_messages(ALICE, keep.id)] == ["keep"]


async def test_deleted_conversation_ids_are_never_reused(api: MaybeAsync) -> None:
    first = await api.create_conversation(ALICE)
    await api.delete_conversation(ALICE, first.id)
    second = await api.create_conversation(ALICE)
    assert second.id > first.id


async def test_delete_user_erases_everything_and_nothing_else(api: MaybeAsync, raw: Engine) -> None:
    for _ in range(2):
        await api.create_conversation(ALICE, messages=[user("a"), assistant("b")])
    bobs = await api.create_conversation(BOB, messages=[user("bob's")])
    assert await api.delete_user(ALICE) is True
    assert await api.delete_user(ALICE) is False
    assert (await api.list_conversations(ALICE)).data == []
    for table in (
        "convostore_users WHERE id",
        "conversations WHERE user_id",
        "messages WHERE user_id",
    ):
        assert count(raw, f"SELECT count(*) FROM {table} = :u", u=ALICE) == 0
    assert [c.id for c in (await api.list_conversations(BOB)).data] == [bobs.id]
    assert [m.content for m in await api.get_messages(BOB, bobs.id)] == ["bob's"]
    # The user may come back: a new first write registers them again.
    again = await api.create_conversation(ALICE)
    assert (await api.list_conversations(ALICE)).data == [again]


async def test_ensure_user_is_idempotent(api: MaybeAsync, raw: Engine) -> None:
    await api.ensure_user(ALICE)
    await api.ensure_user(ALICE)
    assert count(raw, "SELECT count(*) FROM convostore_users WHERE id = :u", u=ALICE) == 1
    assert (await api.list_conversations(ALICE)).data == []


# ----------------------------------------------------------------------- isolation


async def test_another_users_conversation_is_not_found(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE, title="secret", messages=[user("private")])
    missing = conv.id + 1000

    attempts: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("get_conversation", (), {}),
        ("update_conversation", (), {"title": "hacked"}),
        ("update_conversation", (), {}),
        ("append_message", (user("x"),), {}),
        ("append_messages", ([user("x"), assistant("y")],), {}),
        ("append_messages", ([],), {}),
        ("list_messages", (), {}),
        ("get_messages", (), {}),
        ("last_messages", (5,), {}),
        ("get_history", (), {}),
        ("pop_message", (), {}),
        ("delete_messages_after", (0,), {}),
        ("delete_conversation", (), {}),
    ]
    for name, args, kwargs in attempts:
        method = getattr(api, name)
        with pytest.raises(NotFoundError) as foreign:
            await method(BOB, conv.id, *args, **kwargs)
        with pytest.raises(NotFoundError) as absent:
            await method(ALICE, missing, *args, **kwargs)
        assert str(foreign.value) == f"conversation {conv.id} not found", name
        assert str(absent.value) == f"conversation {missing} not found", name
        assert (foreign.value.kind, type(foreign.value)) == (absent.value.kind, type(absent.value))

    assert await api.get_conversation(ALICE, conv.id) == conv
    assert [m.content for m in await api.get_messages(ALICE, conv.id)] == ["private"]
    assert count(raw, "SELECT count(*) FROM messages") == 1
    assert count(raw, "SELECT count(*) FROM conversations WHERE user_id = :u", u=BOB) == 0
    assert (await api.list_conversations(BOB)).data == []


async def test_conversation_id_must_be_an_int(api: MaybeAsync) -> None:
    for bad_id in ("1", 1.0, True, None):
        with pytest.raises(ValidationError) as err:
            await api.get_conversation(ALICE, bad_id)
        assert err.value.field == "conversation_id", bad_id


# ------------------------------------------------------------------------ messages


async def test_append_assigns_next_positions_and_bumps(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    first = await api.append_message(ALICE, conv.id, user("one"))
    batch = await api.append_messages(ALICE, conv.id, [assistant("two"), user("three")])
    assert first.position == 1 and positions(batch) == [2, 3]
    assert [m.content for m in batch] == ["two", "three"]
    after = await api.get_conversation(ALICE, conv.id)
    assert after.message_count == 3
    assert after.updated_at >= conv.updated_at
    stored = await api.get_messages(ALICE, conv.id)
    assert [(m.id, m.position, m.content) for m in stored] == [
        (m.id, m.position, m.content) for m in [first, *batch]
    ]
    assert await api.append_messages(ALICE, conv.id, []) == []
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 3


async def test_append_messages_is_all_or_nothing(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("before")])
    with pytest.raises(ValidationError) as err:
        await api.append_messages(
            ALICE, conv.id, [user("fine"), {"role": "robot", "content": "x"}, user("fine too")]
        )
    assert err.value.field == "messages[1].role"
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, [user("fine"), user("x" * 10_001)])
    assert err.value.field == "messages[1].content"
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, [user("fine"), user("   ")])
    assert err.value.field == "messages[1].content"
    with pytest.raises(ValidationError) as err:
        await api.create_conversation(
            ALICE, messages=[user("ok"), {"role": "tool", "content": "x"}]
        )
    assert err.value.field == "messages[1].tool_call_id"
    after = await api.get_conversation(ALICE, conv.id)
    assert after.message_count == 1 and after.updated_at == conv.updated_at
    assert [m.content for m in await api.get_messages(ALICE, conv.id)] == ["before"]
    assert count(raw, "SELECT count(*) FROM messages") == 1
    assert count(raw, "SELECT count(*) FROM conversations") == 1


INVALID_MESSAGES: list[tuple[Any, str]] = [
    ({"role": "robot", "content": "x"}, "role"),
    ({"content": "x"}, "role"),
    ({"role": "user", "content": ""}, "content"),
    ({"role": "user", "content": " \n\t "}, "content"),
    ({"role": "assistant", "content": ""}, "content"),
    ({"role": "assistant", "content": "", "tool_calls": []}, "content"),
    ({"role": "user", "content": "x", "tool_calls": [{"id": "c"}]}, "tool_calls"),
    ({"role": "tool", "content": "x"}, "tool_call_id"),
    ({"role": "user", "content": "x", "tool_call_id": "c"}, "tool_call_id"),
    ({"role": "user", "content": "x", "extra": 1}, "extra"),
    ({"role": "user", "content": 5}, "content"),
    ({"role": "user", "content": "x", "metadata": [1]}, "metadata"),
    ({"role": "user", "content": "x", "key": ""}, "key"),
    ("not a mapping", "message"),
]


async def test_invalid_messages_name_the_field(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE)
    for message, field in INVALID_MESSAGES:
        with pytest.raises(ValidationError) as err:
            await api.append_message(ALICE, conv.id, message)
        assert err.value.field == field, message
        assert err.value.to_dict()["field"] == field
    assert count(raw, "SELECT count(*) FROM messages") == 0
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 0


async def test_append_messages_rejects_a_non_list(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, user("x"))
    assert err.value.field == "messages"


async def test_message_content_limit_is_configurable(db_url: str) -> None:
    with Store(db_url, max_content_length=5) as s:
        conv = s.create_conversation(ALICE)
        assert s.append_message(ALICE, conv.id, user("12345")).content == "12345"
        with pytest.raises(ValidationError) as err:
            s.append_message(ALICE, conv.id, user("123456"))
        assert err.value.field == "content" and "at most 5" in err.value.rule


async def test_idempotent_append_with_key(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE)
    first = await api.append_message(ALICE, conv.id, user("hi", key="k1"))
    again = await api.append_message(ALICE, conv.id, user("hi", key="k1"))
    assert again.id == first.id and again.position == 1 and again.key == "k1"
    # A batch that mixes an already stored key with new ones stores only the new ones.
    batch = await api.append_messages(
        ALICE, conv.id, [user("hi", key="k1"), assistant("yo", key="k2"), user("plain")]
    )
    assert batch[0].id == first.id
    assert positions(batch) == [1, 2, 3]
    retry = await api.append_messages(
        ALICE, conv.id, [user("hi", key="k1"), assistant("yo", key="k2")]
    )
    assert [m.id for m in retry] == [m.id for m in batch[:2]]
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 3
    assert count(raw, "SELECT count(*) FROM messages") == 3
    # Keys are scoped to one conversation.
    other = await api.create_conversation(ALICE)
    elsewhere = await api.append_message(ALICE, other.id, user("hi", key="k1"))
    assert elsewhere.id != first.id and elsewhere.position == 1
    # Another user's conversation stays not found even with a known key.
    with pytest.raises(NotFoundError):
        await api.append_message(BOB, conv.id, user("hi", key="k1"))


async def test_a_key_reused_for_a_different_message_is_a_conflict(
    api: MaybeAsync, raw: Engine
) -> None:
    conv = await api.create_conversation(ALICE)
    stored = await api.append_message(ALICE, conv.id, user("hi", key="k", metadata={"a": 1}))
    changes = [
        user("hello", key="k", metadata={"a": 1}),
        assistant("hi", key="k", metadata={"a": 1}),
        user("hi", key="k", metadata={"a": 2}),
        user("hi", key="k"),
        {**call("x"), "key": "k"},
    ]
    for changed in changes:
        with pytest.raises(ConflictError) as err:
            await api.append_message(ALICE, conv.id, changed)
        assert "'k'" in str(err.value)
        # In a batch, nothing of the batch is stored either.
        with pytest.raises(ConflictError):
            await api.append_messages(ALICE, conv.id, [user("new"), changed])
    assert count(raw, "SELECT count(*) FROM messages") == 1
    # The same message again is still a retry, whatever the order of its metadata keys.
    again = await api.append_message(ALICE, conv.id, user("hi", key="k", metadata={"a": 1.0}))
    assert again.id == stored.id
    calls = {**call("x", "y"), "key": "c", "metadata": {"b": [1, 2], "a": {"z": 1, "y": 2}}}
    first = await api.append_message(ALICE, conv.id, calls)
    retried = {**calls, "metadata": {"a": {"y": 2, "z": 1}, "b": [1, 2]}}
    assert (await api.append_message(ALICE, conv.id, retried)).id == first.id


async def test_repeated_keys_in_one_batch_are_rejected(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE)
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, [user("a", key="k"), user("b", key="k")])
    assert err.value.field == "messages.key"
    assert count(raw, "SELECT count(*) FROM messages") == 0


async def test_pop_message(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    assert await api.pop_message(ALICE, conv.id) is None
    await api.append_messages(ALICE, conv.id, [user("a"), assistant("b"), user("c")])
    popped = await api.pop_message(ALICE, conv.id)
    assert popped is not None and (popped.position, popped.content) == (3, "c")
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 2
    nxt = await api.append_message(ALICE, conv.id, user("c2"))
    assert nxt.position == 3
    assert [(m.position, m.content) for m in await api.get_messages(ALICE, conv.id)] == [
        (1, "a"),
        (2, "b"),
        (3, "c2"),
    ]


async def test_popped_key_can_be_appended_again(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    first = await api.append_message(ALICE, conv.id, user("a", key="k"))
    popped = await api.pop_message(ALICE, conv.id)
    assert popped is not None and popped.key == "k"
    again = await api.append_message(ALICE, conv.id, user("a", key="k"))
    assert again.position == 1 and again.created_at > first.created_at
    assert [m.key for m in await api.get_messages(ALICE, conv.id)] == ["k"]


async def test_get_and_delete_one_message(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(str(i)) for i in range(1, 6)])
    rows = await api.get_messages(ALICE, conv.id)
    assert (await api.get_message(ALICE, conv.id, rows[2].id)) == rows[2]
    other = await api.create_conversation("bob")
    for user_id, cid in ((ALICE, other.id), ("bob", conv.id)):
        with pytest.raises(NotFoundError):
            await api.get_message(user_id, cid, rows[2].id)
        with pytest.raises(NotFoundError):
            await api.delete_message(user_id, cid, rows[2].id)
    removed = await api.delete_message(ALICE, conv.id, rows[2].id)
    assert (removed.position, removed.content) == (3, "3")
    with pytest.raises(NotFoundError):
        await api.get_message(ALICE, conv.id, rows[2].id)
    # The later messages moved up: positions stay gapless, and the next append follows.
    await api.append_message(ALICE, conv.id, user("6"))
    left = await api.get_messages(ALICE, conv.id)
    assert [(m.position, m.content) for m in left] == [
        (1, "1"),
        (2, "2"),
        (3, "4"),
        (4, "5"),
        (5, "6"),
    ]
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 5
    assert [m.id for m in left[2:4]] == [rows[3].id, rows[4].id]


async def test_delete_messages_after(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(str(i)) for i in range(1, 6)])
    removed = await api.delete_messages_after(ALICE, conv.id, 2)
    assert [(m.position, m.content) for m in removed] == [(3, "3"), (4, "4"), (5, "5")]
    assert await api.delete_messages_after(ALICE, conv.id, 2) == []
    assert await api.delete_messages_after(ALICE, conv.id, 10) == []
    assert (await api.get_conversation(ALICE, conv.id)).message_count == 2
    nxt = await api.append_messages(ALICE, conv.id, [assistant("x"), user("y")])
    assert positions(nxt) == [3, 4]
    assert positions(await api.get_messages(ALICE, conv.id)) == [1, 2, 3, 4]
    everything = await api.delete_messages_after(ALICE, conv.id, 0)
    assert positions(everything) == [1, 2, 3, 4]
    assert await api.get_messages(ALICE, conv.id) == []
    assert (await api.append_message(ALICE, conv.id, user("fresh"))).position == 1
    for bad in (-1, "1", None):
        with pytest.raises(ValidationError) as err:
            await api.delete_messages_after(ALICE, conv.id, bad)
        assert err.value.field == "position"


async def test_delete_messages_after_touches_one_conversation_of_one_user(
    api: MaybeAsync, raw: Engine
) -> None:
    mine = await api.create_conversation(ALICE, messages=[user("a"), user("b"), user("c")])
    sibling = await api.create_conversation(ALICE, messages=[user("a"), user("b"), user("c")])
    theirs = await api.create_conversation(BOB, messages=[user("a"), user("b"), user("c")])
    # Another user's conversation is not found, and nothing of it is deleted.
    with pytest.raises(NotFoundError):
        await api.delete_messages_after(ALICE, theirs.id, 0)
    with pytest.raises(NotFoundError):
        await api.delete_messages_after(BOB, mine.id, 1)
    removed = await api.delete_messages_after(ALICE, mine.id, 1)
    assert [(m.conversation_id, m.position) for m in removed] == [(mine.id, 2), (mine.id, 3)]
    assert positions(await api.get_messages(ALICE, mine.id)) == [1]
    assert positions(await api.get_messages(ALICE, sibling.id)) == [1, 2, 3]
    assert positions(await api.get_messages(BOB, theirs.id)) == [1, 2, 3]
    convs = [*(await api.list_conversations(ALICE)).data, *(await api.list_conversations(BOB)).data]
    counts = {c.id: c.message_count for c in convs}
    assert counts == {mine.id: 1, sibling.id: 3, theirs.id: 3}
    assert count(raw, "SELECT count(*) FROM messages") == 7


async def test_last_messages(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(str(i)) for i in range(1, 8)])
    assert [m.content for m in await api.last_messages(ALICE, conv.id, 3)] == ["5", "6", "7"]
    assert positions(await api.last_messages(ALICE, conv.id, 100)) == list(range(1, 8))
    assert await api.last_messages(ALICE, conv.id, 0) == []
    for bad in (-1, 1001, "3"):
        with pytest.raises(ValidationError) as err:
            await api.last_messages(ALICE, conv.id, bad)
        assert err.value.field == "n"
    empty = await api.create_conversation(ALICE)
    assert await api.last_messages(ALICE, empty.id, 5) == []


async def test_messages_are_plain_detached_models(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("hi", metadata={"lang": "en"})])
    [msg] = await api.get_messages(ALICE, conv.id)
    dumped = msg.model_dump(mode="json")
    assert dumped["metadata"] == {"lang": "en"} and dumped["role"] == "user"
    assert MessagePublic.model_validate(dumped) == MessagePublic.model_validate(msg.model_dump())
    assert ConversationPublic.model_validate(conv.model_dump()) == conv


# ------------------------------------------------------------- tool calls, unicode


async def test_tool_call_round_trip(api: MaybeAsync) -> None:
    calls = call("call_1", "call_2")
    conv = await api.create_conversation(ALICE, messages=[user("weather?")])
    stored_call = await api.append_message(ALICE, conv.id, calls)
    results = await api.append_messages(
        ALICE, conv.id, [result("call_1", '{"temp": 21}'), result("call_2", "sunny ☀")]
    )
    final = await api.append_message(ALICE, conv.id, assistant("21° and sunny"))
    assert stored_call.content == "" and stored_call.tool_calls == calls["tool_calls"]
    stored = await api.get_messages(ALICE, conv.id)
    assert stored[1].tool_calls == calls["tool_calls"] and stored[1].content == ""
    assert [m.tool_call_id for m in stored[2:4]] == ["call_1", "call_2"]
    assert [m.id for m in stored[1:]] == [stored_call.id, *(r.id for r in results), final.id]
    chat = await api.get_history(ALICE, conv.id)
    assert chat == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls["tool_calls"]},
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"},
        {"role": "tool", "content": "sunny ☀", "tool_call_id": "call_2"},
        {"role": "assistant", "content": "21° and sunny"},
    ]
    assert [m.to_openai() for m in stored] == chat


UNICODE_SAMPLES = [
    "Grüße, 你好, مرحبا, שלום",
    "emoji 👩‍👩‍👧‍👦🚀🇯🇵 and a lone ZWJ \u200d",
    "combining e\u0301 and \U0001f600" * 3,
    "quotes ' \" \\ and %s %(x)s :param",
    "tabs\tand\nnewlines\r\n",
]


@pytest.mark.parametrize("content", UNICODE_SAMPLES)
async def test_unicode_round_trips(api: MaybeAsync, content: str) -> None:
    meta = {"note": content, "nested": [content, {"k": content}]}
    tool_calls = [{"id": content, "function": {"name": "f", "arguments": content}}]
    conv = await api.create_conversation(ALICE, title=content[:255].strip(), metadata=meta)
    await api.append_messages(
        ALICE,
        conv.id,
        [
            user(content, metadata=meta),
            {"role": "assistant", "content": content, "tool_calls": tool_calls},
            result(content, content),
        ],
    )
    got = await api.get_messages(ALICE, conv.id)
    assert [m.content for m in got] == [content] * 3
    assert got[0].metadata == meta and got[1].tool_calls == tool_calls
    assert got[2].tool_call_id == content
    again = await api.get_conversation(ALICE, conv.id)
    assert again.metadata == meta and again.title == content[:255].strip()


async def test_content_at_the_limit_and_one_over(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE)
    at_limit = "😀" * 10_000
    stored = await api.append_message(ALICE, conv.id, user(at_limit))
    assert (await api.get_messages(ALICE, conv.id))[0].content == at_limit == stored.content
    with pytest.raises(ValidationError) as err:
        await api.append_message(ALICE, conv.id, user("a" * 10_001))
    assert err.value.field == "content" and "10000" in err.value.rule
    assert count(raw, "SELECT count(*) FROM messages") == 1


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (user("a\x00b"), "content"),
        ({**call("c1"), "tool_calls": [{"id": "c\x00", "type": "function"}]}, "tool_calls"),
        (user("ok", metadata={"k": "v\x00"}), "metadata"),
        (user("ok", metadata={"k\x00": "v"}), "metadata"),
        (result("c\x00"), "tool_call_id"),
        (user("ok", key="k\x00"), "key"),
    ],
)
async def test_nul_characters_are_a_validation_error(
    api: MaybeAsync, raw: Engine, message: dict[str, Any], field: str
) -> None:
    conv = await api.create_conversation(ALICE)
    with pytest.raises(ValidationError) as err:
        await api.append_message(ALICE, conv.id, message)
    assert err.value.field == field and "NUL" in err.value.rule
    with pytest.raises(ValidationError) as batch_err:
        await api.append_messages(ALICE, conv.id, [user("fine"), message])
    assert batch_err.value.field == f"messages[1].{field}"
    with pytest.raises(ValidationError):
        await api.create_conversation(ALICE, messages=[message])
    assert count(raw, "SELECT count(*) FROM messages") == 0
    assert count(raw, "SELECT count(*) FROM conversations") == 1


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (user("lone \ud800 surrogate"), "content"),
        (user("\udfff"), "content"),
        (user("ok", metadata={"k": "\ud800"}), "metadata"),
        ({**call("c1"), "tool_calls": [{"id": "\udc00"}]}, "tool_calls"),
        (result("\ud800"), "tool_call_id"),
        (user("ok", key="\ud800"), "key"),
    ],
)
async def test_lone_surrogates_are_a_validation_error(
    api: MaybeAsync, message: dict[str, Any], field: str
) -> None:
    conv = await api.create_conversation(ALICE)
    with pytest.raises(ValidationError) as err:
        await api.append_message(ALICE, conv.id, message)
    assert err.value.field == field
    with pytest.raises(ValidationError) as title_err:
        await api.update_conversation(ALICE, conv.id, title="\ud800")
    assert title_err.value.field == "title"
    assert await api.get_messages(ALICE, conv.id) == []


async def test_escaped_nul_text_is_not_a_nul(api: MaybeAsync) -> None:
    """A literal backslash followed by "u0000" (e.g. in tool arguments) is ordinary text."""
    conv = await api.create_conversation(ALICE)
    args = '{"pattern": "\\\\u0000"}'
    tool = {**call("c1"), "tool_calls": [{"id": "c1", "function": {"arguments": args}}]}
    await api.append_message(ALICE, conv.id, {**tool, "metadata": {"raw": "\\u0000"}})
    [got] = await api.get_messages(ALICE, conv.id)
    assert got.tool_calls == tool["tool_calls"] and got.metadata == {"raw": "\\u0000"}


async def test_unserialisable_tool_calls_are_a_validation_error(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    bad = {**call("c1"), "tool_calls": [{"id": "c1", "x": float("nan")}]}
    with pytest.raises(ValidationError) as err:
        await api.append_message(ALICE, conv.id, bad)
    assert err.value.field == "tool_calls"


# ------------------------------------------------------------------------- history


async def test_history_pins_system_prompt_and_is_oldest_first(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(str(i)) for i in range(1, 6)])
    hist = await api.get_history(ALICE, conv.id, max_messages=2, system_prompt="be nice")
    assert hist == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "4"},
        {"role": "user", "content": "5"},
    ]
    assert await api.get_history(ALICE, conv.id, max_messages=0, system_prompt="s") == [
        {"role": "system", "content": "s"}
    ]
    assert [m["content"] for m in await api.get_history(ALICE, conv.id)] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    empty = await api.create_conversation(ALICE)
    assert await api.get_history(ALICE, empty.id) == []


TOOL_CONVERSATION = [
    user("q1"),
    call("a", "b"),
    result("a"),
    result("b"),
    assistant("answer"),
    user("q2"),
]


HISTORY_BY_MAX_MESSAGES: list[tuple[int, list[str | None]]] = [
    (0, []),
    (1, ["q2"]),
    (2, ["answer", "q2"]),
    (3, ["answer", "q2"]),  # the 3-message tool unit does not fit: never split
    (4, ["answer", "q2"]),
    (5, [None, "ok", "ok", "answer", "q2"]),
    (6, ["q1", None, "ok", "ok", "answer", "q2"]),
    (50, ["q1", None, "ok", "ok", "answer", "q2"]),
]


async def test_history_max_messages_never_splits_tool_units(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=TOOL_CONVERSATION)
    for max_messages, expected in HISTORY_BY_MAX_MESSAGES:
        hist = await api.get_history(ALICE, conv.id, max_messages=max_messages)
        assert [m["content"] for m in hist] == expected, max_messages
        assert_no_split_tool_units(hist)


def assert_no_split_tool_units(hist: list[ChatMessage]) -> None:
    """The window is one the model API accepts (the oracle of ``tests.test_history``)."""
    assert api_violations(hist) == [], hist


def one_token(_: ChatMessage) -> int:
    return 1


HISTORY_BY_MAX_TOKENS: list[tuple[int, list[str | None]]] = [
    (0, []),
    (1, ["q2"]),
    (2, ["answer", "q2"]),
    (4, ["answer", "q2"]),
    (5, [None, "ok", "ok", "answer", "q2"]),
]


async def test_history_token_budget_with_custom_counter(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=TOOL_CONVERSATION)
    for max_tokens, expected in HISTORY_BY_MAX_TOKENS:
        hist = await api.get_history(ALICE, conv.id, max_tokens=max_tokens, token_counter=one_token)
        assert [m["content"] for m in hist] == expected, max_tokens
        assert_no_split_tool_units(hist)


async def test_history_budget_counts_the_system_prompt(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=TOOL_CONVERSATION)
    hist = await api.get_history(
        ALICE, conv.id, max_tokens=3, system_prompt="sys", token_counter=one_token
    )
    assert [m["content"] for m in hist] == ["sys", "answer", "q2"]
    # A budget smaller than the prompt leaves only the pinned prompt.
    only = await api.get_history(
        ALICE, conv.id, max_tokens=0, system_prompt="sys", token_counter=one_token
    )
    assert only == [{"role": "system", "content": "sys"}]


async def test_history_budget_smaller_than_one_message_is_empty(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("x" * 400)])
    assert await api.get_history(ALICE, conv.id, max_tokens=50) == []
    assert len(await api.get_history(ALICE, conv.id, max_tokens=200)) == 1
    both = await api.get_history(ALICE, conv.id, max_tokens=50, max_messages=10, system_prompt="s")
    assert both == [{"role": "system", "content": "s"}]


async def test_history_uses_the_stores_token_counter(db_url: str) -> None:
    seen: list[ChatMessage] = []

    def counter(message: ChatMessage) -> int:
        seen.append(message)
        return 10

    with Store(db_url, token_counter=counter) as s:
        conv = s.create_conversation(ALICE, messages=[user("a"), user("b"), user("c")])
        hist = s.get_history(ALICE, conv.id, max_tokens=25)
        assert [m["content"] for m in hist] == ["b", "c"]
        assert {"role": "user", "content": "c"} in seen
        # A per-call counter wins over the store's.
        assert len(s.get_history(ALICE, conv.id, max_tokens=25, token_counter=one_token)) == 3


async def test_history_skips_orphan_tool_results(api: MaybeAsync) -> None:
    conv = await api.create_conversation(
        ALICE, messages=[result("lost"), user("q"), call("a"), result("a"), result("zzz")]
    )
    hist = await api.get_history(ALICE, conv.id)
    assert [(m["role"], m.get("tool_call_id")) for m in hist] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
    ]
    assert_no_split_tool_units(hist)
    # Cutting the call away leaves only orphans: the window must not start on one.
    cut = await api.create_conversation(ALICE, messages=[call("x"), result("x"), user("next")])
    await api.delete_messages_after(ALICE, cut.id, 1)
    await api.append_message(ALICE, cut.id, result("x"))
    tail = await api.get_history(ALICE, cut.id, max_messages=1)
    assert tail == []


async def test_history_leaves_out_tool_calls_that_were_never_answered(api: MaybeAsync) -> None:
    """A crashed tool run must not break the conversation for good."""
    crashed = await api.create_conversation(
        ALICE, messages=[user("q1"), call("a"), user("q2"), assistant("a2")]
    )
    hist = await api.get_history(ALICE, crashed.id, system_prompt="sys")
    assert [m["content"] for m in hist] == ["sys", "q1", "q2", "a2"]
    partial = await api.create_conversation(
        ALICE, messages=[user("q"), call("a", "b"), result("a"), user("next")]
    )
    hist = await api.get_history(ALICE, partial.id)
    assert [c["id"] for c in hist[1]["tool_calls"]] == ["a"]
    assert [m["role"] for m in hist] == ["user", "assistant", "tool", "user"]
    assert_no_split_tool_units(hist)
    # Still pending at the end (the tool is running): the call is not sent yet ...
    pending = await api.create_conversation(ALICE, messages=[user("q"), call("p")])
    assert await api.get_history(ALICE, pending.id) == [{"role": "user", "content": "q"}]
    # ... and is sent with its result once that is stored.
    await api.append_message(ALICE, pending.id, result("p"))
    hist = await api.get_history(ALICE, pending.id)
    assert [m["role"] for m in hist] == ["user", "assistant", "tool"]
    # What is stored is left as it was: only the window leaves the calls out.
    stored = await api.get_messages(ALICE, partial.id)
    assert [c["id"] for c in stored[1].tool_calls or []] == ["a", "b"]


async def test_history_sends_parallel_calls_stored_one_per_row_as_one_message(
    api: MaybeAsync,
) -> None:
    conv = await api.create_conversation(
        ALICE, messages=[user("q"), call("a"), call("b"), result("a"), result("b"), assistant("x")]
    )
    hist = await api.get_history(ALICE, conv.id)
    assert [m["role"] for m in hist] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c["id"] for c in hist[1]["tool_calls"]] == ["a", "b"]
    assert_no_split_tool_units(hist)
    # The merged unit is three chat messages, kept or dropped whole.
    assert [m["role"] for m in await api.get_history(ALICE, conv.id, max_messages=3)] == [
        "assistant"
    ]
    assert len(await api.get_history(ALICE, conv.id, max_messages=4)) == 4


async def test_history_pages_through_long_conversations(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE)
    for start in range(0, 450, 150):
        await api.append_messages(ALICE, conv.id, [user(str(i)) for i in range(start, start + 150)])
    hist = await api.get_history(ALICE, conv.id)
    assert [m["content"] for m in hist] == [str(i) for i in range(450)]
    tail = await api.get_history(ALICE, conv.id, max_messages=250)
    assert [m["content"] for m in tail] == [str(i) for i in range(200, 450)]


async def test_history_rejects_bad_limits(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("x")])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_messages": -1}, "max_messages"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"system_prompt": 5}, "system_prompt"),
        ({"system_prompt": b"bytes", "max_tokens": 100}, "system_prompt"),
        ({"system_prompt": ["list"], "max_tokens": 100}, "system_prompt"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            await api.get_history(ALICE, conv.id, **kwargs)
        assert err.value.field == field, kwargs


# ---------------------------------------------------------------------- pagination


async def test_list_messages_pages_in_both_directions(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(str(i)) for i in range(1, 11)])
    seen: list[int] = []
    after: int | None = None
    for _ in range(11):  # bounded: a repeating cursor fails, not hangs
        page = await api.list_messages(ALICE, conv.id, after=after, limit=3)
        seen += positions(page.data)
        if not page.has_more:
            assert page.next_cursor is None
            break
        after = int(page.next_cursor)
    else:
        pytest.fail("paging did not end")
    assert seen == list(range(1, 11))

    seen = []
    before: int | None = None
    for _ in range(11):  # bounded: a repeating cursor fails, not hangs
        page = await api.list_messages(ALICE, conv.id, before=before, order="desc", limit=4)
        seen += positions(page.data)
        if not page.has_more:
            break
        before = int(page.next_cursor)
    else:
        pytest.fail("paging did not end")
    assert seen == list(range(10, 0, -1))

    window = await api.list_messages(ALICE, conv.id, after=3, before=7)
    assert positions(window.data) == [4, 5, 6] and not window.has_more
    exact = await api.list_messages(ALICE, conv.id, limit=10)
    assert len(exact.data) == 10 and not exact.has_more and exact.next_cursor is None


async def test_message_cursors_are_stable_while_messages_arrive(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user(f"m{i}") for i in range(5)])
    seen: list[str] = []
    after: int | None = None
    arriving = 0
    for _ in range(20):  # bounded: a repeating cursor fails, not hangs
        page = await api.list_messages(ALICE, conv.id, after=after, limit=2)
        seen += [m.content for m in page.data]
        if arriving < 4:
            await api.append_message(ALICE, conv.id, user(f"new{arriving}"))
            arriving += 1
        if not page.has_more:
            break
        after = int(page.next_cursor)
    else:
        pytest.fail("paging did not end")
    stored = [m.content for m in await api.get_messages(ALICE, conv.id)]
    assert seen == stored[: len(seen)]
    assert len(seen) == len(set(seen))
    assert {"m0", "m1", "m2", "m3", "m4", "new0"} <= set(seen)

    # Descending from a snapshot: new messages never push old ones into the next page.
    desc: list[str] = []
    first = await api.list_messages(ALICE, conv.id, order="desc", limit=3)
    desc += [m.content for m in first.data]
    before = first.next_cursor
    await api.append_messages(ALICE, conv.id, [user("late1"), user("late2")])
    while before is not None:
        page = await api.list_messages(ALICE, conv.id, before=int(before), order="desc", limit=3)
        desc += [m.content for m in page.data]
        before = page.next_cursor
    assert desc == list(reversed(stored))


async def test_list_messages_bad_arguments(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("x")])
    empty = await api.list_messages(ALICE, conv.id, limit=0)
    assert empty.data == []
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": -1}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
        ({"after": -1}, "after"),
        ({"before": "2"}, "before"),
        ({"order": "up"}, "order"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as err:
            await api.list_messages(ALICE, conv.id, **kwargs)
        assert err.value.field == field, kwargs
    assert len((await api.list_messages(ALICE, conv.id, limit=1000)).data) == 1


async def test_list_conversations_keyset_pages(api: MaybeAsync) -> None:
    convs = [await api.create_conversation(ALICE, title=f"c{i}") for i in range(7)]
    await api.create_conversation(BOB, title="not alice's")
    # Activity reorders them: the most recently appended-to comes first.
    for c in (convs[2], convs[5], convs[0]):
        await api.append_message(ALICE, c.id, user("bump"))
    full = (await api.list_conversations(ALICE, limit=100)).data
    assert {c.id for c in full} == {c.id for c in convs}
    assert full[0].id == convs[0].id and full[1].id == convs[5].id and full[2].id == convs[2].id
    assert full == sorted(full, key=lambda c: (c.updated_at, c.id), reverse=True)

    paged: list[int] = []
    cursor: str | None = None
    for _ in range(len(convs) + 1):  # bounded: a repeating cursor fails, not hangs
        page = await api.list_conversations(ALICE, limit=3, cursor=cursor)
        assert len(page.data) <= 3
        paged += [c.id for c in page.data]
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    else:
        pytest.fail("paging did not end")
    assert paged == [c.id for c in full]


async def test_list_conversations_ties_on_updated_at(
    db_url: str, raw: Engine, api: MaybeAsync
) -> None:
    convs = [await api.create_conversation(ALICE) for _ in range(5)]
    with raw.begin() as conn:  # force identical activity times: the id breaks the tie
        conn.execute(
            text(
                "UPDATE conversations SET updated_at = (SELECT min(updated_at) FROM conversations)"
            )
        )
    paged: list[int] = []
    cursor: str | None = None
    for _ in range(len(convs) + 1):  # bounded: a repeating cursor fails, not hangs
        page = await api.list_conversations(ALICE, limit=2, cursor=cursor)
        paged += [c.id for c in page.data]
        if not page.has_more:
            break
        cursor = page.next_cursor
    else:
        pytest.fail("paging did not end")
    assert paged == sorted((c.id for c in convs), reverse=True)


def _b64(raw_text: str) -> str:
    return base64.urlsafe_b64encode(raw_text.encode()).decode()


INVALID_CURSORS = [
    "garbage!!",
    "e30",
    _b64("[1, 2, 3]"),
    _b64(json.dumps(["2024-01-01T00:00:00", 1])),
    _b64(json.dumps(["2024-01-01T00:00:00+00:00", "1"])),
    _b64(json.dumps(["yesterday", 1])),
    _b64(json.dumps(["2024-01-01T00:00:00+00:00", 2**70])),
    _b64(json.dumps(["2024-01-01T00:00:00+00:00", True])),
    _b64(json.dumps([1, 1])),
    _b64(json.dumps({"a": 1})),
    _b64("\xff\xfe"),
    "\x00",
    # Offsets that have no UTC datetime (year 1 at +14:00, year 9999 at -14:00).
    _b64(json.dumps(["0001-01-01T00:00:00+14:00", 1])),
    _b64(json.dumps(["9999-12-31T23:59:59-14:00", 1])),
]


async def test_invalid_conversation_cursor(api: MaybeAsync) -> None:
    await api.create_conversation(ALICE)
    for cursor in INVALID_CURSORS:
        with pytest.raises(ValidationError) as err:
            await api.list_conversations(ALICE, cursor=cursor)
        assert err.value.field == "cursor", cursor


async def test_list_conversations_limits(api: MaybeAsync) -> None:
    await api.create_conversation(ALICE)
    page = await api.list_conversations(ALICE, limit=0)
    assert page.data == []
    for bad in (-1, 101, "2", None):
        with pytest.raises(ValidationError) as err:
            await api.list_conversations(ALICE, limit=bad)
        assert err.value.field == "limit"
    assert len((await api.list_conversations(ALICE, limit=100)).data) == 1


# ------------------------------------------------------------------------ timezone


@pytest.fixture
def new_york_tz() -> Iterator[None]:
    """Run the test in a non-UTC process time zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


async def check_timestamps(api: MaybeAsync) -> None:
    before = datetime.now(UTC)
    conv = await api.create_conversation(ALICE, messages=[user("hi")])
    msg = await api.append_message(ALICE, conv.id, assistant("hello"))
    after = datetime.now(UTC)
    stored = await api.get_conversation(ALICE, conv.id)
    [first, second] = await api.get_messages(ALICE, conv.id)
    for moment in (
        conv.created_at,
        stored.created_at,
        stored.updated_at,
        first.created_at,
        second.created_at,
        msg.created_at,
    ):
        assert_aware_utc(moment)
        assert before <= moment <= after
    assert stored.created_at == conv.created_at
    assert stored.updated_at == msg.created_at == second.created_at
    # The keyset cursor survives the time zone too.
    other = await api.create_conversation(ALICE)
    page = await api.list_conversations(ALICE, limit=1)
    assert [c.id for c in page.data] == [other.id]
    rest = await api.list_conversations(ALICE, limit=5, cursor=page.next_cursor)
    assert [c.id for c in rest.data] == [conv.id]


@pytest.mark.usefixtures("new_york_tz")
async def test_timestamps_are_utc_in_a_non_utc_process(api: MaybeAsync) -> None:
    assert time.strftime("%Z") in {"EST", "EDT"}
    await check_timestamps(api)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("new_york_tz")
async def test_timestamps_are_utc_in_a_non_utc_pg_session(db_url: str) -> None:
    tokyo = {"options": "-c timezone=Asia/Tokyo"}
    with Store(db_url, connect_args=tokyo) as s:
        with s.engine.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar_one() == "Asia/Tokyo"
        await check_timestamps(MaybeAsync(s))
        s.delete_user(ALICE)
    async with AsyncStore(db_url, connect_args=tokyo) as a:
        await check_timestamps(MaybeAsync(a))


# ------------------------------------------------------------------ shared engines


async def test_store_uses_a_host_engine_and_leaves_it_open(db_url: str) -> None:
    engine = create_engine(normalize_url(db_url))
    try:
        with Store(engine) as s:
            assert s.engine is engine
            conv = s.create_conversation(ALICE, messages=[user("x")])
            pool = engine.pool
        assert engine.pool is pool  # not disposed
        assert isinstance(pool, QueuePool) and pool.checkedin() >= 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 1
        # The host engine got the store's set-up too (SQLite foreign keys: cascades work).
        with Store(engine) as s:
            s.delete_conversation(ALICE, conv.id)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 0
    finally:
        engine.dispose()


async def test_async_store_uses_a_host_engine_and_leaves_it_open(db_url: str) -> None:
    engine = create_async_engine(normalize_url(db_url, is_async=True))
    try:
        async with AsyncStore(engine) as a:
            assert a.engine is engine
            conv = await a.create_conversation(ALICE, messages=[user("x")])
            pool = engine.sync_engine.pool
        assert engine.sync_engine.pool is pool
        assert isinstance(pool, QueuePool) and pool.checkedin() >= 1
        async with AsyncStore(engine) as a:
            await a.delete_conversation(ALICE, conv.id)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 0
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_host_sqlite_engine_with_pooled_connections_gets_foreign_keys(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:  # the host used its engine before handing it over
            conn.execute(text("SELECT 1"))
        with Store(engine) as s:
            conv = s.create_conversation(ALICE, messages=[user("x")])
            s.delete_conversation(ALICE, conv.id)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 0
    finally:
        engine.dispose()


# ------------------------------------------------- SQLite writes begun on the driver


def _connections_made(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[Any]:
    """Every SQLAlchemy ``Connection`` of ``engine`` made from now on (in this test)."""
    from sqlalchemy.engine import Connection

    # SQLAlchemy never clears the flag a listener on the Connection class sets (another
    # test adds and removes one): start from a process where none was ever added.
    monkeypatch.setattr(Connection, "_has_events", False)
    made: list[Any] = []
    original = Connection.__init__

    def counting(self: Connection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.engine.pool is engine.pool:  # the store's engine, or its write options
            made.append(self)

    monkeypatch.setattr(Connection, "__init__", counting)
    return made


def _traced(store: Store) -> list[str]:
    """The statements the store's SQLite connections run from now on (the driver's trace,
    which does not make the engine watched)."""
    from sqlalchemy import event

    sent: list[str] = []

    @event.listens_for(store.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(sent.append)

    store.engine.dispose()  # new connections, traced
    return sent


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_writes_run_in_a_transaction_begun_on_the_driver(
    db_url: str, raw: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where nothing watches the engine, a write is ``BEGIN IMMEDIATE`` ... ``COMMIT`` on a
    bare checkout, with no SQLAlchemy ``Connection``; it is committed when the call
    returns; an operation's Core statement runs inside that transaction."""
    with Store(db_url) as store:
        conv = store.create_conversation(ALICE)
        sent = _traced(store)
        made = _connections_made(monkeypatch, store.engine)
        stored = store.append_message(ALICE, conv.id, user("one"))
        assert made == []
        # The trace repeats a statement at each step of it; "--" lines are the triggers'.
        own = [q.split()[0] for q in sent if not q.startswith("--")]
        kinds = [k for i, k in enumerate(own) if i == 0 or own[i - 1] != k]
        assert kinds == ["BEGIN", "UPDATE", "INSERT", "COMMIT"]
        assert sent[0] == "BEGIN IMMEDIATE"
        assert count(raw, "SELECT count(*) FROM messages WHERE id = :i", i=stored.id) == 1

        keyed = store.append_message(ALICE, conv.id, user("two", key="k"))  # prebuilt lookup
        assert store.append_message(ALICE, conv.id, user("two", key="k")).id == keyed.id
        assert made == []

        sent.clear()
        batch = [user("three", key="k3"), user("four", key="k4")]
        first = store.append_messages(ALICE, conv.id, batch)  # a Core SELECT of the keys
        again = store.append_messages(ALICE, conv.id, batch)
        assert again == first and len(made) == 2 and all(c.closed for c in made)
        assert [q for q in sent if q.split()[0] in ("BEGIN", "COMMIT")] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ] * 2
        assert store.engine.pool.checkedout() == 0
        assert [m.content for m in store.get_messages(ALICE, conv.id)] == [
            "one",
            "two",
            "three",
            "four",
        ]


def test_writes_run_in_the_drivers_own_transaction(
    db_url: str, raw: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Multi-statement writes (a streamed reply's) make no SQLAlchemy ``Connection`` where
    nothing watches the engine's transactions, and each is committed when it returns."""
    with Store(db_url) as store:
        conv = store.create_conversation(ALICE)
        made = _connections_made(monkeypatch, store.engine)
        other = store.create_conversation(ALICE, title="other")
        reply = store.begin_message(ALICE, conv.id)
        assert store.append_delta(ALICE, reply.id, 0, "Hel")
        assert count(raw, "SELECT count(*) FROM message_chunks WHERE message_id = :m", m=reply.id)
        assert store.append_delta(ALICE, reply.id, 1, "lo")
        done = store.finish_message(ALICE, reply.id)
        assert made == []
        assert (done.status, done.content) == ("complete", "Hello")
        assert count(raw, "SELECT count(*) FROM conversations WHERE id = :c", c=other.id) == 1
        assert store.engine.pool.checkedout() == 0


@pytest.mark.parametrize("reset_on_return", ["rollback", None])
def test_a_failed_write_is_rolled_back_before_its_connection_is_returned(
    db_url: str, raw: Engine, monkeypatch: pytest.MonkeyPatch, reset_on_return: str | None
) -> None:
    """An error after a delta's chunk was inserted leaves nothing behind, and the
    connection goes back to the pool out of any transaction, even to a host's pool that
    does not reset connections on return."""
    from convostore import _sql

    engine = make_engine(db_url, pool_reset_on_return=reset_on_return)
    with Store(engine) as store:
        conv = store.create_conversation(ALICE)
        reply = store.begin_message(ALICE, conv.id)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("after the chunk's INSERT")

        with monkeypatch.context() as patch:
            patch.setattr(_sql, "add_chunk_to_content", broken)
            with pytest.raises(RuntimeError):
                store.append_delta(ALICE, reply.id, 0, "lost")
        assert count(raw, "SELECT count(*) FROM message_chunks") == 0
        pooled = store.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            if store.engine.dialect.name == "sqlite":
                assert not driver.in_transaction
            else:
                assert driver.pgconn.transaction_status == 0  # idle
        finally:
            pooled.close()
        assert store.append_delta(ALICE, reply.id, 0, "kept")  # not "stored already"
        assert store.finish_message(ALICE, reply.id).content == "kept"
    engine.dispose()


def test_a_host_watching_transactions_gets_sqlalchemys_connection(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener on the engine's ``commit`` (or ``begin``, ``rollback``) sees every write,
    through SQLAlchemy's own transaction; once removed, writes run on the driver again."""
    from sqlalchemy import event

    with Store(db_url) as store:
        store.create_conversation(ALICE, title="first")  # the engine's first connect
        made = _connections_made(monkeypatch, store.engine)
        for name in ("commit", "begin", "rollback"):
            seen: list[Any] = []

            def listener(conn: Any, seen: list[Any] = seen) -> None:
                seen.append(conn)

            event.listen(store.engine, name, listener)
            store.create_conversation(ALICE, title=name)
            event.remove(store.engine, name, listener)
            assert len(made) == 1 and seen == ([] if name == "rollback" else made)
            made.clear()
            store.create_conversation(ALICE, title="unwatched")
            assert made == []
        assert len(store.list_conversations(ALICE).data) == 7


# ----------------------------------------------------------------- extreme inputs


async def test_out_of_range_ids_are_not_found(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("x")])
    for huge in (2**63, -(2**63) - 1, 2**100):
        with pytest.raises(NotFoundError) as err:
            await api.get_conversation(ALICE, huge)
        assert str(err.value) == f"conversation {huge} not found"
        with pytest.raises(NotFoundError):
            await api.append_message(ALICE, huge, user("x"))
    largest = 2**63 - 1
    with pytest.raises(NotFoundError):
        await api.get_messages(ALICE, largest)
    assert len(await api.get_messages(ALICE, conv.id)) == 1


async def test_out_of_range_positions_are_validation_errors(api: MaybeAsync) -> None:
    conv = await api.create_conversation(ALICE, messages=[user("x")])
    top = 2**31 - 1
    assert (await api.list_messages(ALICE, conv.id, after=top)).data == []
    assert len((await api.list_messages(ALICE, conv.id, before=top)).data) == 1
    assert await api.delete_messages_after(ALICE, conv.id, top) == []
    for kwargs, field in [({"after": top + 1}, "after"), ({"before": 2**64}, "before")]:
        with pytest.raises(ValidationError) as err:
            await api.list_messages(ALICE, conv.id, **kwargs)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        await api.delete_messages_after(ALICE, conv.id, 2**64)
    assert err.value.field == "position"


async def test_batch_size_limit(api: MaybeAsync, raw: Engine) -> None:
    conv = await api.create_conversation(ALICE)
    stored = await api.append_messages(ALICE, conv.id, [user(str(i)) for i in range(1000)])
    assert positions(stored) == list(range(1, 1001))
    assert [m.content for m in stored] == [str(i) for i in range(1000)]
    assert len({m.id for m in stored}) == 1000
    reread = await api.get_messages(ALICE, conv.id)
    assert [(m.id, m.position, m.content) for m in reread] == [
        (m.id, m.position, m.content) for m in stored
    ]
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, [user("x")] * 1001)
    assert err.value.field == "messages"
    with pytest.raises(ValidationError) as err:
        await api.create_conversation(ALICE, messages=[user("x")] * 1001)
    assert err.value.field == "messages"
    assert count(raw, "SELECT count(*) FROM messages") == 1000
    assert count(raw, "SELECT count(*) FROM conversations") == 1


# ------------------------------------------------------------------ hostile input


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels deep: ``{"a": [[...[1]...]]}`` counts the dict too."""
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


async def test_json_nesting_depth_is_limited_before_anything_is_written(
    api: MaybeAsync, raw: Engine
) -> None:
    conv = await api.create_conversation(ALICE, metadata=nested(32))
    assert (await api.get_conversation(ALICE, conv.id)).metadata == nested(32)
    calls = [{"id": "c", "type": "function", "function": {"name": "f"}, "deep": nested(30)}]
    await api.append_message(ALICE, conv.id, {**call("c"), "tool_calls": calls})
    before = (
        count(raw, "SELECT count(*) FROM messages"),
        count(raw, "SELECT count(*) FROM conversations"),
    )
    for depth in (33, 300, 1_200, 50_000):  # deep enough once to overflow a recursive walk
        attempts = [
            ("metadata", api.create_conversation(ALICE, metadata=nested(depth))),
            ("metadata", api.update_conversation(ALICE, conv.id, metadata=nested(depth))),
            ("metadata", api.append_message(ALICE, conv.id, user("x", metadata=nested(depth)))),
            (
                "messages[1].tool_calls",
                api.append_messages(
                    ALICE, conv.id, [user("x"), {**call("c"), "tool_calls": [nested(depth)]}]
                ),
            ),
        ]
        for field, attempt in attempts:
            with pytest.raises(ValidationError) as err:
                await attempt
            assert err.value.field == field and "32 levels" in err.value.rule
    after = (
        count(raw, "SELECT count(*) FROM messages"),
        count(raw, "SELECT count(*) FROM conversations"),
    )
    assert after == before
    # Every read of the user still works.
    assert len((await api.list_conversations(ALICE)).data) == 1
    assert len(await api.get_history(ALICE, conv.id)) == 0  # the call was never answered


async def test_json_size_is_limited(api: MaybeAsync) -> None:
    from convostore.schemas import MAX_JSON_BYTES

    with pytest.raises(ValidationError) as err:
        await api.create_conversation(ALICE, metadata={"blob": "é" * (MAX_JSON_BYTES // 2)})
    assert err.value.field == "metadata" and f"at most {MAX_JSON_BYTES} bytes" in err.value.rule
    ok = await api.create_conversation(ALICE, metadata={"blob": "x" * (MAX_JSON_BYTES - 20)})
    assert ok.metadata is not None


BAD_USER_IDS = [42, None, b"alice", "a\ud800", "al\x00ice", "", " ", "x" * 256]
READ_AND_WRITE_PATHS: list[tuple[str, tuple[Any, ...]]] = [
    ("get_conversation", (1,)),
    ("get_conversation_by_external_id", ("ext",)),
    ("list_conversations", ()),
    ("update_conversation", (1,)),
    ("delete_conversation", (1,)),
    ("list_messages", (1,)),
    ("get_messages", (1,)),
    ("last_messages", (1, 5)),
    ("get_history", (1,)),
    ("pop_message", (1,)),
    ("delete_messages_after", (1, 0)),
    ("append_message", (1, user("x"))),
    ("append_messages", (1, [user("x")])),
    ("create_conversation", ()),
    ("get_or_create_conversation", ("ext",)),
    ("ensure_user", ()),
    ("delete_user", ()),
]


@pytest.mark.parametrize("bad", BAD_USER_IDS, ids=repr)
async def test_a_bad_user_id_is_a_validation_error_on_every_path(
    api: MaybeAsync, raw: Engine, bad: Any
) -> None:
    """Never a raw TypeError/UnicodeEncodeError/ProgrammingError, the same on both databases."""
    conv = await api.create_conversation(ALICE, messages=[user("keep")])
    for name, args in READ_AND_WRITE_PATHS:
        args = tuple(conv.id if a == 1 else a for a in args)
        with pytest.raises(ValidationError) as err:
            await getattr(api, name)(bad, *args)
        assert err.value.field == "user_id", name
    assert count(raw, "SELECT count(*) FROM messages") == 1
    assert count(raw, "SELECT count(*) FROM conversations") == 1


@pytest.mark.parametrize("bad", [None, 5, "text", b"bytes", {"role": "user", "content": "x"}])
async def test_append_messages_needs_a_list(api: MaybeAsync, bad: Any) -> None:
    conv = await api.create_conversation(ALICE)
    with pytest.raises(ValidationError) as err:
        await api.append_messages(ALICE, conv.id, bad)
    assert err.value.field == "messages"


@pytest.mark.parametrize(
    "prompt", ["", "x" * (MAX_SYSTEM_PROMPT_LENGTH + 1), "a\x00b", "\ud800", 5]
)
async def test_a_bad_system_prompt_names_the_field(api: MaybeAsync, prompt: Any) -> None:
    # The same bounds as the REST parameters (both read them from convostore.schemas).
    conv = await api.create_conversation("alice")
    with pytest.raises(ValidationError) as caught:
        await api.get_history("alice", conv.id, system_prompt=prompt)
    assert caught.value.field == "system_prompt"
    assert await api.get_history("alice", conv.id, system_prompt="x" * MAX_SYSTEM_PROMPT_LENGTH)


async def test_a_zero_size_page_points_where_it_was_asked(api: MaybeAsync) -> None:
    """``limit=0`` reads nothing; ``has_more`` is still true, and ``next_cursor`` is the
    position it was asked from, so following it never restarts at the first page."""
    conv = await api.create_conversation(ALICE, messages=[user("x"), user("y")])
    start = await api.list_messages(ALICE, conv.id, limit=0)
    assert (start.data, start.has_more, start.next_cursor) == ([], True, None)
    later = await api.list_messages(ALICE, conv.id, after=1, limit=0)
    assert (later.has_more, later.next_cursor) == (True, "1")
    back = await api.list_messages(ALICE, conv.id, before=2, order="desc", limit=0)
    assert (back.has_more, back.next_cursor) == (True, "2")
    done = await api.list_messages(ALICE, conv.id, after=2, limit=0)
    assert (done.has_more, done.next_cursor) == (False, None)
    await api.create_conversation(ALICE)
    first = await api.list_conversations(ALICE, limit=1)
    zero = await api.list_conversations(ALICE, limit=0, cursor=first.next_cursor)
    assert (zero.data, zero.has_more, zero.next_cursor) == ([], True, first.next_cursor)
    rest = await api.list_conversations(ALICE, limit=1, cursor=zero.next_cursor)
    assert [c.id for c in rest.data] == [conv.id] and rest.has_more is False
