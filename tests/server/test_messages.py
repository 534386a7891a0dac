"""Messages over HTTP: append (single, batch, idempotent), page, history, pop, truncate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import Auth, assert_error

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


@pytest.fixture
async def conv(client: httpx.AsyncClient, auth: Auth) -> str:
    response = await client.post("/v1/conversations", json={"title": "t"}, headers=auth())
    conversation_id: str = response.json()["id"]
    assert conversation_id.startswith("conv_")
    return conversation_id


async def _append(
    client: httpx.AsyncClient, auth: Auth, conv: str, *msgs: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post(
        f"/v1/conversations/{conv}/messages/batch", json={"messages": list(msgs)}, headers=auth()
    )
    assert response.status_code == 201, response.text
    return list(response.json()["data"])


async def test_append_single_and_batch(client: httpx.AsyncClient, auth: Auth, conv: str) -> None:
    one = await client.post(
        f"/v1/conversations/{conv}/messages",
        json={"role": "user", "content": "Weather in Ghent? ☔", "metadata": {"lang": "en"}},
        headers=auth(),
    )
    assert one.status_code == 201
    assert one.json()["position"] == 1 and one.json()["metadata"] == {"lang": "en"}
    batch = await _append(
        client,
        auth,
        conv,
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "content": "12°C, rain", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Rainy, 12°C."},
    )
    assert [m["position"] for m in batch] == [2, 3, 4]
    assert batch[0]["tool_calls"] == [TOOL_CALL] and batch[1]["tool_call_id"] == "call_1"
    conv_after = (await client.get(f"/v1/conversations/{conv}", headers=auth())).json()
    assert conv_after["message_count"] == 4


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, auth: Auth, conv: str) -> None:
    response = await client.post(
        f"/v1/conversations/{conv}/messages/batch",
        json={"messages": [{"role": "user", "content": "ok"}, {"role": "tool", "content": "x"}]},
        headers=auth(),
    )
    assert_error(response, 400, "validation_error", "messages[1].tool_call_id")
    page = (await client.get(f"/v1/conversations/{conv}/messages", headers=auth())).json()
    assert page["data"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "user", "content": ""}, "content"),
        ({"role": "user", "content": "x" * 10_001}, "content"),
        ({"role": "wizard", "content": "x"}, "role"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_calls": [TOOL_CALL]}, "tool_calls"),
        ({"role": "user", "content": "nul \u0000 byte"}, "content"),
        ({"role": "user", "content": "x", "colour": "red"}, "colour"),
        ({"content": "x"}, "role"),
    ],
)
async def test_append_validation(
    client: httpx.AsyncClient, auth: Auth, conv: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(f"/v1/conversations/{conv}/messages", json=body, headers=auth())
    assert_error(response, 400, "validation_error", field)


async def test_idempotency_key_header_and_body_key(
    client: httpx.AsyncClient, auth: Auth, conv: str
) -> None:
    url = f"/v1/conversations/{conv}/messages"
    headers = {**auth(), "Idempotency-Key": "turn-1"}
    first = await client.post(url, json={"role": "user", "content": "hi"}, headers=headers)
    retry = await client.post(url, json={"role": "user", "content": "hi"}, headers=headers)
    assert first.json() == retry.json()
    assert first.json()["key"] == "turn-1"
    by_body = await client.post(
        url, json={"role": "user", "content": "b", "key": "k2"}, headers=auth()
    )
    again = await client.post(
        url, json={"role": "user", "content": "b", "key": "k2"}, headers=auth()
    )
    assert by_body.json()["id"] == again.json()["id"]
    clash = await client.post(
        url, json={"role": "user", "content": "c", "key": "other"}, headers=headers
    )
    assert_error(clash, 400, "validation_error", "key")
    batch_headers = {**auth(), "Idempotency-Key": "batch-1"}
    burl = f"/v1/conversations/{conv}/messages/batch"
    body = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    b1 = (await client.post(burl, json=body, headers=batch_headers)).json()["data"]
    b2 = (await client.post(burl, json=body, headers=batch_headers)).json()["data"]
    assert [m["id"] for m in b1] == [m["id"] for m in b2]
    assert [m["key"] for m in b1] == ["batch-1:0", "batch-1:1"]
    count = (await client.get(f"/v1/conversations/{conv}", headers=auth())).json()["message_count"]
    assert count == 4


async def test_an_idempotency_key_reused_for_another_message_is_a_conflict(
    client: httpx.AsyncClient, auth: Auth, conv: str
) -> None:
    url = f"/v1/conversations/{conv}/messages"
    headers = {**auth(), "Idempotency-Key": "turn-1"}
    first = await client.post(url, json={"role": "user", "content": "hi"}, headers=headers)
    assert first.status_code == 201
    other = await client.post(url, json={"role": "user", "content": "bye"}, headers=headers)
    assert_error(other, 409, "conflict")
    assert "turn-1" in other.json()["error"]["message"]
    body = {"messages": [{"role": "user", "content": "x", "key": "turn-1"}]}
    batch = await client.post(f"{url}/batch", json=body, headers=auth())
    assert_error(batch, 409, "conflict")
    page = (await client.get(url, headers=auth())).json()
    assert [m["content"] for m in page["data"]] == ["hi"]


async def test_message_pages_both_directions(
    client: httpx.AsyncClient, auth: Auth, conv: str
) -> None:
    await _append(client, auth, conv, *({"role": "user", "content": f"m{i}"} for i in range(1, 8)))
    url = f"/v1/conversations/{conv}/messages"

    async def walk(order: str, key: str) -> list[int]:
        positions: list[int] = []
        params: dict[str, str | int] = {"limit": 3, "order": order}
        for _ in range(8):  # bounded: a repeating cursor fails, not hangs
            page = (await client.get(url, params=params, headers=auth())).json()
            positions += [m["position"] for m in page["data"]]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                return positions
            params[key] = int(page["next_cursor"])
        else:
            pytest.fail("paging did not end")

    assert await walk("asc", "after") == [1, 2, 3, 4, 5, 6, 7]
    assert await walk("desc", "before") == [7, 6, 5, 4, 3, 2, 1]
    window = (await client.get(url, params={"after": 2, "before": 6}, headers=auth())).json()
    assert [m["content"] for m in window["data"]] == ["m3", "m4", "m5"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"after": -1}, "after"),
        ({"before": "x"}, "before"),
        ({"order": "sideways"}, "order"),
    ],
)
async def test_message_list_validation(
    client: httpx.AsyncClient, auth: Auth, conv: str, params: dict[str, Any], field: str
) -> None:
    response = await client.get(f"/v1/conversations/{conv}/messages", params=params, headers=auth())
    assert_error(response, 400, "validation_error", field)


async def test_history_window(client: httpx.AsyncClient, auth: Auth, conv: str) -> None:
    await _append(
        client,
        auth,
        conv,
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "content": "12°C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "12°C."},
    )
    url = f"/v1/conversations/{conv}/history"
    full = (await client.get(url, headers=auth())).json()
    assert full["conversation_id"] == conv
    assert full["messages"][3] == {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
    assert full["messages"][4] == {"role": "tool", "content": "12°C", "tool_call_id": "call_1"}
    assert full["messages"][0] == {"role": "user", "content": "old question"}
    # Two messages would cut the tool call from its result: only the final answer fits.
    two = (await client.get(url, params={"max_messages": 2}, headers=auth())).json()
    assert two["messages"] == [{"role": "assistant", "content": "12°C."}]
    with_prompt = (
        await client.get(
            url, params={"max_messages": 1, "system_prompt": "Be kind"}, headers=auth()
        )
    ).json()
    assert with_prompt["messages"] == [
        {"role": "system", "content": "Be kind"},
        {"role": "assistant", "content": "12°C."},
    ]
    budget = (await client.get(url, params={"max_tokens": 1}, headers=auth())).json()
    assert budget["messages"] == []
    assert_error(
        await client.get(url, params={"max_messages": -1}, headers=auth()),
        400,
        "validation_error",
        "max_messages",
    )


async def test_history_by_post_is_the_same_window_with_a_prompt_of_any_length(
    client: httpx.AsyncClient, auth: Auth, conv: str
) -> None:
    await _append(
        client,
        auth,
        conv,
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "content": "12°C", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "12°C."},
    )
    url = f"/v1/conversations/{conv}/history"
    for params in ({}, {"max_messages": 2}, {"max_tokens": 30, "system_prompt": "Be kind"}):
        by_get = await client.get(url, params=params, headers=auth())
        by_post = await client.post(url, json=params, headers=auth())
        assert by_post.status_code == by_get.status_code == 200
        assert by_post.json() == by_get.json()
    # 44,000 characters would never fit in a URL (16 KiB); in a body it is an ordinary prompt.
    prompt = "Answer in the voice of a careful librarian. " * 1000
    long = await client.post(url, json={"system_prompt": prompt, "max_messages": 1}, headers=auth())
    assert long.status_code == 200, long.text
    assert long.json()["messages"] == [
        {"role": "system", "content": prompt},
        {"role": "assistant", "content": "12°C."},
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_messages": -1}, "max_messages"),
        ({"max_tokens": 10_000_001}, "max_tokens"),
        ({"system_prompt": ""}, "system_prompt"),
        ({"system_prompt": 5}, "system_prompt"),
        ({"max_token": 5}, "max_token"),
        ({"max_tokens": "5"}, "max_tokens"),
    ],
)
async def test_history_by_post_refuses_bad_parameters(
    client: httpx.AsyncClient, auth: Auth, conv: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(f"/v1/conversations/{conv}/history", json=body, headers=auth())
    assert_error(response, 400, "validation_error", field)


async def test_pop_and_delete_after(client: httpx.AsyncClient, auth: Auth, conv: str) -> None:
    await _append(client, auth, conv, *({"role": "user", "content": f"m{i}"} for i in range(1, 6)))
    base = f"/v1/conversations/{conv}/messages"
    popped = (await client.delete(f"{base}/last", headers=auth())).json()["data"]
    assert [m["position"] for m in popped] == [5]
    removed = (await client.delete(base, params={"after": 2}, headers=auth())).json()["data"]
    assert [m["content"] for m in removed] == ["m3", "m4"]
    nothing = (await client.delete(base, params={"after": 2}, headers=auth())).json()["data"]
    assert nothing == []
    assert_error(await client.delete(base, headers=auth()), 400, "validation_error", "after")
    nxt = await client.post(base, json={"role": "user", "content": "edited"}, headers=auth())
    assert nxt.json()["position"] == 3  # positions stay gapless after truncation
    await client.delete(base, params={"after": 0}, headers=auth())
    empty = (await client.delete(f"{base}/last", headers=auth())).json()
    assert empty == {"data": []}
