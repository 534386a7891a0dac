"""Rate limits: per user and per key, reads and writes apart; 429 with Retry-After, and
nothing past the limit is written, even when the requests arrive all at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from convostore import AsyncStore, Store
from convostore.apikeys import create_api_key
from convostore.config import Settings
from convostore.errors import ConfigurationError
from convostore.server import create_app
from tests.realserver import running_server
from tests.server.conftest import SECRET, Auth, assert_error


@pytest.fixture
async def limited(settings: Settings, astore: AsyncStore) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "rate_limit_user_writes": "5/minute",
            "rate_limit_user_reads": "8/minute",
            "rate_limit_key_writes": "3/minute",
            "rate_limit_key_reads": "",
        }
    )
    transport = httpx.ASGITransport(app=create_app(configured, store=astore))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def assert_rate_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.json()["error"]["retry_after"] == retry_after


async def test_concurrent_writes_past_the_limit_are_429_and_not_written(
    limited: httpx.AsyncClient, auth: Auth, store: Store
) -> None:
    headers = auth("alice")
    responses = await asyncio.gather(
        *(
            limited.post("/v1/conversations", json={"title": f"c{i}"}, headers=headers)
            for i in range(20)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [429] * 15
    for r in responses:
        if r.status_code == 429:
            assert_rate_limited(r)
    assert len(store.list_conversations("alice", limit=100).data) == 5
    # Reads are counted apart: still allowed; another user has a budget of their own.
    assert (await limited.get("/v1/conversations", headers=headers)).status_code == 200
    other = await limited.post("/v1/conversations", json={}, headers=auth("bob"))
    assert other.status_code == 201


async def test_reads_have_their_own_limit(limited: httpx.AsyncClient, auth: Auth) -> None:
    headers = auth("carol")
    codes = [
        (await limited.get("/v1/conversations", headers=headers)).status_code for _ in range(10)
    ]
    assert codes == [200] * 8 + [429] * 2
    assert (await limited.post("/v1/conversations", json={}, headers=headers)).status_code == 201


async def test_a_key_has_its_limit_and_each_user_it_acts_for_has_theirs(
    limited: httpx.AsyncClient, store: Store
) -> None:
    key, _ = create_api_key(store, label="backend", can_act_for_users=True)

    def as_user(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "X-Convostore-User": user}

    results = await asyncio.gather(
        *(limited.post("/v1/conversations", json={}, headers=as_user(f"u{i}")) for i in range(6))
    )
    assert sorted(r.status_code for r in results) == [201] * 3 + [429] * 3  # the key's 3/minute
    stored = sum(len(store.list_conversations(f"u{i}").data) for i in range(6))
    assert stored == 3


async def test_health_is_never_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(20):
        assert (await limited.get("/healthz")).status_code == 200


@pytest.mark.parametrize("value", ["many", "5/fortnight", "x/minute"])
def test_bad_limits_refuse_to_start(settings: Settings, value: str) -> None:
    with pytest.raises(ConfigurationError, match="CONVOSTORE_RATE_LIMIT_USER_WRITES"):
        create_app(settings.model_copy(update={"rate_limit_user_writes": value}))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_limits_hold_on_a_real_server_under_parallel_requests(
    tmp_path: Path, db_url: str, auth: Auth
) -> None:
    env = {"CONVOSTORE_RATE_LIMIT_USER_WRITES": "4/minute"}
    with running_server(tmp_path, db_url, secret=SECRET, env=env) as base:

        async def burst() -> list[Any]:
            async with httpx.AsyncClient(base_url=base) as c:
                return await asyncio.gather(
                    *(
                        c.post("/v1/conversations", json={"title": str(i)}, headers=auth("eve"))
                        for i in range(12)
                    )
                )

        responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [201] * 4 + [429] * 8
    with Store(db_url) as store:
        assert len(store.list_conversations("eve").data) == 4
