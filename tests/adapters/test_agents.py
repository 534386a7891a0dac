"""ConvostoreSession against the real openai-agents package, on both databases.

The SDK's own objects go in and come out unchanged; an ``Agent`` runs several turns through
``Runner.run`` with an offline ``Model`` whose every input is recorded and compared, both to
the expected literal history and to what the SDK's reference ``SQLiteSession`` produces.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.items import ModelResponse, TResponseOutputItem
from agents.memory import Session, SessionSettings, SQLiteSession
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from convostore import AsyncStore, MissingExtraError, NotFoundError, Store, ValidationError
from convostore.adapters import agents as adapter
from convostore.adapters.agents import ITEM_KEY, ConvostoreSession

ALICE = "alice"
BOB = "bob"


async def new_session(astore: AsyncStore, user_id: str = ALICE, **kw: Any) -> ConvostoreSession:
    conv = await astore.create_conversation(user_id)
    return ConvostoreSession(user_id=user_id, conversation_id=conv.id, store=astore, **kw)


# --------------------------------------------------------------------- a scripted model


class ScriptedModel(Model):
    """An offline model: returns canned outputs in order and records every input it gets."""

    def __init__(self, outputs: list[list[TResponseOutputItem]]) -> None:
        self.outputs = list(outputs)
        self.inputs: list[Any] = []

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        given = args[1] if len(args) > 1 else kwargs["input"]
        self.inputs.append(given if isinstance(given, str) else json.loads(json.dumps(given)))
        return ModelResponse(output=self.outputs.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests only run non-streamed")


@function_tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


def said(n: int, text: str) -> ResponseOutputMessage:
    part = ResponseOutputText(type="output_text", text=text, annotations=[])
    return ResponseOutputMessage(
        id=f"msg_{n}", type="message", role="assistant", status="completed", content=[part]
    )


def calls(*cities: str, first: int = 1) -> list[TResponseOutputItem]:
    return [
        ResponseFunctionToolCall(
            type="function_call",
            call_id=f"call_{i}",
            name="get_weather",
            arguments=json.dumps({"city": city}),
            id=f"fc_{i}",
            status="completed",
        )
        for i, city in enumerate(cities, start=first)
    ]


def script() -> list[list[TResponseOutputItem]]:
    thought = Summary(type="summary_text", text="I need the weather tool")
    return [
        [ResponseReasoningItem(id="rs_1", type="reasoning", summary=[thought]), *calls("Paris")],
        [said(1, "It is sunny in Paris.")],
        [said(2, "You're welcome!")],
        calls("Rome", "Oslo", first=2),
        [said(3, "Both sunny.")],
    ]


TURNS = ["Weather in Paris?", "Thanks!", "And Rome and Oslo?"]

# What the model must receive on each call, literally (expected history, oldest first).
U1 = {"role": "user", "content": "Weather in Paris?"}
RS1 = {
    "id": "rs_1",
    "type": "reasoning",
    "summary": [{"type": "summary_text", "text": "I need the weather tool"}],
}
FC = {
    i: {
        "type": "function_call",
        "call_id": f"call_{i}",
        "name": "get_weather",
        "arguments": json.dumps({"city": city}),
        "id": f"fc_{i}",
        "status": "completed",
    }
    for i, city in [(1, "Paris"), (2, "Rome"), (3, "Oslo")]
}
OUT = {
    i: {"type": "function_call_output", "call_id": f"call_{i}", "output": f"Sunny in {city}"}
    for i, city in [(1, "Paris"), (2, "Rome"), (3, "Oslo")]
}


def msg(n: int, text: str) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


U2 = {"role": "user", "content": "Thanks!"}
U3 = {"role": "user", "content": "And Rome and Oslo?"}
TURN1 = [U1, RS1, FC[1], OUT[1], msg(1, "It is sunny in Paris.")]
TURN2 = [U2, msg(2, "You're welcome!")]
TURN3 = [U3, FC[2], FC[3], OUT[2], OUT[3], msg(3, "Both sunny.")]
EXPECTED_INPUTS = [
    [U1],
    [U1, RS1, FC[1], OUT[1]],
    [*TURN1, U2],
    [*TURN1, *TURN2, U3],
    [*TURN1, *TURN2, U3, FC[2], FC[3], OUT[2], OUT[3]],
]


async def run_script(make_session: Any) -> tuple[ScriptedModel, list[str]]:
    """Three user turns, each with a fresh session object (a stateless endpoint)."""
    model = ScriptedModel(script())
    agent = Agent(name="weather", instructions="Be brief.", model=model, tools=[get_weather])
    answers = []
    for text in TURNS:
        result = await Runner.run(
            agent, text, session=make_session(), run_config=RunConfig(tracing_disabled=True)
        )
        answers.append(str(result.final_output))
    return model, answers


async def test_agent_runs_several_turns_with_the_session(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE, title="Weather")

    def make() -> ConvostoreSession:
        return ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)

    model, answers = await run_script(make)

    assert answers == ["It is sunny in Paris.", "You're welcome!", "Both sunny."]
    assert model.inputs == EXPECTED_INPUTS
    assert await make().get_items() == [*TURN1, *TURN2, *TURN3]


async def test_model_inputs_match_the_sdk_reference_session(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE)
    reference = SQLiteSession("reference")
    ours, _ = await run_script(
        lambda: ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)
    )
    theirs, _ = await run_script(lambda: reference)
    mine = ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)
    assert ours.inputs == theirs.inputs
    assert await mine.get_items() == await reference.get_items()
    assert await mine.get_items(limit=3) == await reference.get_items(limit=3)
    reference.close()


async def test_agent_rows_read_as_chat_messages(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE)
    await run_script(
        lambda: ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)
    )
    rows = await astore.get_messages(ALICE, conv.id)
    shown = [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in rows]

    def call(i: int, city: str) -> list[dict[str, Any]]:
        function = {"name": "get_weather", "arguments": json.dumps({"city": city})}
        return [{"id": f"call_{i}", "type": "function", "function": function}]

    assert shown == [
        ("user", "Weather in Paris?", None, None),
        ("assistant", "[reasoning] I need the weather tool", None, None),
        ("assistant", "", call(1, "Paris"), None),
        ("tool", "Sunny in Paris", None, "call_1"),
        ("assistant", "It is sunny in Paris.", None, None),
        ("user", "Thanks!", None, None),
        ("assistant", "You're welcome!", None, None),
        ("user", "And Rome and Oslo?", None, None),
        ("assistant", "", call(2, "Rome"), None),
        ("assistant", "", call(3, "Oslo"), None),
        ("tool", "Sunny in Rome", None, "call_2"),
        ("tool", "Sunny in Oslo", None, "call_3"),
        ("assistant", "Both sunny.", None, None),
    ]
    assert [m.metadata for m in rows] == [{ITEM_KEY: item} for item in [*TURN1, *TURN2, *TURN3]]
    # The model-ready history of the first two turns, in OpenAI chat format.
    history = await astore.get_history(ALICE, conv.id)
    assert history[:7] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "[reasoning] I need the weather tool"},
        {"role": "assistant", "content": None, "tool_calls": call(1, "Paris")},
        {"role": "tool", "content": "Sunny in Paris", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is sunny in Paris."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You're welcome!"},
    ]
    assert answered_in_place(history[:7])


def answered_in_place(history: list[dict[str, Any]]) -> bool:
    """OpenAI's rule: an assistant ``tool_calls`` message is followed by all its results."""
    for i, message in enumerate(history):
        if message["role"] == "assistant" and message.get("tool_calls"):
            wanted = {c["id"] for c in message["tool_calls"]}
            following = []
            for later in history[i + 1 :]:
                if later["role"] != "tool":
                    break
                following.append(later["tool_call_id"])
            if not wanted <= set(following):
                return False
    return True


