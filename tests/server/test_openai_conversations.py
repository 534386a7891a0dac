"""The official ``openai`` client (sync and async) against a real ``convostore serve``.

One server per database for the module (``served``); every test has users of its own, so
nothing needs cleaning between tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI, OpenAI

from tests.server.conftest import token


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def client_for(base_url: str, user: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=token(user), max_retries=0)


@pytest.fixture
def user() -> str:
    return new_user()


@pytest.fixture
def client(served: str, user: str) -> Iterator[OpenAI]:
    with client_for(served, user) as c:
        yield c


@pytest.fixture
async def aclient(served: str, user: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=served, api_key=token(user), max_retries=0) as c:
        yield c


def said(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": text}
    if kind == "output_text":
        part["annotations"] = []
    return {"type": "message", "role": role, "content": [part]}


def dumped(item: Any) -> dict[str, Any]:
    """An item as the client parsed it, back to JSON (what the Agents SDK does)."""
    out: dict[str, Any] = item.model_dump(exclude_unset=True, mode="json", warnings=False)
    return out


def without_id(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "id"}


# ------------------------------------------------------------------------ conversations


def test_create_retrieve_update_delete(client: OpenAI) -> None:
    before = int(time.time())
    conv = client.conversations.create(
        items=[said("user", "Hello"), said("assistant", "Hi!")], metadata={"topic": "demo"}
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert before <= conv.created_at <= int(time.time()) + 1
    assert conv.metadata == {"topic": "demo"}
    # convostore's own fields ride along as extensions.
    extra = conv.model_extra or {}
    assert extra["message_count"] == 2 and extra["title"] == "Hello"

    assert client.conversations.retrieve(conv.id) == conv
    updated = client.conversations.update(conv.id, metadata={"topic": "other", "k": "v"})
    assert (updated.id, updated.metadata) == (conv.id, {"topic": "other", "k": "v"})
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "other", "k": "v"}

    deleted = client.conversations.delete(conv.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conv.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_create_empty_and_items_in_order(client: OpenAI) -> None:
    conv = client.conversations.create()
    assert conv.metadata == {} and list(client.conversations.items.list(conv.id)) == []
    added = client.conversations.items.create(
        conv.id, items=[said("user", "one"), said("assistant", "two")]
    )
    assert added.object == "list" and not added.has_more
    assert [i.id for i in added.data] == [added.first_id, added.last_id]
    assert [dumped(i)["content"][0]["text"] for i in added.data] == ["one", "two"]
    # Easy-input messages come back in the full form, as OpenAI answers them.
    easy = client.conversations.items.create(conv.id, items=[{"role": "user", "content": "hi"}])
    assert without_id(dumped(easy.data[0])) == said("user", "hi")


# --------------------------------------------------------------------------- pagination


def test_pages_in_both_orders(client: OpenAI) -> None:
    texts = [f"m{i}" for i in range(7)]
    conv = client.conversations.create(items=[said("user", t) for t in texts])
    everything = client.conversations.items.list(conv.id, order="asc", limit=100)
    ids = [i.id for i in everything.data]
    assert [dumped(i)["content"][0]["text"] for i in everything.data] == texts
    assert (everything.first_id, everything.last_id, everything.has_more) == (
        ids[0],
        ids[-1],
        False,
    )

    first = client.conversations.items.list(conv.id, order="asc", limit=3)
    assert [i.id for i in first.data] == ids[:3] and first.has_more
    assert (first.first_id, first.last_id) == (ids[0], ids[2])
    nxt = client.conversations.items.list(conv.id, order="asc", limit=3, after=first.last_id)
    assert [i.id for i in nxt.data] == ids[3:6] and nxt.has_more
    last = client.conversations.items.list(conv.id, order="asc", limit=3, after=nxt.last_id)
    assert [i.id for i in last.data] == ids[6:] and not last.has_more

    # The default order is desc (newest first), as OpenAI's.
    newest = client.conversations.items.list(conv.id, limit=4)
    assert [i.id for i in newest.data] == ids[::-1][:4] and newest.has_more
    after = client.conversations.items.list(conv.id, limit=4, after=newest.last_id)
    assert [i.id for i in after.data] == ids[::-1][4:] and not after.has_more
    # The client's auto-pagination follows last_id in both orders.
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=2)] == ids
    assert [i.id for i in client.conversations.items.list(conv.id, limit=2)] == ids[::-1]
    # include is accepted (an item is stored whole: nothing is left out to include).
    included = client.conversations.items.list(
        conv.id, order="asc", include=["message.output_text.logprobs"]
    )
    assert [i.id for i in included.data] == ids
    empty = client.conversations.items.list(conv.id, order="asc", after=ids[-1])
    assert (empty.data, empty.first_id, empty.last_id, empty.has_more) == ([], None, None, False)


async def test_async_client(aclient: AsyncOpenAI) -> None:
    conv = await aclient.conversations.create(
        items=[said("user", f"a{i}") for i in range(5)], metadata={"via": "async"}
    )
    assert (await aclient.conversations.retrieve(conv.id)).metadata == {"via": "async"}
    ids = [i.id async for i in aclient.conversations.items.list(conv.id, order="asc", limit=2)]
    assert len(ids) == 5
    desc = [i.id async for i in aclient.conversations.items.list(conv.id, limit=2)]
    assert desc == ids[::-1]
    created = await aclient.conversations.items.create(conv.id, items=[said("assistant", "b")])
    one = await aclient.conversations.items.retrieve(created.data[0].id, conversation_id=conv.id)
    assert dumped(one) == dumped(created.data[0])
    after = await aclient.conversations.items.delete(one.id, conversation_id=conv.id)
    assert after.id == conv.id and (after.model_extra or {})["message_count"] == 5
    await aclient.conversations.update(conv.id, metadata={"via": "async", "n": "2"})
    assert (await aclient.conversations.delete(conv.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await aclient.conversations.items.list(conv.id)


# ------------------------------------------------------------------ retrieve and delete


def test_item_retrieve_and_delete(client: OpenAI) -> None:
    conv = client.conversations.create(items=[said("user", t) for t in ("a", "b", "c")])
    ids = [i.id for i in client.conversations.items.list(conv.id, order="asc")]
    middle = client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    assert (middle.id, dumped(middle)["content"][0]["text"]) == (ids[1], "b")
    answer = client.conversations.items.delete(ids[1], conversation_id=conv.id)
    assert answer.object == "conversation" and answer.id == conv.id  # as OpenAI answers
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc")] == [
        ids[0],
        ids[2],
    ]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(ids[1], conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(ids[1], conversation_id=conv.id)
    # Appending after a deletion: ids stay unique, order stays the order of writing.
    more = client.conversations.items.create(conv.id, items=[said("user", "d")])
    texts = [dumped(i)["content"][0]["text"] for i in client.conversations.items.list(conv.id)]
    assert texts == ["d", "c", "a"] and more.data[0].id not in ids


# ------------------------------------------------------------------- every item type

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(str.strip)
CALL_ID = st.from_regex(r"call_[a-zA-Z0-9]{1,12}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)

MESSAGE = st.one_of(
    st.builds(lambda t: said("user", t), TEXT),
    st.builds(lambda t: said("system", t), TEXT),
    st.builds(lambda t: said("developer", t), TEXT),
    st.builds(lambda t: said("assistant", t), TEXT),
    st.builds(
        lambda t: {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": t}],
        },
        TEXT,
    ),
)
FUNCTION_CALL = st.builds(
    lambda call_id, name, args: {
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": args,
        "status": "completed",
    },
    CALL_ID,
    st.from_regex(r"[a-z_]{1,20}", fullmatch=True),
    TEXT,
)
FUNCTION_OUTPUT = st.builds(
    lambda call_id, out: {"type": "function_call_output", "call_id": call_id, "output": out},
    CALL_ID,
    TEXT,
)
REASONING = st.builds(
    lambda summary: {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": s} for s in summary],
    },
    st.lists(TEXT, max_size=2),
)
UNKNOWN = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.from_regex(r"x_[a-z_]{1,12}", fullmatch=True),
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), JSON, max_size=4),
)
ITEM = st.one_of(MESSAGE, FUNCTION_CALL, FUNCTION_OUTPUT, REASONING, UNKNOWN)
PREFIX = {
    "message": "msg_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "reasoning": "rs_",
}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=st.lists(ITEM, min_size=1, max_size=6))
def test_every_item_type_round_trips(client: OpenAI, items: list[dict[str, Any]]) -> None:
    conv = client.conversations.create(items=items)
    listed = [dumped(i) for i in client.conversations.items.list(conv.id, order="asc")]
    assert [without_id(i) for i in listed] == items
    for given_item, got in zip(items, listed, strict=True):
        assert got["id"].startswith(PREFIX.get(given_item["type"], "item_"))
        one = client.conversations.items.retrieve(got["id"], conversation_id=conv.id)
        assert dumped(one) == got


def test_a_client_items_own_id_is_replaced_by_the_servers(client: OpenAI) -> None:
    item = {**said("user", "hi"), "id": "msg_from_elsewhere"}
    conv = client.conversations.create(items=[item])
    [got] = client.conversations.items.list(conv.id).data
    assert got.id.startswith("msg_") and got.id != "msg_from_elsewhere"
    assert without_id(dumped(got)) == without_id(item)


# -------------------------------------------------------------- our API on the same rows


def test_convostores_own_routes_on_the_same_conversation(served: str, client: OpenAI) -> None:
    conv = client.conversations.create(
        items=[
            said("user", "Weather in Ghent?"),
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "Rain"},
            {"type": "reasoning", "summary": []},
            said("assistant", "It rains."),
        ]
    )
    headers = {"Authorization": f"Bearer {client.api_key}"}
    with httpx.Client(base_url=served, headers=headers) as http:
        rows = http.get(f"/conversations/{conv.id}/messages").json()["data"]
        assert [(m["role"], m["content"]) for m in rows] == [
            ("user", "Weather in Ghent?"),
            ("assistant", ""),
            ("tool", "Rain"),
            ("assistant", "[reasoning]"),
            ("assistant", "It rains."),
        ]
        assert {m["conversation_id"] for m in rows} == {conv.id}
        assert rows[1]["tool_calls"][0]["function"]["name"] == "weather"
        history = http.get(f"/conversations/{conv.id}/history").json()
        assert history["conversation_id"] == conv.id
        # A message written through our API with text and two tool calls is three items.
        calls = [
            {"id": f"call_{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            for n in (2, 3)
        ]
        row = http.post(
            f"/conversations/{conv.id}/messages",
            json={"role": "assistant", "content": "Checking.", "tool_calls": calls},
        ).json()
        assert row["conversation_id"] == conv.id
    newest = client.conversations.items.list(conv.id, limit=3)
    n = row["id"]
    assert [i.id for i in newest.data] == [f"fc_{n}_2", f"fc_{n}_1", f"msg_{n}"]
    assert [dumped(i)["type"] for i in newest.data] == ["function_call", "function_call", "message"]
    # Paging through the middle of such a message keeps every item exactly once.
    pages = [i.id for i in client.conversations.items.list(conv.id, order="asc", limit=2)]
    assert pages[-3:] == [f"msg_{n}", f"fc_{n}_1", f"fc_{n}_2"] and len(pages) == 8
    desc = [i.id for i in client.conversations.items.list(conv.id, limit=2)]
    assert desc == pages[::-1]
    one = client.conversations.items.retrieve(f"fc_{n}_1", conversation_id=conv.id)
    assert dumped(one)["call_id"] == "call_2"
    # Only a whole message can be deleted: one of its several items is a 409.
    with pytest.raises(openai.ConflictError):
        client.conversations.items.delete(f"fc_{n}_1", conversation_id=conv.id)


# -------------------------------------------------------------------------------- errors


def test_another_users_conversation_is_the_same_404_as_a_missing_one(
    served: str, client: OpenAI
) -> None:
    conv = client.conversations.create(items=[said("user", "secret")])
    item = client.conversations.items.list(conv.id).data[0]
    missing = f"conv_{int(conv.id.removeprefix('conv_')) + 10_000}"
    with client_for(served, new_user()) as mallory:
        for target in (conv.id, missing):
            calls = [
                lambda t=target: mallory.conversations.retrieve(t),
                lambda t=target: mallory.conversations.update(t, metadata={"a": "b"}),
                lambda t=target: mallory.conversations.items.list(t),
                lambda t=target: mallory.conversations.items.create(t, items=[said("user", "x")]),
                lambda t=target: mallory.conversations.items.retrieve(item.id, conversation_id=t),
                lambda t=target: mallory.conversations.items.delete(item.id, conversation_id=t),
                lambda t=target: mallory.conversations.delete(t),
            ]
            for call in calls:
                with pytest.raises(openai.NotFoundError) as caught:
                    call()
                assert caught.value.message.endswith(f"conversation {target} not found")
                assert caught.value.code == "not_found"
    assert client.conversations.items.list(conv.id).data == [item]  # nothing changed


@pytest.mark.parametrize(
    ("metadata", "rule"),
    [
        ({f"k{i}": "v" for i in range(17)}, "at most 16"),
        ({"k" * 65: "v"}, "at most 64"),
        ({"k": "v" * 513}, "at most 512"),
        ({"k": 1}, "strings"),
    ],
)
def test_bad_metadata_is_a_400_naming_the_field(
    client: OpenAI, metadata: dict[str, Any], rule: str
) -> None:
    conv = client.conversations.create()
    calls = [
        lambda: client.conversations.create(metadata=metadata),
        lambda: client.conversations.update(conv.id, metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        error = caught.value
        assert (error.param, error.code, error.type) == (
            "metadata",
            "validation_error",
            "invalid_request_error",
        )
        assert error.message.endswith(f"- {error.body['message']}")  # type: ignore[index]
        assert error.body["message"].startswith("metadata: ") and rule in error.message  # type: ignore[index]


def test_limits_at_the_edge_are_fine(client: OpenAI) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    conv = client.conversations.create(metadata=metadata, items=[said("user", "x")] * 20)
    assert conv.metadata == metadata
    assert (
        len(client.conversations.items.create(conv.id, items=[said("user", "y")] * 20).data) == 20
    )


def test_bad_ids_and_too_many_items(client: OpenAI) -> None:
    conv = client.conversations.create()

    def bad(call: Any, param: str) -> None:
        with pytest.raises(openai.BadRequestError) as caught:
            call()
        assert caught.value.param == param, caught.value.message

    bad(lambda: client.conversations.retrieve("conv_x"), "conversation_id")
    bad(lambda: client.conversations.retrieve("msg_1"), "conversation_id")
    bad(lambda: client.conversations.items.retrieve("nope", conversation_id=conv.id), "item_id")
    bad(lambda: client.conversations.items.list(conv.id, after="nope"), "after")
    bad(lambda: client.conversations.items.list(conv.id, after="msg_999999999"), "after")
    bad(lambda: client.conversations.items.list(conv.id, limit=101), "limit")
    bad(lambda: client.conversations.items.list(conv.id, order="up"), "order")  # type: ignore[arg-type]
    bad(lambda: client.conversations.create(items=[said("user", "x")] * 21), "items")
    bad(lambda: client.conversations.items.create(conv.id, items=[said("user", "x")] * 21), "items")
    bad(
        lambda: client.conversations.items.create(conv.id, items=[{"content": "x"}]),
        "items[0].type",
    )
    too_long = said("user", "x" * 10_001)  # over the server's CONVOSTORE_MAX_CONTENT_LENGTH
    bad(lambda: client.conversations.items.create(conv.id, items=[too_long]), "items[0].content")
    bad(
        lambda: client.conversations.create(items=[said("user", "ok"), too_long]),
        "items[1].content",
    )
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve("msg_999999999", conversation_id=conv.id)
    assert list(client.conversations.items.list(conv.id)) == []  # nothing half-written


def test_a_bad_token_is_an_authentication_error(served: str) -> None:
    with OpenAI(base_url=served, api_key="not-a-token", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as caught:
            stranger.conversations.create()
    assert caught.value.type == "authentication_error"


def test_the_docs_example_runs(served: str, user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/openai.md's client example, as written, against the server."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "openai.md"
    example = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL)[0]
    monkeypatch.setenv("CONVOSTORE_TOKEN", token(user))
    code = example.replace("http://127.0.0.1:8000/v1", served)
    ns: dict[str, Any] = {"__name__": "openai_example"}
    exec(compile(code, "docs/openai.md", "exec"), ns)
    assert ns["item"].type == "message" and ns["conv"].metadata == {"topic": "travel"}
    with client_for(served, user) as client, pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(ns["conv"].id)  # the example deletes it at its end
