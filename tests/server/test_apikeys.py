"""API keys: created (CLI and library), used over HTTP, acting for users, revoked."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from convostore import Store
from convostore.apikeys import (
    create_api_key,
    hash_key,
    list_api_keys,
    looks_like_key,
    revoke_api_key,
)
from convostore.cli import app as cli
from convostore.errors import NotFoundError, ValidationError
from convostore.models import api_keys_table
from convostore.types import utcnow
from tests.server.conftest import Auth, assert_error


def bearer(key: str, act_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if act_for is not None:
        headers["X-Convostore-User"] = act_for
    return headers


def test_keys_are_random_and_stored_hashed(store: Store) -> None:
    key, info = create_api_key(store, label="backend", user_id="svc")
    other, _ = create_api_key(store, label="backend", user_id="svc")
    assert key != other and looks_like_key(key) and len(key) > 40
    with store.engine.connect() as conn:
        rows = conn.execute(api_keys_table.select()).mappings().all()
    assert {r["key_hash"] for r in rows} == {hash_key(key), hash_key(other)}
    assert all(key not in str(dict(r)) for r in rows)  # never the key itself
    assert info.prefix == key[: len(info.prefix)] and info.label == "backend"
    assert info.created_at is not None and info.last_used_at is None and not info.revoked


def test_a_key_needs_a_label_and_a_user_or_the_right(store: Store) -> None:
    with pytest.raises(ValidationError, match="label"):
        create_api_key(store, label="  ", user_id="svc")
    with pytest.raises(ValidationError, match="user_id"):
        create_api_key(store, label="x")
    with pytest.raises(ValidationError, match="user_id"):
        create_api_key(store, label="x", user_id="")
    with pytest.raises(NotFoundError):
        revoke_api_key(store, 12345)


async def test_key_acts_as_its_user(client: httpx.AsyncClient, store: Store) -> None:
    key, _ = create_api_key(store, label="svc", user_id="svc-user")
    created = await client.post("/v1/conversations", json={"title": "k"}, headers=bearer(key))
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == "svc-user"
    # A key without the right may not name another user.
    other = await client.get("/v1/conversations", headers=bearer(key, act_for="alice"))
    assert_error(other, 403, "forbidden")


async def test_key_with_the_right_acts_for_the_named_user_and_is_logged(
    client: httpx.AsyncClient, store: Store, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    key, info = create_api_key(store, label="chat-backend", can_act_for_users=True)
    with caplog.at_level(logging.INFO, logger="convostore"):
        created = await client.post(
            "/v1/conversations", json={"title": "for bob"}, headers=bearer(key, act_for="bob")
        )
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == "bob"
    logged = [r for r in caplog.records if "acting for user" in r.getMessage()]
    assert len(logged) == 1
    assert "chat-backend" in logged[0].getMessage() and "'bob'" in logged[0].getMessage()
    assert logged[0].name.startswith("convostore")
    # bob sees it with his own token; alice does not.
    mine = (await client.get("/v1/conversations", headers=auth("bob"))).json()["data"]
    assert [c["title"] for c in mine] == ["for bob"]
    assert (await client.get("/v1/conversations", headers=auth("alice"))).json()["data"] == []
    # Without a header such a key names nobody; a bad user id in the header is a 400.
    no_user = await client.get("/v1/conversations", headers=bearer(key))
    assert_error(no_user, 400, "validation_error", "X-Convostore-User")
    bad = await client.get("/v1/conversations", headers=bearer(key, act_for=" "))
    assert_error(bad, 400, "validation_error", "X-Convostore-User")


async def test_the_header_is_refused_with_a_jwt(client: httpx.AsyncClient, auth: Auth) -> None:
    headers = {**auth("alice"), "X-Convostore-User": "bob"}
    response = await client.get("/v1/conversations", headers=headers)
    assert_error(response, 403, "forbidden")


async def test_unknown_and_revoked_keys_are_401(client: httpx.AsyncClient, store: Store) -> None:
    key, info = create_api_key(store, label="svc", user_id="svc")
    assert (await client.get("/v1/conversations", headers=bearer(key))).status_code == 200
    unknown = await client.get("/v1/conversations", headers=bearer(key[:-2] + "xx"))
    assert_error(unknown, 401, "unauthorized")
    revoked = revoke_api_key(store, info.id)
    assert revoked.revoked and revoke_api_key(store, info.id).revoked_at == revoked.revoked_at
    response = await client.post("/v1/conversations", json={}, headers=bearer(key))
    assert_error(response, 401, "unauthorized")
    assert "revoked" in response.json()["error"]["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert list_api_keys(store) == []
    assert [k.id for k in list_api_keys(store, include_revoked=True)] == [info.id]


async def test_last_used_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient, store: Store
) -> None:
    key, info = create_api_key(store, label="svc", user_id="svc")
    for _ in range(5):
        assert (await client.get("/v1/conversations", headers=bearer(key))).status_code == 200
    (first,) = list_api_keys(store)
    assert first.last_used_at is not None
    for _ in range(3):
        await client.get("/v1/conversations", headers=bearer(key))
    assert list_api_keys(store)[0].last_used_at == first.last_used_at  # throttled
    # A minute later (moved back in the database), the next use records itself again.
    with store.engine.begin() as conn:
        earlier = utcnow() - timedelta(minutes=2)
        conn.execute(update(api_keys_table).values(last_used_at=earlier))
    await client.get("/v1/conversations", headers=bearer(key))
    assert list_api_keys(store)[0].last_used_at > first.last_used_at  # type: ignore[operator]


async def test_keys_cli_create_list_revoke(
    client: httpx.AsyncClient, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    url = ["--database-url", db_url]
    made = runner.invoke(cli, ["keys", "create", "--label", "ops [bot]", "--act-for-users", *url])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert looks_like_key(key) and "shown only now" in made.stderr
    used = await client.post("/v1/conversations", json={}, headers=bearer(key, act_for="dora"))
    assert used.status_code == 201 and used.json()["user_id"] == "dora"

    listed = runner.invoke(cli, ["keys", "list", *url])
    assert listed.exit_code == 0, listed.output
    assert "ops [bot]" in listed.stdout and key[:12] in listed.stdout and key not in listed.stdout

    revoked = runner.invoke(cli, ["keys", "revoke", "1", *url])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.stdout
    response = await client.get("/v1/conversations", headers=bearer(key, act_for="dora"))
    assert_error(response, 401, "unauthorized")
    assert "ops [bot]" not in runner.invoke(cli, ["keys", "list", *url]).stdout
    assert "ops [bot]" in runner.invoke(cli, ["keys", "list", "--all", *url]).stdout

    missing = runner.invoke(cli, ["keys", "revoke", "99", *url])
    assert missing.exit_code == 1 and "not found" in missing.stderr
    bare = runner.invoke(cli, ["keys", "create", "--label", "x", *url])
    assert bare.exit_code == 1 and "act for users" in bare.stderr