async def test_history_keeps_parallel_calls_stored_one_per_row(astore: AsyncStore) -> None:
    conv = await astore.create_conversation(ALICE)
    await run_script(
        lambda: ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)
    )
    history = await astore.get_history(ALICE, conv.id)
    results = [m["tool_call_id"] for m in history if m["role"] == "tool"]
    assert results == ["call_1", "call_2", "call_3"]
    assert answered_in_place(history)


# ------------------------------------------------------------- item round trips, exactly

ITEMS: list[dict[str, Any]] = [
    {"role": "user", "content": 'Hi \u00e9\u4f60\U0001f600 "quoted" \\ back'},
    {"role": "system", "content": "Be kind."},
    {"role": "developer", "content": "Use tools."},
    {"type": "message", "role": "user", "content": "typed easy message"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
        ],
    },
    {"role": "user", "content": [{"type": "input_image", "file_id": "file_1", "detail": "low"}]},
    {"role": "user", "content": ""},
    msg(7, "Hello!"),
    {
        "id": "msg_8",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    },
    {
        "id": "msg_9",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": "See [1].",
                "annotations": [
                    {
                        "type": "url_citation",
                        "start_index": 4,
                        "end_index": 7,
                        "url": "https://x.y",
                        "title": "X",
                    }
                ],
                "logprobs": [
                    {"token": "See", "logprob": -0.125, "bytes": [83, 101, 101], "top_logprobs": []}
                ],
            }
        ],
    },
    {"type": "function_call", "call_id": "call_a", "name": "lookup", "arguments": '{"q": 1.5}'},
    {"type": "function_call_output", "call_id": "call_a", "output": '{"answer": 42}'},
    {
        "type": "function_call_output",
        "call_id": "call_b",
        "output": [
            {"type": "input_text", "text": "multi"},
            {"type": "input_image", "file_id": "f"},
        ],
    },
    {"type": "function_call_output", "call_id": "call_c", "output": ""},
    {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "gAAAAB" + "x" * 500},
    {
        "type": "reasoning",
        "id": "rs_10",
        "summary": [{"type": "summary_text", "text": "step " * 100}],
        "content": [{"type": "reasoning_text", "text": "raw"}],
    },
    {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "weather"},
    },
    {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "files",
        "name": "read",
        "arguments": "{}",
        "output": None,
        "error": None,
    },
    {"type": "custom_tool_call", "call_id": "call_d", "name": "grammar", "input": "x = 1"},
    {"type": "custom_tool_call_output", "call_id": "call_d", "output": "ok"},
    {"type": "item_reference", "id": "msg_123"},
    {"type": "future_item_kind", "payload": {"nested": [1, 2.5, True, None, {"k": "v"}]}},
]

