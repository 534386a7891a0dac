"""ConvostoreChatMessageHistory against the real langchain-core, on both databases.

LangChain's own message objects go in and the very same objects come out (sync and async),
while the rows read as OpenAI chat messages through the normal store API.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from convostore import (
    AsyncStore,
    ConfigurationError,
    MissingExtraError,
    NotFoundError,
    Store,
    ValidationError,
)
from convostore.adapters.langchain import MESSAGE_KEY, ConvostoreChatMessageHistory

ALICE = "alice"
BOB = "bob"


@pytest.fixture
def pair(db_url: str) -> Iterator[tuple[Store, AsyncStore]]:
    with Store(db_url) as store:
        yield store, AsyncStore(db_url)


@pytest.fixture
async def stores(pair: tuple[Store, AsyncStore]) -> AsyncIterator[tuple[Store, AsyncStore]]:
    yield pair
    await pair[1].aclose()


def history(
    store: Store | None, astore: AsyncStore | None, conversation_id: int, user_id: str = ALICE
) -> ConvostoreChatMessageHistory:
    return ConvostoreChatMessageHistory(
        user_id=user_id, conversation_id=conversation_id, store=store, astore=astore
    )


CALLS = [
    {"name": "get_weather", "args": {"city": "Paris", "units": "C"}, "id": "call_1"},
    {"name": "lookup", "args": {"q": [1, 2.5, None, True]}, "id": "call_2"},
]


def messages() -> list[BaseMessage]:
    """One of each kind, with the fields that other stores are known to lose."""
    return [
        SystemMessage("You are helpful.", id="s1"),
        HumanMessage(
            "Weather in Paris? \u00e9\u4f60\U0001f600",
            id="h1",
            name="ann",
            additional_kwargs={"client": {"ip": None}},
        ),
        AIMessage(
            "",
            id="run-1",
            tool_calls=CALLS,
            additional_kwargs={"refusal": None},
            response_metadata={"model_name": "gpt-x", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        ),
        ToolMessage(
            "18 degrees", tool_call_id="call_1", name="get_weather", artifact={"raw": [18, 0.5]}
        ),
        ToolMessage("lookup failed", tool_call_id="call_2", status="error"),
        AIMessage(
            [
                {"type": "text", "text": "It is 18 degrees."},
                {"type": "reasoning", "reasoning": "."},
            ],
            id="run-2",
            response_metadata={"finish_reason": "stop"},
        ),
        HumanMessage(
            [
                {"type": "text", "text": "And this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},
            ]
        ),
        AIMessage("", invalid_tool_calls=[{"name": "f", "args": "{bad", "id": "c9", "error": "x"}]),
        ToolMessage("", tool_call_id="call_3"),
        ChatMessage(role="developer", content="Prefer metric."),
        ChatMessage(role="critic", content="Too long."),
        FunctionMessage(name="legacy", content="result"),
        AIMessageChunk(content="streamed", id="run-3"),
    ]


OPENAI_CALLS = [
    {
        "type": "function",
        "id": "call_1",
        "function": {
            "name": "get_weather",
            "arguments": json.dumps({"city": "Paris", "units": "C"}),
        },
    },
    {
        "type": "function",
        "id": "call_2",
        "function": {"name": "lookup", "arguments": json.dumps({"q": [1, 2.5, None, True]})},
    },
]

EXPECTED_ROWS: list[tuple[str, str, Any, Any]] = [
    ("system", "You are helpful.", None, None),
    ("user", "Weather in Paris? \u00e9\u4f60\U0001f600", None, None),
    ("assistant", "", OPENAI_CALLS, None),
    ("tool", "18 degrees", None, "call_1"),
    ("tool", "lookup failed", None, "call_2"),
    ("assistant", "It is 18 degrees.", None, None),
    ("user", "And this picture?\n[image]", None, None),
    ("assistant", "[empty message]", None, None),
    ("tool", "[empty output]", None, "call_3"),
    ("system", "Prefer metric.", None, None),
    ("assistant", "[critic] Too long.", None, None),
    ("assistant", "[function] result", None, None),
    ("assistant", "streamed", None, None),
]


def test_sync_round_trip_is_exact(stores: tuple[Store, AsyncStore]) -> None:
    store, _ = stores
    conv = store.create_conversation(ALICE)
    h = history(store, None, conv.id)
    given = messages()
    h.add_messages(given)
    got = history(store, None, conv.id).messages
    assert got == messages()
    assert [type(m) for m in got] == [type(m) for m in given]
    assert got[2].tool_calls == [{**c, "type": "tool_call"} for c in CALLS]  # type: ignore[attr-defined]
    assert got[3].artifact == {"raw": [18, 0.5]}  # type: ignore[attr-defined]
    assert got[4].status == "error"  # type: ignore[attr-defined]
    assert got[2].usage_metadata == given[2].usage_metadata  # type: ignore[attr-defined]


def test_rows_read_as_openai_chat_messages(stores: tuple[Store, AsyncStore]) -> None:
    store, _ = stores
    conv = store.create_conversation(ALICE)
    history(store, None, conv.id).add_messages(messages())
    rows = store.get_messages(ALICE, conv.id)
    assert [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in rows] == EXPECTED_ROWS
    assert all(set((m.metadata or {}).keys()) == {MESSAGE_KEY} for m in rows)
    chat = store.get_history(ALICE, conv.id)
    assert chat[2:5] == [
        {"role": "assistant", "content": None, "tool_calls": OPENAI_CALLS},
        {"role": "tool", "content": "18 degrees", "tool_call_id": "call_1"},
        {"role": "tool", "content": "lookup failed", "tool_call_id": "call_2"},
    ]


async def test_async_round_trip_is_exact(stores: tuple[Store, AsyncStore]) -> None:
    store, astore = stores
    conv = await astore.create_conversation(ALICE)
    h = history(None, astore, conv.id)
    await h.aadd_messages(messages()[:4])
    await h.aadd_messages(messages()[4:])
    assert await h.aget_messages() == messages()
    # A sync-only history sees the same rows, and its async methods fall back to a thread.
    sync_only = history(store, None, conv.id)
    assert sync_only.messages == messages()
    assert await sync_only.aget_messages() == messages()
    await sync_only.aadd_messages([HumanMessage("more")])
    assert (await h.aget_messages())[-1] == HumanMessage("more")
    await sync_only.aclear()
    assert await h.aget_messages() == []


async def test_clear_keeps_the_conversation(stores: tuple[Store, AsyncStore]) -> None:
    store, astore = stores
    conv = store.create_conversation(ALICE, title="Keep me")
    both = history(store, astore, conv.id)
    both.add_messages(messages())
    both.clear()
    assert both.messages == []
    await both.aadd_messages([HumanMessage("again")])
    await both.aclear()
    assert await both.aget_messages() == []
    kept = store.get_conversation(ALICE, conv.id)
    assert (kept.title, kept.message_count) == ("Keep me", 0)
    both.add_message(HumanMessage("after clear"))
    assert both.messages == [HumanMessage("after clear")]


def test_rows_written_elsewhere_read_as_langchain_messages(
    stores: tuple[Store, AsyncStore],
) -> None:
    store, _ = stores
    conv = store.create_conversation(ALICE)
    store.append_messages(
        ALICE,
        conv.id,
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": OPENAI_CALLS[:1]},
            {"role": "tool", "content": "18", "tool_call_id": "call_1"},
            {"role": "assistant", "content": "done"},
        ],
    )
    assert history(store, None, conv.id).messages == [
        SystemMessage("sys"),
        HumanMessage("hi"),
        AIMessage(
            "",
            tool_calls=[
                {
                    "name": "get_weather",
                    "args": {"city": "Paris", "units": "C"},
                    "id": "call_1",
                    "type": "tool_call",
                }
            ],
        ),
        ToolMessage("18", tool_call_id="call_1"),
        AIMessage("done"),
    ]


def test_a_chat_model_turn_round_trips(stores: tuple[Store, AsyncStore]) -> None:
    """What a real chat loop stores (the model's own AIMessage, with its run id) comes back."""
    store, _ = stores
    conv = store.create_conversation(ALICE)
    h = history(store, None, conv.id)
    reply = AIMessage("", tool_calls=CALLS[:1])
    model = GenericFakeChatModel(messages=iter([reply, AIMessage("It is 18 degrees.")]))
    question = HumanMessage("Weather in Paris?")
    first = model.invoke([*h.messages, question])
    h.add_messages([question, first, ToolMessage("18", tool_call_id="call_1")])
    second = model.invoke(h.messages)
    h.add_messages([second])
    assert h.messages == [question, first, ToolMessage("18", tool_call_id="call_1"), second]
    assert first.id is not None and h.messages[1].id == first.id


def test_is_a_base_chat_message_history(stores: tuple[Store, AsyncStore]) -> None:
    store, _ = stores
    conv = store.create_conversation(ALICE)
    h = history(store, None, conv.id)
    assert isinstance(h, BaseChatMessageHistory)
    h.add_user_message("hi")
    h.add_ai_message("hello")
    assert h.messages == [HumanMessage("hi"), AIMessage("hello")]
    assert str(h) == "Human: hi\nAI: hello"


# ----------------------------------------------------------------------- bad input


async def test_bad_messages_are_refused_and_nothing_is_written(
    stores: tuple[Store, AsyncStore],
) -> None:
    store, astore = stores
    conv = store.create_conversation(ALICE)
    h = history(store, astore, conv.id)
    h.add_messages([HumanMessage("kept")])
    bad: list[tuple[Any, str]] = [
        ([HumanMessage("ok"), {"role": "user", "content": "dict"}], "messages[1]"),
        ([HumanMessage("ok"), "a string"], "messages[1]"),
        ([HumanMessage("nul \x00")], "messages[0].content"),
        ([ToolMessage("x", tool_call_id="c", artifact=object())], "messages[0].metadata"),
        ([HumanMessage("x" * 10_001)], "messages[0].content"),
        (HumanMessage("not in a list"), "messages"),
    ]
    for value, field in bad:
        with pytest.raises(ValidationError) as err:
            h.add_messages(value)
        assert err.value.field == field
        with pytest.raises(ValidationError) as aerr:
            await h.aadd_messages(value)
        assert aerr.value.field == field
    assert h.messages == [HumanMessage("kept")]


async def test_another_users_conversation_is_not_found(stores: tuple[Store, AsyncStore]) -> None:
    store, astore = stores
    conv = store.create_conversation(ALICE)
    history(store, None, conv.id).add_messages([HumanMessage("private")])
    thief = history(store, astore, conv.id, user_id=BOB)
    for call in (lambda: thief.messages, thief.clear, lambda: thief.add_messages([])):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(NotFoundError):
        await thief.aget_messages()
    with pytest.raises(NotFoundError):
        await thief.aclear()
    assert history(store, None, conv.id).messages == [HumanMessage("private")]


async def test_bad_arguments(stores: tuple[Store, AsyncStore]) -> None:
    store, astore = stores
    async_only = history(None, astore, 1)
    with pytest.raises(ConfigurationError, match="store=Store"):
        _ = async_only.messages
    with pytest.raises(ConfigurationError):
        async_only.add_messages([HumanMessage("x")])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"store": None, "astore": None}, "store"),
        ({"store": astore}, "store"),
        ({"astore": store}, "astore"),
        ({"conversation_id": "1"}, "conversation_id"),
        ({"conversation_id": True}, "conversation_id"),
        ({"user_id": " "}, "user_id"),
    ]
    for overrides, field in cases:
        kwargs: dict[str, Any] = {
            "user_id": ALICE,
            "conversation_id": 1,
            "store": store,
            "astore": None,
            **overrides,
        }
        with pytest.raises(ValidationError) as err:
            ConvostoreChatMessageHistory(**kwargs)
        assert err.value.field == field


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = [m for m in sys.modules if m == "langchain_core" or m.startswith("langchain_core.")]
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "convostore.adapters.langchain")
    with pytest.raises(MissingExtraError) as err:
        importlib.import_module("convostore.adapters.langchain")
    assert err.value.extra == "langchain"
    assert "pip install 'convostore[langchain]'" in str(err.value)
