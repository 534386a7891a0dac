"""The FastAPI examples in docs/adapters run as written (with an offline model swapped in)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import RunConfig, Runner
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from convostore import Store
from convostore.config import get_settings
from tests.adapters.test_agents import ScriptedModel, calls, said

DOCS = Path(__file__).resolve().parents[2] / "docs" / "adapters"


def example(page: str) -> str:
    """The first complete Python example (the one defining ``app``) on a docs page."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    return next(b for b in blocks if "app = FastAPI(" in b)


@pytest.fixture
def database(
    db_url: str, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The examples build ``AsyncStore()`` from ``DATABASE_URL``: point it at the test DB.

    Through PgBouncer, ``store.migrate()`` takes ``DATABASE_DIRECT_URL``, as on Neon."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    if backend == "pgbouncer":
        monkeypatch.setenv("DATABASE_DIRECT_URL", request.getfixturevalue("pg_url"))
    get_settings.cache_clear()
    yield db_url
    monkeypatch.undo()
    get_settings.cache_clear()


def post(client: TestClient, user: str, **body: Any) -> Any:
    response = client.post("/chat", json=body, headers={"x-user-id": user})
    return response.status_code, response.json()


class OfflineRunner:
    """``Runner`` with tracing off, so the example never tries to export traces."""

    @staticmethod
    async def run(agent: Any, input: Any, **kwargs: Any) -> Any:
        return await Runner.run(agent, input, run_config=RunConfig(tracing_disabled=True), **kwargs)


def test_agents_example_endpoint(database: str) -> None:
    ns: dict[str, Any] = {"__name__": "agents_example"}
    exec(compile(example("agents.md"), "docs/adapters/agents.md", "exec"), ns)
    model = ScriptedModel([calls("Paris"), [said(1, "Sunny in Paris.")], [said(2, "Bye!")]])
    ns["agent"].model = model
    ns["Runner"] = OfflineRunner
    with TestClient(ns["app"]) as client:
        assert post(client, "alice", message="Weather in Paris?") == (
            200,
            {"conversation_id": 1, "reply": "Sunny in Paris."},
        )
        assert post(client, "alice", message="Thanks", conversation_id=1) == (
            200,
            {"conversation_id": 1, "reply": "Bye!"},
        )
        status, body = post(client, "bob", message="Let me in", conversation_id=1)
        assert (status, body["detail"]) == (404, "conversation not found")
        status, body = post(client, "alice", message="\x00", conversation_id=1)
        assert (status, body["detail"]["field"]) == (422, "messages[0].content")
    assert [m.get("role") for m in model.inputs[-1]] == ["user", None, None, "assistant", "user"]
    with Store(database) as store:
        rows = store.get_messages("alice", 1)
    assert [(m.role, m.content) for m in rows] == [
        ("user", "Weather in Paris?"),
        ("assistant", ""),
        ("tool", "Sunny in Paris"),
        ("assistant", "Sunny in Paris."),
        ("user", "Thanks"),
        ("assistant", "Bye!"),
    ]


def test_langchain_example_endpoint(database: str) -> None:
    source = example("langchain.md")
    # langchain-openai is not a dependency: swap the real model for an offline one.
    source = source.replace("from langchain_openai import ChatOpenAI\n", "")
    source = source.replace('ChatOpenAI(model="gpt-4o-mini").bind_tools([get_weather])', "FAKE")
    call = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
    replies = [AIMessage("", tool_calls=[call]), AIMessage("Sunny in Paris."), AIMessage("Bye!")]
    ns: dict[str, Any] = {"__name__": "langchain_example", "FAKE": None}
    ns["FAKE"] = GenericFakeChatModel(messages=iter(replies))
    exec(compile(source, "docs/adapters/langchain.md", "exec"), ns)
    with TestClient(ns["app"]) as client:
        assert post(client, "alice", message="Weather in Paris?") == (
            200,
            {"conversation_id": 1, "reply": "Sunny in Paris."},
        )
        assert post(client, "alice", message="Thanks", conversation_id=1) == (
            200,
            {"conversation_id": 1, "reply": "Bye!"},
        )
        status, body = post(client, "bob", message="Let me in", conversation_id=1)
        assert (status, body["detail"]) == (404, "conversation not found")
    with Store(database) as store:
        rows = store.get_messages("alice", 1)
        from convostore.adapters.langchain import ConvostoreChatMessageHistory

        stored = ConvostoreChatMessageHistory(user_id="alice", conversation_id=1, store=store)
        messages = stored.messages
    assert [(m.role, m.content, m.tool_call_id) for m in rows] == [
        ("user", "Weather in Paris?", None),
        ("assistant", "", None),
        ("tool", "Sunny in Paris", "call_1"),
        ("assistant", "Sunny in Paris.", None),
        ("user", "Thanks", None),
        ("assistant", "Bye!", None),
    ]
    assert messages[0] == HumanMessage("Weather in Paris?")
    assert isinstance(messages[2], ToolMessage) and messages[2].name == "get_weather"
    assert messages[1].tool_calls == [{**call, "type": "tool_call"}]  # type: ignore[attr-defined]