EXPECTED_ROWS: list[tuple[str, str, Any, Any]] = [
    ("user", ITEMS[0]["content"], None, None),
    ("system", "Be kind.", None, None),
    ("system", "Use tools.", None, None),
    ("user", "typed easy message", None, None),
    ("user", "What is this?\n[image]", None, None),
    ("user", "[image]", None, None),
    ("user", "[empty message]", None, None),
    ("assistant", "Hello!", None, None),
    ("assistant", "I can't help with that.", None, None),
    ("assistant", "See [1].", None, None),
    (
        "assistant",
        "",
        [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": 1.5}'},
            }
        ],
        None,
    ),
    ("tool", '{"answer": 42}', None, "call_a"),
    ("tool", "multi\n[image]", None, "call_b"),
    ("tool", "[empty output]", None, "call_c"),
    ("assistant", "[reasoning]", None, None),
    ("assistant", "[reasoning] " + ("step " * 40)[:199].rstrip() + "\u2026", None, None),
    ("assistant", "[web_search_call]", None, None),
    ("assistant", "[mcp_call: read]", None, None),
    (
        "assistant",
        "",
        [{"id": "call_d", "type": "custom", "custom": {"name": "grammar", "input": "x = 1"}}],
        None,
    ),
    ("tool", "ok", None, "call_d"),
    ("assistant", "[item_reference]", None, None),
    ("assistant", "[future_item_kind]", None, None),
]


async def test_every_kind_of_item_round_trips_exactly(astore: AsyncStore) -> None:
    session = await new_session(astore)
    given = copy.deepcopy(ITEMS)
    await session.add_items(given)  # type: ignore[arg-type]
    assert given == ITEMS  # not mutated
    fresh = ConvostoreSession(user_id=ALICE, conversation_id=session.conversation_id, store=astore)
    assert await fresh.get_items() == ITEMS
    rows = await astore.get_messages(ALICE, session.conversation_id or 0)
    assert [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in rows] == EXPECTED_ROWS


