"""The streaming endpoint of docs/library.md runs as written, on a scripted OpenAI stream."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from convostore import Store
from convostore.config import get_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def example() -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(b for b in blocks if "app = FastAPI(" in b and "append_delta" in b)


class ScriptedStream:
    """``client.chat.completions.create(..., stream=True)``: chunks shaped like the
    OpenAI client's (``chunk.choices[0].delta.content``), then optionally an error."""

    def __init__(self, pieces: list[str | None], fail: bool = False) -> None:
        self.pieces, self.fail, self.requests = pieces, fail, []  # type: list[Any]
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    async def create(self, **kwargs: Any) -> AsyncIterator[Any]:
        assert kwargs["stream"] is True
        self.requests.append(kwargs["messages"])
        return self.chunks()

    async def chunks(self) -> AsyncIterator[Any]:
        yield SimpleNamespace(choices=[])  # a usage-only chunk, as the API may send
        for piece in self.pieces:
            yield SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=piece))])
        if self.fail:
            raise ConnectionError("the model went away")


@pytest.fixture
def ns(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    get_settings.cache_clear()
    namespace: dict[str, Any] = {"__name__": "streaming_example"}
    exec(compile(example(), str(DOC), "exec"), namespace)
    yield namespace
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_streaming_example_stores_the_reply_as_it_streams(
    ns: dict[str, Any], db_url: str
) -> None:
    pieces = [f"tok{i} " for i in range(300)] + [None, "end."]
    ns["client"] = fake = ScriptedStream(pieces)
    with Store(db_url) as store:
        cid = store.create_conversation("alice").id
    with TestClient(ns["app"]) as http:
        body = {"conversation_id": cid, "message": "Go", "request_id": "r1"}
        r = http.post("/chat", json=body, headers={"x-user-id": "alice"})
        assert r.status_code == 200
        expected = "".join(p for p in pieces if p)
        assert r.text == expected
        mid = int(r.headers["X-Message-Id"])
    assert fake.requests == [[{"role": "user", "content": "Go"}]]
    with Store(db_url) as store:
        [question, reply] = store.get_messages("alice", cid)
        assert (question.content, reply.id, reply.status) == ("Go", mid, "complete")
        assert reply.content == expected
        chunks = store.read_stream("alice", mid).chunks
        assert "".join(c.text for c in chunks) == expected
        assert [c.seq for c in chunks] == list(range(len(chunks)))


def test_a_failing_model_stream_leaves_the_partial_reply_as_error(
    ns: dict[str, Any], db_url: str
) -> None:
    ns["client"] = ScriptedStream(["Half ", "an answer"], fail=True)
    with Store(db_url) as store:
        cid = store.create_conversation("alice").id
    with TestClient(ns["app"], raise_server_exceptions=False) as http:
        body = {"conversation_id": cid, "message": "Go", "request_id": "r2"}
        # The body breaks off mid-stream (the client sees what was sent so far).
        r = http.post("/chat", json=body, headers={"x-user-id": "alice"})
        assert r.text == "Half an answer"
    with Store(db_url) as store:
        reply = store.get_messages("alice", cid)[1]
        assert (reply.status, reply.content) == ("error", "Half an answer")
        assert reply.metadata == {"error": "ConnectionError"}
        # The conversation goes on: the next turn streams a new reply after it.
        assert store.begin_message("alice", cid).position == 3
