"""The Agents SDK's ``OpenAIConversationsSession`` against a real ``convostore serve``.

The SDK's own session, unchanged, with ``AsyncOpenAI(base_url=<server>/v1, api_key=token)``:
its methods, a three-turn ``Runner.run`` with the scripted offline model of the adapter
tests, and the SDK's own tests of that session (``tests/memory/
test_openai_conversations_session.py`` of openai-agents-python, commit 7f7a44f) that
mean something against a server, adapted from mocks to the real client (``TestSdk*``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, TResponseInputItem
from agents.memory import OpenAIConversationsSession, SessionSettings
from openai import AsyncOpenAI

from tests.adapters.test_agents import TURN1, TURN2, TURN3, run_script
from tests.server.conftest import token

Item = dict[str, Any]


@pytest.fixture
async def client(served: str) -> AsyncIterator[AsyncOpenAI]:
    user = f"u-{uuid.uuid4().hex[:12]}"
    async with AsyncOpenAI(base_url=served, api_key=token(user), max_retries=0) as c:
        yield c


def canonical(item: Any) -> Item:
    """An item without its id, a message in the full form: what the server keeps of it
    (it answers with its own ids, and with messages' full form, as OpenAI does)."""
    out = {k: v for k, v in dict(item).items() if k != "id"}
    if out.get("type") in (None, "message") and isinstance(out.get("content"), str):
        kind = "output_text" if out["role"] == "assistant" else "input_text"
        part: Item = {"type": kind, "text": out["content"]}
        if kind == "output_text":
            part["annotations"] = []
        out = {"type": "message", **out, "content": [part]}
    return out


def canonical_all(items: list[Any]) -> list[Item]:
    return [canonical(i) for i in items]


def user_says(text: str) -> TResponseInputItem:
    return {"role": "user", "content": text}


# ------------------------------------------------------------------------ the methods


async def test_session_methods(client: AsyncOpenAI) -> None:
    session = OpenAIConversationsSession(openai_client=client)
    assert await session.get_items() == []  # creates the conversation
    conv_id = session.session_id
    assert conv_id.startswith("conv_")
    items = [user_says(f"q{i}") for i in range(25)]  # more than one request of 20
    await session.add_items(items)
    got = await session.get_items()
    assert canonical_all(got) == canonical_all(items)
    assert all(i["id"].startswith("msg_") for i in got)  # type: ignore[typeddict-item]
    latest = await session.get_items(limit=3)
    assert latest == got[-3:]
    limited = OpenAIConversationsSession(
        conversation_id=conv_id, openai_client=client, session_settings=SessionSettings(limit=2)
    )
    assert await limited.get_items() == got[-2:]

    popped = await session.pop_item()
    assert popped == got[-1]
    assert await session.get_items() == got[:-1]

    await session.clear_session()  # deletes the conversation, as the SDK does
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conv_id)
    assert await session.pop_item() is None  # a new, empty conversation
    assert session.session_id != conv_id


async def test_items_of_every_kind_survive_the_session(client: AsyncOpenAI) -> None:
    session = OpenAIConversationsSession(openai_client=client)
    items = [*TURN1, *TURN2, *TURN3]
    await session.add_items(items)  # type: ignore[arg-type]
    assert canonical_all(await session.get_items()) == canonical_all(items)


async def test_sessions_of_two_users_are_apart(served: str, client: AsyncOpenAI) -> None:
    session = OpenAIConversationsSession(openai_client=client)
    await session.add_items([user_says("mine")])
    async with AsyncOpenAI(base_url=served, api_key=token("mallory"), max_retries=0) as other:
        theirs = OpenAIConversationsSession(conversation_id=session.session_id, openai_client=other)
        with pytest.raises(openai.NotFoundError):
            await theirs.get_items()
        with pytest.raises(openai.NotFoundError):
            await theirs.add_items([user_says("not yours")])
    assert canonical_all(await session.get_items()) == canonical_all([user_says("mine")])


# ------------------------------------------------------------------ an agent, 3 turns


async def test_runner_over_three_turns(client: AsyncOpenAI) -> None:
    conv = await client.conversations.create()

    def make() -> OpenAIConversationsSession:  # a fresh session per turn (stateless)
        return OpenAIConversationsSession(conversation_id=conv.id, openai_client=client)

    model, answers = await run_script(make)
    assert answers == ["It is sunny in Paris.", "You're welcome!", "Both sunny."]
    # The model got, each time, the turns before it (as the SDK's own SQLiteSession gives).
    reference = SQLiteSession("reference")
    expected, _ = await run_script(lambda: reference)
    assert len(model.inputs) == len(expected.inputs) == 5
    for got, want in zip(model.inputs, expected.inputs, strict=True):
        assert canonical_all(got) == canonical_all(want)
    assert canonical_all(model.inputs[3])[:7] == canonical_all([*TURN1, *TURN2])
    stored = await make().get_items()
    assert canonical_all(stored) == canonical_all([*TURN1, *TURN2, *TURN3])
    assert canonical_all(stored) == canonical_all(await reference.get_items())
    reference.close()