async def test_limit_returns_the_latest_items_oldest_first(
    astore: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await new_session(astore)
    await session.add_items(copy.deepcopy(ITEMS))  # type: ignore[arg-type]
    assert await session.get_items(limit=3) == ITEMS[-3:]
    assert await session.get_items(limit=1) == ITEMS[-1:]
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=len(ITEMS) + 50) == ITEMS
    # Pages smaller than the limit: the latest N are gathered across several reads.
    monkeypatch.setattr(adapter, "MAX_MESSAGE_PAGE", 2)
    assert await session.get_items(limit=7) == ITEMS[-7:]
    # session_settings.limit is the default; an explicit limit wins.
    limited = ConvostoreSession(
        user_id=ALICE,
        conversation_id=session.conversation_id,
        store=astore,
        session_settings=SessionSettings(limit=2),
    )
    assert await limited.get_items() == ITEMS[-2:]
    assert await limited.get_items(limit=4) == ITEMS[-4:]
    as_dict = ConvostoreSession(
        user_id=ALICE,
        conversation_id=session.conversation_id,
        store=astore,
        session_settings={"limit": 5},
    )
    assert await as_dict.get_items() == ITEMS[-5:]


async def test_pop_item_and_clear_session(astore: AsyncStore) -> None:
    session = await new_session(astore)
    assert await session.pop_item() is None
    await session.add_items(copy.deepcopy(ITEMS[:4]))  # type: ignore[arg-type]
    assert await session.pop_item() == ITEMS[3]
    assert await session.pop_item() == ITEMS[2]
    assert await session.get_items() == ITEMS[:2]
    await session.add_items([ITEMS[10]])  # type: ignore[list-item]
    assert await session.get_items() == [*ITEMS[:2], ITEMS[10]]
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    conv = await astore.get_conversation(ALICE, session.conversation_id or 0)
    assert conv.message_count == 0  # the conversation itself stays
    await session.add_items([ITEMS[0]])  # type: ignore[list-item]
    assert await session.get_items() == [ITEMS[0]]


async def test_empty_add_is_a_no_op(astore: AsyncStore) -> None:
    session = await new_session(astore)
    await session.add_items([])
    assert await session.get_items() == []


async def test_implements_the_sdk_session_protocol(astore: AsyncStore) -> None:
    session: Session = await new_session(astore)
    assert isinstance(session, Session)
    assert session.session_id == str(session.conversation_id)  # type: ignore[attr-defined]
    assert session.session_settings == SessionSettings()


# ------------------------------------------------------------------ external session ids


async def test_external_session_id_creates_then_finds_its_conversation(
    astore: AsyncStore,
) -> None:
    first = ConvostoreSession("chat-7", user_id=ALICE, store=astore, title="Support")
    assert await first.get_items() == []
    assert first.conversation_id is None
    assert (await astore.list_conversations(ALICE)).data == []  # reads create nothing
    await first.add_items([ITEMS[0], ITEMS[7]])  # type: ignore[list-item]
    conv = await astore.get_conversation(ALICE, first.conversation_id or 0)
    assert conv.external_id == "chat-7"
    assert conv.title == "Support"
    assert conv.message_count == 2

    # Unrelated conversations (and other users' sessions of the same id) are not picked.
    await astore.create_conversation(ALICE, external_id="chat-8")
    bob = ConvostoreSession("chat-7", user_id=BOB, store=astore)
    assert await bob.get_items() == []
    await bob.add_items([ITEMS[1]])  # type: ignore[list-item]
    assert bob.conversation_id != first.conversation_id

    again = ConvostoreSession("chat-7", user_id=ALICE, store=astore)
    assert await again.get_items() == [ITEMS[0], ITEMS[7]]
    assert again.conversation_id == first.conversation_id
    assert await ConvostoreSession("chat-7", user_id=BOB, store=astore).get_items() == [ITEMS[1]]


