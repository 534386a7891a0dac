"""GET /v1/search over HTTP: JWT-scoped hits, pages, filters, and 4xx (never 5xx) for bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import Auth, assert_error


async def _conversation(
    client: httpx.AsyncClient, auth: Auth, user: str, *contents: str, title: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": c}
            for i, c in enumerate(contents)
        ]
    }
    if title is not None:
        body["title"] = title
    response = await client.post("/v1/conversations", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _search(client: httpx.AsyncClient, auth: Auth, user: str = "alice", **params: Any) -> Any:
    response = await client.get("/v1/search", params=params, headers=auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def test_search_finds_the_callers_messages_only(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    mine = await _conversation(
        client, auth, "alice", "lasagna recipe please", "Layer the lasagna sheets", title="Food"
    )
    await _conversation(client, auth, "bob", "my lasagna secret", title="Lasagna")
    body = await _search(client, auth, q="lasagna")
    assert {h["message"]["user_id"] for h in body["data"]} == {"alice"}
    assert {h["conversation_id"] for h in body["data"]} == {mine["id"]}
    hit = body["data"][0]
    assert set(hit) == {"kind", "conversation_id", "conversation_title", "message", "snippet",
                        "rank"}  # fmt: skip
    assert hit["kind"] == "message" and "**lasagna**" in hit["snippet"].lower()
    assert hit["conversation_title"] == "Food"
    only = await _search(client, auth, q="lasagna", role="assistant")
    assert [h["message"]["role"] for h in only["data"]] == ["assistant"]
    bob = await _search(client, auth, "bob", q="lasagna")
    assert [h["kind"] for h in bob["data"]] == ["title", "message"]


async def test_search_pages_with_after(client: httpx.AsyncClient, auth: Auth) -> None:
    await _conversation(client, auth, "alice", *[f"note {i} about kiwis" for i in range(5)])
    seen: list[int] = []
    params: dict[str, Any] = {"q": "kiwis", "limit": 2, "role": ["user", "assistant"]}
    while True:
        body = await _search(client, auth, **params)
        seen += [h["message"]["id"] for h in body["data"]]
        if not body["has_more"]:
            break
        params["after"] = body["next_cursor"]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("q", ["", "   ", "!!!", "🍕", '"', "NEAR(", "a:*", "-"])
async def test_queries_without_words_give_an_empty_page(
    client: httpx.AsyncClient, auth: Auth, q: str
) -> None:
    body = await _search(client, auth, q=q)
    assert body == {"data": [], "has_more": False, "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "x" * 10_000}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "a\x1bb"}, "q"),
        ({"q": "x", "after": "garbage"}, "after"),
        ({"q": "x", "role": "robot"}, "role[0]"),
        ({"q": "x", "limit": 0}, "limit"),
        ({"q": "x", "limit": 101}, "limit"),
        ({"q": "x", "since": "yesterday"}, "since"),
        ({"q": "x", "conversation_id": 0}, "conversation_id"),
        ({"q": "x", "qq": "typo"}, "qq"),
    ],
)
async def test_bad_parameters_are_422(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/search", params=params, headers=auth())
    assert_error(response, 400, "validation_error", field)


async def test_search_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/search", params={"q": "x"})
    assert response.status_code == 401


async def test_rest_docs_search_example(client: httpx.AsyncClient, auth: Auth) -> None:
    """docs/rest.md: the weather conversation of the examples, searched after the regenerate."""
    await _conversation(
        client, auth, "alice", "Weather in Ghent?", "12C and rainy.", title="Weather"
    )
    body = await _search(client, auth, q="ghent weath*")
    assert [(h["kind"], h["snippet"]) for h in body["data"]] == [
        ("message", "**Weather** in **Ghent**?")
    ]