# ----------------------------------------- the SDK's own session tests, at a real server


class TestSdkBasicOperations:
    async def test_get_items_zero_limit_returns_empty(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        assert await session.get_items(limit=0) == []
        assert session.session_id.startswith("conv_")

    async def test_add_items_simple(self, client: AsyncOpenAI) -> None:
        conv = await client.conversations.create()
        session = OpenAIConversationsSession(conversation_id=conv.id, openai_client=client)
        items: list[TResponseInputItem] = [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there!"},
        ]
        await session.add_items(items)
        assert canonical_all(await session.get_items()) == canonical_all(items)

    async def test_add_items_creates_session_id(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await session.add_items([user_says("Hello")])
        assert (await client.conversations.retrieve(session.session_id)).id == session.session_id

    async def test_add_items_empty_does_not_create_session(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await session.add_items([])
        with pytest.raises(ValueError, match="add_items\\(\\) with a non-empty list"):
            _ = session.session_id

    async def test_pop_item_with_items(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await session.add_items([user_says("first"), user_says("Latest message")])
        popped = await session.pop_item()
        assert popped is not None and canonical(popped) == canonical(user_says("Latest message"))
        assert canonical_all(await session.get_items()) == canonical_all([user_says("first")])

    async def test_pop_item_empty_session(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        assert await session.pop_item() is None

    async def test_clear_session(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await session.add_items([user_says("x")])
        await session.clear_session()
        assert session._session_id is None

    async def test_clear_session_uninitialized_does_not_create_session(
        self, client: AsyncOpenAI
    ) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await session.clear_session()
        assert session._session_id is None


class TestSdkRunnerIntegration:
    async def test_runner_with_conversation_history(self, client: AsyncOpenAI) -> None:
        from tests.adapters.test_agents import ScriptedModel, said

        session = OpenAIConversationsSession(openai_client=client)
        await session.add_items(
            [
                {"role": "user", "content": "What city is the Golden Gate Bridge in?"},
                {"role": "assistant", "content": "San Francisco"},
            ]
        )
        model = ScriptedModel([[said(9, "California")]])
        agent = Agent(name="test", model=model)
        result = await Runner.run(
            agent,
            "What state is it in?",
            session=session,
            run_config=RunConfig(tracing_disabled=True),
        )
        assert result.final_output == "California"
        contents = [str(item.get("content", "")) for item in model.inputs[-1]]
        assert any("Golden Gate Bridge" in c for c in contents)
        assert len(await session.get_items()) == 4


class TestSdkErrorHandling:
    async def test_invalid_conversation_id(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(conversation_id="conv_999999999", openai_client=client)
        with pytest.raises(openai.NotFoundError):
            await session.add_items([user_says("x")])
        with pytest.raises(openai.NotFoundError):
            await session.pop_item()


class TestSdkConcurrentAccess:
    async def test_multiple_sessions_different_conversation_ids(self, client: AsyncOpenAI) -> None:
        one, two = (
            OpenAIConversationsSession(openai_client=client),
            OpenAIConversationsSession(openai_client=client),
        )
        await one.add_items([user_says("Session 1 message")])
        await two.add_items([user_says("Session 2 message")])
        assert one.session_id != two.session_id
        assert canonical_all(await one.get_items()) == canonical_all(
            [user_says("Session 1 message")]
        )
        assert canonical_all(await two.get_items()) == canonical_all(
            [user_says("Session 2 message")]
        )

    async def test_session_id_lazy_creation_consistency(self, client: AsyncOpenAI) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        ids = [await session._get_session_id() for _ in range(3)]
        assert len(set(ids)) == 1

    async def test_concurrent_first_writes_share_one_conversation(
        self, client: AsyncOpenAI
    ) -> None:
        session = OpenAIConversationsSession(openai_client=client)
        await asyncio.gather(
            session.add_items([user_says("First message")]),
            session.add_items([user_says("Second message")]),
        )
        texts = {i["content"][0]["text"] for i in await session.get_items()}  # type: ignore[index, typeddict-item]
        assert texts == {"First message", "Second message"}