async def test_external_session_without_create_does_not_create(astore: AsyncStore) -> None:
    session = ConvostoreSession("nope", user_id=ALICE, store=astore, create=False)
    assert await session.get_items() == []
    assert await session.pop_item() is None
    await session.clear_session()
    with pytest.raises(NotFoundError):
        await session.add_items([ITEMS[0]])  # type: ignore[list-item]
    assert (await astore.list_conversations(ALICE)).data == []


async def test_external_session_is_found_among_many_conversations(astore: AsyncStore) -> None:
    target = await astore.create_conversation(ALICE, external_id="old")
    await astore.append_message(ALICE, target.id, {"role": "user", "content": "from before"})
    for _ in range(105):  # more than one page of conversations, all newer
        await astore.create_conversation(ALICE)
    session = ConvostoreSession("old", user_id=ALICE, store=astore)
    assert await session.get_items() == [{"role": "user", "content": "from before"}]
    assert session.conversation_id == target.id


# ------------------------------------------------------- rows written by other interfaces


async def test_messages_from_other_interfaces_read_as_items(astore: AsyncStore) -> None:
    session = await new_session(astore)
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    call2 = {"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}}
    await astore.append_messages(
        ALICE,
        session.conversation_id or 0,
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call, call2]},
            {"role": "tool", "content": "r1", "tool_call_id": "c1"},
            {"role": "tool", "content": "r2", "tool_call_id": "c2"},
            {"role": "assistant", "content": "done", "metadata": {"other": True}},
        ],
    )
    await session.add_items([msg(1, "mine")])  # type: ignore[list-item]
    expected = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me check."},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "r1"},
        {"type": "function_call_output", "call_id": "c2", "output": "r2"},
        {"role": "assistant", "content": "done"},
        msg(1, "mine"),
    ]
    assert await session.get_items() == expected
    assert await session.get_items(limit=6) == expected[-6:]  # counts items, not rows
    assert await session.pop_item() == msg(1, "mine")


async def test_agent_continues_a_conversation_started_elsewhere(store_pair: Any) -> None:
    sync_store, astore = store_pair
    conv = sync_store.create_conversation(ALICE)
    sync_store.append_messages(
        ALICE,
        conv.id,
        [
            {"role": "user", "content": "My name is Ann."},
            {"role": "assistant", "content": "Hi Ann!"},
        ],
    )
    model = ScriptedModel([[said(1, "Ann.")]])
    agent = Agent(name="a", model=model)
    session = ConvostoreSession(user_id=ALICE, conversation_id=conv.id, store=astore)
    await Runner.run(
        agent, "Who am I?", session=session, run_config=RunConfig(tracing_disabled=True)
    )
    assert model.inputs == [
        [
            {"role": "user", "content": "My name is Ann."},
            {"role": "assistant", "content": "Hi Ann!"},
            {"role": "user", "content": "Who am I?"},
        ]
    ]
    assert [m.content for m in sync_store.get_messages(ALICE, conv.id)] == [
        "My name is Ann.",
        "Hi Ann!",
        "Who am I?",
        "Ann.",
    ]


@pytest.fixture
async def store_pair(db_url: str) -> AsyncIterator[tuple[Store, AsyncStore]]:
    with Store(db_url) as sync_store:
        async with AsyncStore(db_url) as astore:
            yield sync_store, astore


# ----------------------------------------------------------------------- bad input


async def test_bad_items_are_refused_and_nothing_is_written(astore: AsyncStore) -> None:
    session = await new_session(astore)
    await session.add_items([ITEMS[0]])  # type: ignore[list-item]
    bad: list[tuple[Any, str]] = [
        ([ITEMS[1], "just a string"], "items[1]"),
        ([ITEMS[1], {"role": "user", "content": "nul \x00 inside"}], "messages[1].content"),
        ([{"role": "user", "content": "x", "extra": "\x00"}], "messages[0].metadata"),
        ([{"role": "user", "content": "x", "blob": b"bytes"}], "messages[0].metadata"),
        ([{"role": "user", "content": "x" * 10_001}], "messages[0].content"),
        ({"role": "user", "content": "a dict, not a list"}, "items"),
    ]
    for items, field in bad:
        with pytest.raises(ValidationError) as err:
            await session.add_items(items)
        assert err.value.field == field
    assert await session.get_items() == [ITEMS[0]]


