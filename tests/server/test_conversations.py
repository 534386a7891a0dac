"""/v1/conversations over HTTP: create, list across pages, read, update, delete, isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.conftest import Auth, assert_error


async def _create(
    client: httpx.AsyncClient, auth: Auth, user: str = "alice", **body: object
) -> dict[str, Any]:
    response = await client.post("/v1/conversations", json=body, headers=auth(user))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_with_title_metadata_and_messages(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    conv = await _create(
        client,
        auth,
        title="Trip to Ghent",
        metadata={"model": "gpt-x", "tags": "travel"},
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Bonjour 🌍"},
        ],
    )
    assert conv["title"] == "Trip to Ghent"
    assert conv["metadata"] == {"model": "gpt-x", "tags": "travel"}
    # OpenAI's Conversation object, convostore's fields beside it.
    assert conv["id"].startswith("conv_") and conv["object"] == "conversation"
    assert isinstance(conv["created_at"], int) and conv["created_at"] == conv["updated_at"]
    bare = conv["id"].removeprefix("conv_")  # a path takes the bare row id too
    assert (await client.get(f"/v1/conversations/{bare}", headers=auth())).json() == conv
    assert conv["message_count"] == 2
    assert conv["user_id"] == "alice"
    fetched = (await client.get(f"/v1/conversations/{conv['id']}", headers=auth())).json()
    assert fetched == conv
    msgs = (await client.get(f"/v1/conversations/{conv['id']}/messages", headers=auth())).json()
    assert [(m["position"], m["content"]) for m in msgs["data"]] == [
        (1, "Be brief."),
        (2, "Bonjour 🌍"),
    ]


async def test_create_empty_body_and_auto_title(client: httpx.AsyncClient, auth: Auth) -> None:
    empty = await _create(client, auth)
    assert empty["title"] is None and empty["message_count"] == 0
    titled = await _create(
        client, auth, messages=[{"role": "user", "content": "Plan a trip\nmore"}]
    )
    assert titled["title"] == "Plan a trip"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 256}, "title"),
        ({"title": "   "}, "title"),
        ({"metadata": [1, 2]}, "metadata"),
        # OpenAI's limits: 16 pairs, keys of 64 characters, string values of 512.
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"items": [{"role": "user", "content": "hi"}] * 21}, "items"),
        (
            {
                "items": [{"type": "message", "role": "user", "content": "hi"}],
                "messages": [{"role": "user", "content": "hi"}],
            },
            "items",
        ),
        ({"items": ["hi"]}, "items[0]"),
        ({"unknown": 1}, "unknown"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": " "}]},
            "messages[1].content",
        ),
        ({"messages": [{"role": "user", "content": "x" * 10_001}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"messages": "hello"}, "messages"),
    ],
)
async def test_create_validation_names_the_field(
    client: httpx.AsyncClient, auth: Auth, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/conversations", json=body, headers=auth())
    assert_error(response, 400, "validation_error", field)
    page = (await client.get("/v1/conversations", headers=auth())).json()
    assert page["data"] == []  # nothing half-written


async def test_invalid_json_and_wrong_type_body(client: httpx.AsyncClient, auth: Auth) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    assert_error(
        await client.post("/v1/conversations", content=b"{nope", headers=headers),
        400,
        "validation_error",
        "body",
    )
    assert_error(
        await client.post("/v1/conversations", json=[1, 2], headers=auth()),
        400,
        "validation_error",
    )


async def test_pagination_across_pages(client: httpx.AsyncClient, auth: Auth) -> None:
    ids = [(await _create(client, auth, title=f"c{i}"))["id"] for i in range(7)]
    await _create(client, auth, user="bob", title="not alice's")
    seen: list[int] = []
    cursor = None
    pages = 0
    for _ in range(len(ids) + 1):  # bounded: a repeating cursor fails, not hangs
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["after"] = cursor
        page = (await client.get("/v1/conversations", params=params, headers=auth())).json()
        pages += 1
        seen += [c["id"] for c in page["data"]]
        assert len(page["data"]) <= 3
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    else:
        pytest.fail("paging did not end")
    assert pages == 3
    assert seen == list(reversed(ids))  # most recently active first, each exactly once


async def test_listing_follows_activity(client: httpx.AsyncClient, auth: Auth) -> None:
    first = await _create(client, auth, title="first")
    await _create(client, auth, title="second")
    await client.post(
        f"/v1/conversations/{first['id']}/messages",
        json={"role": "user", "content": "bump"},
        headers=auth(),
    )
    page = (await client.get("/v1/conversations", headers=auth())).json()
    assert [c["title"] for c in page["data"]] == ["first", "second"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"after": "not-a-cursor"}, "cursor"),
        ({"after": ""}, "after"),
    ],
)
async def test_list_validation(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/conversations", params=params, headers=auth())
    assert_error(response, 400, "validation_error", field)


async def test_update_partial_and_clear(client: httpx.AsyncClient, auth: Auth) -> None:
    conv = await _create(client, auth, title="old", metadata={"a": "1"})
    url = f"/v1/conversations/{conv['id']}"
    renamed = (await client.patch(url, json={"title": "new"}, headers=auth())).json()
    assert (renamed["title"], renamed["metadata"]) == ("new", {"a": "1"})
    cleared = (await client.patch(url, json={"metadata": None}, headers=auth())).json()
    assert (cleared["title"], cleared["metadata"]) == ("new", {})  # cleared reads as {}
    # OpenAI's update is a POST with the same body.
    posted = (await client.post(url, json={"metadata": {"b": "2"}}, headers=auth())).json()
    assert (posted["title"], posted["metadata"]) == ("new", {"b": "2"})
    unchanged = await client.patch(url, json={}, headers=auth())
    assert unchanged.status_code == 200 and unchanged.json()["title"] == "new"
    assert_error(
        await client.patch(url, json={"title": "t" * 300}, headers=auth()),
        400,
        "validation_error",
        "title",
    )


async def test_delete_conversation(client: httpx.AsyncClient, auth: Auth) -> None:
    conv = await _create(client, auth, messages=[{"role": "user", "content": "hi"}])
    url = f"/v1/conversations/{conv['id']}"
    response = await client.delete(url, headers=auth())
    assert response.json() == {"id": conv["id"], "object": "conversation.deleted", "deleted": True}
    assert_error(await client.get(url, headers=auth()), 404, "not_found")
    assert_error(await client.delete(url, headers=auth()), 404, "not_found")


async def test_other_users_conversation_is_404_like_missing(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    conv = await _create(client, auth, title="secret", messages=[{"role": "user", "content": "x"}])
    cid = conv["id"]
    missing = f"conv_{int(cid.removeprefix('conv_')) + 1000}"
    calls = [
        ("GET", "/v1/conversations/{}", None),
        ("PATCH", "/v1/conversations/{}", {"title": "mine now"}),
        ("GET", "/v1/conversations/{}/messages", None),
        ("POST", "/v1/conversations/{}/messages", {"role": "user", "content": "hi"}),
        (
            "POST",
            "/v1/conversations/{}/messages/batch",
            {"messages": [{"role": "user", "content": "a"}]},
        ),
        ("GET", "/v1/conversations/{}/history", None),
        ("DELETE", "/v1/conversations/{}/messages/last", None),
        ("DELETE", "/v1/conversations/{}/messages?after=0", None),
        ("DELETE", "/v1/conversations/{}", None),
    ]
    for method, template, body in calls:
        theirs = await client.request(
            method, template.format(cid), json=body, headers=auth("mallory")
        )
        absent = await client.request(
            method, template.format(missing), json=body, headers=auth("mallory")
        )
        assert_error(theirs, 404, "not_found")
        assert theirs.json()["error"]["message"] == f"conversation {cid} not found"
        assert absent.json()["error"]["message"] == f"conversation {missing} not found"
    # Nothing changed for the owner.
    after = (await client.get(f"/v1/conversations/{cid}", headers=auth())).json()
    assert after == conv
    assert (await client.get("/v1/conversations", headers=auth("mallory"))).json()["data"] == []


@pytest.mark.parametrize("bad", ["0", "-1", "abc", str(2**63), "conv_", "conv_x", "msg_1"])
async def test_bad_conversation_id_is_400(client: httpx.AsyncClient, auth: Auth, bad: str) -> None:
    response = await client.get(f"/v1/conversations/{bad}", headers=auth())
    assert_error(response, 400, "validation_error", "conversation_id")


async def test_erase_me(client: httpx.AsyncClient, auth: Auth) -> None:
    conv = await _create(client, auth, messages=[{"role": "user", "content": "hi"}])
    bob = await _create(client, auth, user="bob")
    response = await client.delete("/v1/users/me", headers=auth())
    assert response.json() == {"id": "alice", "object": "user.deleted", "deleted": True}
    assert_error(
        await client.get(f"/v1/conversations/{conv['id']}", headers=auth()), 404, "not_found"
    )
    again = await client.delete("/v1/users/me", headers=auth())
    assert again.json()["deleted"] is False
    still = await client.get(f"/v1/conversations/{bob['id']}", headers=auth("bob"))
    assert still.status_code == 200


@pytest.mark.parametrize("query", ["limt=5", "=x", "limit=5&colour=red"])
async def test_unknown_query_parameter_is_400(
    client: httpx.AsyncClient, auth: Auth, query: str
) -> None:
    response = await client.get(f"/v1/conversations?{query}", headers=auth())
    assert_error(response, 400, "validation_error")
    assert "unknown query parameter" in response.json()["error"]["message"]
    assert "after, limit" in response.json()["error"]["message"]


async def test_external_id_is_unique_per_user(client: httpx.AsyncClient, auth: Auth) -> None:
    conv = await _create(client, auth, external_id="sess-1")
    assert conv["external_id"] == "sess-1"
    response = await client.post(
        "/v1/conversations", json={"external_id": "sess-1"}, headers=auth()
    )
    assert_error(response, 409, "conflict")
    assert "external_id" in response.json()["error"]["message"]
    other = await _create(client, auth, user="bob", external_id="sess-1")
    assert other["id"] != conv["id"]


@pytest.mark.parametrize("depth", [33, 300, 20_000])
async def test_deeply_nested_metadata_is_a_400_and_nothing_is_stored(
    client: httpx.AsyncClient, auth: Auth, depth: int
) -> None:
    body = '{"title": "t", "metadata": {"a": ' + "[" * depth + "1" + "]" * depth + "}}"
    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post("/v1/conversations", content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] in {"validation_error", "bad_request"}
    if depth < 1000:  # parsed, then refused by the store's rule naming the field
        assert_error(response, 400, "validation_error", "metadata")
    listed = await client.get("/v1/conversations", headers=auth())
    assert listed.status_code == 200 and listed.json()["data"] == []
