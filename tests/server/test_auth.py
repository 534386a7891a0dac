"""Every way a request can fail authentication gets 401 + WWW-Authenticate: Bearer."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest

from convostore import AsyncStore
from convostore.config import Settings
from convostore.server import create_app
from convostore.types import utcnow
from tests.server.conftest import SECRET, Auth, assert_error


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(claims: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    # A valid exp unless the case is about exp: each attack fails for its own reason.
    claims = {"exp": utcnow() + timedelta(minutes=5), **claims}
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


async def test_token_without_exp_is_refused(client: httpx.AsyncClient) -> None:
    token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    response = await client.get("/v1/conversations", headers=_bearer(token))
    assert_error(response, 401, "unauthorized")
    assert "'exp'" in response.json()["error"]["message"]


async def test_exp_can_be_made_optional_for_development(
    settings: Settings, astore: AsyncStore
) -> None:
    app = create_app(settings.model_copy(update={"jwt_require_exp": False}), store=astore)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        token = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
        response = await client.get("/v1/conversations", headers=_bearer(token))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 10**30}, "lives too long"),
        ({"iat": 0, "exp": 10**10}, "lives too long"),
        ({"exp": utcnow() + timedelta(days=2)}, "lives too long"),
        ({"iat": utcnow() + timedelta(hours=1)}, "not valid yet"),
        ({"aud": "another-service"}, "aud"),
        ({"iss": "https://someone.example"}, None),
    ],
    ids=["exp 10**30", "iat long ago", "exp in 2 days", "iat in the future", "aud", "iss"],
)
async def test_claims_beyond_the_signature_are_checked(
    client: httpx.AsyncClient, claims: dict[str, object], why: str | None
) -> None:
    token = _token({"sub": "b", **claims})
    response = await client.get("/v1/conversations", headers=_bearer(token))
    if why is None:  # no issuer configured: an iss claim is not checked
        assert response.status_code == 200
        return
    assert_error(response, 401, "unauthorized")
    assert why in response.json()["error"]["message"]


async def test_issuer_and_audience_when_configured(settings: Settings, astore: AsyncStore) -> None:
    configured = settings.model_copy(
        update={"jwt_issuer": "https://auth.example", "jwt_audience": "convostore"}
    )
    transport = httpx.ASGITransport(app=create_app(configured, store=astore))
    good = {"sub": "bob", "iss": "https://auth.example", "aud": "convostore"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.get("/v1/conversations", headers=_bearer(_token(good)))
        assert ok.status_code == 200
        for bad in ({"iss": "https://evil.example"}, {"aud": "other"}, {"aud": None}):
            claims = {k: v for k, v in {**good, **bad}.items() if v is not None}
            response = await client.get("/v1/conversations", headers=_bearer(_token(claims)))
            assert_error(response, 401, "unauthorized")


async def test_user_claim_is_configurable(settings: Settings, astore: AsyncStore) -> None:
    app = create_app(settings.model_copy(update={"jwt_user_claim": "uid"}), store=astore)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        created = await client.post(
            "/v1/conversations", json={}, headers=_bearer(_token({"uid": "carol", "sub": "x"}))
        )
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == "carol"
        no_claim = await client.get("/v1/conversations", headers=_bearer(_token({"sub": "x"})))
        assert_error(no_claim, 401, "unauthorized")
        assert "'uid'" in no_claim.json()["error"]["message"]


async def test_leeway_accepts_a_token_just_expired(settings: Settings, astore: AsyncStore) -> None:
    app = create_app(settings.model_copy(update={"jwt_leeway": 60}), store=astore)
    transport = httpx.ASGITransport(app=app)
    just = _token({"sub": "bob", "exp": utcnow() - timedelta(seconds=5)})
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/v1/conversations", headers=_bearer(just))).status_code == 200


async def test_expired_message_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/conversations", headers=BAD_HEADERS["expired"])
    assert "expired" in response.json()["error"]["message"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_health_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