async def test_concurrent_first_writes_share_one_conversation(astore: AsyncStore) -> None:
    sessions = [ConvostoreSession("race", user_id=ALICE, store=astore) for _ in range(8)]
    batches: list[list[Any]] = [[{"role": "user", "content": f"m{i}"}] for i in range(8)]
    await asyncio.gather(*(s.add_items(b) for s, b in zip(sessions, batches, strict=True)))
    assert len({s.conversation_id for s in sessions}) == 1
    assert len((await astore.list_conversations(ALICE)).data) == 1
    items: list[Any] = await ConvostoreSession("race", user_id=ALICE, store=astore).get_items()
    assert sorted(item["content"] for item in items) == [f"m{i}" for i in range(8)]


async def test_first_write_of_an_external_session_is_atomic(astore: AsyncStore) -> None:
    session = ConvostoreSession("s", user_id=ALICE, store=astore)
    with pytest.raises(ValidationError):
        await session.add_items([ITEMS[0], {"role": "user", "content": "\x00"}])  # type: ignore[list-item]
    assert (await astore.list_conversations(ALICE)).data == []
    assert session.conversation_id is None


async def test_bad_arguments(astore: AsyncStore) -> None:
    session = await new_session(astore)
    with pytest.raises(ValidationError, match="limit"):
        await session.get_items(limit=-1)
    bad_kwargs: list[tuple[dict[str, Any], str]] = [
        ({}, "session_id"),
        ({"session_id": "s", "conversation_id": 1}, "session_id"),
        ({"session_id": "  "}, "session_id"),
        ({"session_id": "x" * 256}, "session_id"),
        ({"conversation_id": "1"}, "conversation_id"),
        ({"conversation_id": True}, "conversation_id"),
        ({"conversation_id": 1, "user_id": ""}, "user_id"),
        ({"conversation_id": 1, "store": object()}, "store"),
        ({"conversation_id": 1, "session_settings": {"limit": "many"}}, "session_settings"),
        ({"conversation_id": 1, "session_settings": 5}, "session_settings"),
    ]
    for kwargs, field in bad_kwargs:
        kwargs = {"user_id": ALICE, "store": astore, **kwargs}
        with pytest.raises(ValidationError) as err:
            ConvostoreSession(**kwargs)
        assert err.value.field == field


async def test_a_misspelt_session_setting_is_refused_as_the_sdk_refuses_it(
    astore: AsyncStore,
) -> None:
    """The SDK's sessions raise ``TypeError: Unknown session settings``; so does ours (as a
    ValidationError too), instead of silently sending the whole history."""
    with pytest.raises(TypeError, match="Unknown session settings: limitt") as err:
        ConvostoreSession(
            user_id=ALICE, conversation_id=1, store=astore, session_settings={"limitt": 20}
        )
    assert isinstance(err.value, ValidationError) and err.value.field == "session_settings"


async def test_another_users_conversation_is_not_found(astore: AsyncStore) -> None:
    mine = await new_session(astore)
    await mine.add_items([ITEMS[0]])  # type: ignore[list-item]
    thief = ConvostoreSession(user_id=BOB, conversation_id=mine.conversation_id, store=astore)
    for call in (thief.get_items, thief.pop_item, thief.clear_session):
        with pytest.raises(NotFoundError):
            await call()
    with pytest.raises(NotFoundError):
        await thief.add_items([ITEMS[1]])  # type: ignore[list-item]
    assert await mine.get_items() == [ITEMS[0]]


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "agents" or m.startswith("agents.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "convostore.adapters.agents")
    with pytest.raises(MissingExtraError) as err:
        importlib.import_module("convostore.adapters.agents")
    assert err.value.extra == "agents"
    assert "pip install 'convostore[agents]'" in str(err.value)


def test_adapters_package_is_lazy() -> None:
    import convostore.adapters as adapters

    assert adapters.ConvostoreSession is ConvostoreSession
    with pytest.raises(AttributeError):
        _ = adapters.Nope
