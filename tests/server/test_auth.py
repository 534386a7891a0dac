"""Every way a request can fail authentication gets 401 + WWW-Authenticate: Bearer."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest

from convostore.types import utcnow
from tests.server.conftest import SECRET, Auth, assert_error


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(claims: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


BAD_HEADERS = {
    "missing header": {},
    "empty header": {"Authorization": ""},
    "wrong scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "scheme only": {"Authorization": "Bearer"},
    "malformed token": _bearer("not-a-jwt"),
    "garbage segments": _bearer("a.b.c"),
    "expired": _bearer(_token({"sub": "alice", "exp": utcnow() - timedelta(seconds=5)})),
    "wrong signature": _bearer(_token({"sub": "alice"}, secret="another-secret-" + "x" * 64)),
    "no sub": _bearer(_token({"name": "alice"})),
    "empty sub": _bearer(_token({"sub": ""})),
    "blank sub": _bearer(_token({"sub": "   "})),
    "sub too long": _bearer(_token({"sub": "a" * 256})),
    "non-string sub": _bearer(_token({"sub": 42})),
    "wrong algorithm": _bearer(_token({"sub": "alice"}, algorithm="HS512")),
    "alg none": _bearer(jwt.encode({"sub": "alice"}, "", algorithm="none")),
    "not yet valid": _bearer(_token({"sub": "alice", "nbf": utcnow() + timedelta(hours=1)})),
}


@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/conversations"), ("POST", "/v1/conversations"), ("DELETE", "/v1/users/me")],
)
async def test_auth_failures_are_401(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = await client.request(method, path, headers=headers, json={})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_failed_auth_writes_nothing(client: httpx.AsyncClient, auth: Auth) -> None:
    await client.post("/v1/conversations", json={"title": "x"}, headers=BAD_HEADERS["expired"])
    page = (await client.get("/v1/conversations", headers=auth("alice"))).json()
    assert page["data"] == []


async def test_valid_token_and_scheme_is_case_insensitive(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    token = auth("alice")["Authorization"].split()[1]
    response = await client.get("/v1/conversations", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"data": [], "has_more": False, "next_cursor": None}


async def test_token_without_exp_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/conversations", headers=_bearer(_token({"sub": "bob"})))
    assert response.status_code == 200


async def test_expired_message_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/conversations", headers=BAD_HEADERS["expired"])
    assert "expired" in response.json()["error"]["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_health_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
