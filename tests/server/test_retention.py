"""REST: retention fields on conversations, PATCH hold/retention, the user's policy, and
the background purge of ``serve --purge-every``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from convostore import AsyncStore
from convostore.config import Settings
from convostore.server import create_app
from convostore.server.app import _purging
from tests.server.conftest import Auth, assert_error

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rstore(db_url: str, clock: Clock) -> AsyncIterator[AsyncStore]:
    async with AsyncStore(db_url, clock=clock) as s:
        yield s


@pytest.fixture
async def rclient(settings: Settings, rstore: AsyncStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, store=rstore))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_create_temporary_and_with_a_policy(
    rclient: httpx.AsyncClient, auth: Auth, clock: Clock
) -> None:
    r = await rclient.post("/v1/conversations", json={"title": "t"}, headers=auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["expires_at"], body["temporary"], body["hold"], body["retention"]) == (
        None,
        False,
        False,
        None,
    )
    assert "retention_seconds" not in body
    r = await rclient.post("/v1/conversations", json={"temporary": True}, headers=auth())
    assert r.json()["temporary"] and r.json()["retention"] == "1d"
    r = await rclient.post("/v1/conversations", json={"retention": "720h"}, headers=auth())
    conv = r.json()
    assert conv["retention"] == "30d"
    assert conv["expires_at"] == int((T0 + timedelta(days=30)).timestamp())  # Unix seconds
    bad = await rclient.post("/v1/conversations", json={"retention": "soon"}, headers=auth())
    assert_error(bad, 400, "validation_error", "retention")


async def test_patch_hold_and_retention_and_expiry(
    rclient: httpx.AsyncClient, auth: Auth, clock: Clock
) -> None:
    r = await rclient.post("/v1/conversations", json={"retention": "1h"}, headers=auth())
    cid = r.json()["id"]
    url = f"/v1/conversations/{cid}"
    r = await rclient.patch(url, json={"hold": True}, headers=auth())
    assert r.status_code == 200 and r.json()["hold"] is True, r.text
    clock.now = T0 + timedelta(hours=2)
    assert (await rclient.get(url, headers=auth())).status_code == 200
    r = await rclient.patch(url, json={"hold": False}, headers=auth())
    assert r.json()["hold"] is False
    assert_error(await rclient.get(url, headers=auth()), 404, "not_found")
    assert_error(await rclient.get(f"{url}/messages", headers=auth()), 404, "not_found")
    assert_error(await rclient.patch(url, json={"hold": True}, headers=auth()), 404, "not_found")
    listed = await rclient.get("/v1/conversations", headers=auth())
    assert listed.json()["data"] == []
    r = await rclient.post("/v1/conversations", json={}, headers=auth())
    other = f"/v1/conversations/{r.json()['id']}"
    r = await rclient.patch(other, json={"retention": "7d"}, headers=auth())
    assert r.json()["retention"] == "7d"
    r = await rclient.patch(other, json={"retention": "none"}, headers=auth())
    assert r.json()["retention"] is None and r.json()["expires_at"] is None
    bad = await rclient.patch(other, json={"hold": None}, headers=auth())
    assert_error(bad, 400, "validation_error", "hold")


async def test_the_users_own_policy(rclient: httpx.AsyncClient, auth: Auth) -> None:
    r = await rclient.get("/v1/users/me/retention", headers=auth())
    assert r.json() == {"retention": None, "temporary_retention": None}
    r = await rclient.patch(
        "/v1/users/me/retention", json={"temporary_retention": "2h"}, headers=auth()
    )
    assert r.json() == {"retention": None, "temporary_retention": "2h"}, r.text
    r = await rclient.post("/v1/conversations", json={"temporary": True}, headers=auth())
    assert r.json()["retention"] == "2h"
    r = await rclient.post("/v1/conversations", json={"temporary": True}, headers=auth("bob"))
    assert r.json()["retention"] == "1d"
    bad = await rclient.patch("/v1/users/me/retention", json={"retention": "x"}, headers=auth())
    assert_error(bad, 400, "validation_error", "retention")


async def test_background_purge(rstore: AsyncStore, clock: Clock) -> None:
    conv = await rstore.create_conversation("alice", retention="1h")
    clock.now = T0 + timedelta(hours=2)
    async with _purging(rstore, 0.0005):  # every 30 ms
        for _ in range(200):
            if not (await rstore.purge_expired(dry_run=True)).conversations:
                break
            await asyncio.sleep(0.02)
    assert (await rstore.purge_expired(dry_run=True)).conversations == 0
    clock.now = T0
    with pytest.raises(Exception, match="not found"):
        await rstore.get_conversation("alice", conv.id)
