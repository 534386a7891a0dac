"""Tokens of an identity provider, verified with its JWKS: served here by a local HTTP server
(no internet) that publishes RSA, EC and Ed25519 keys and rotates them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from convostore import AsyncStore
from convostore.config import Settings
from convostore.errors import ConfigurationError
from convostore.server import create_app
from convostore.types import utcnow
from tests.server.conftest import SECRET, assert_error
from tests.server.test_auth import BAD_HEADERS

ISSUER = "https://auth.example.test/"
AUDIENCE = "convostore-api"


class Key:
    """A signing key of the provider: private half for tokens, public half as a JWK."""

    def __init__(self, kid: str, kind: str) -> None:
        self.kid, self.kind = kid, kind
        if kind == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        elif kind == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            jwk = json.loads(OKPAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**jwk, "kid": kid, "use": "sig", "alg": kind}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        now = utcnow()
        full = {
            "sub": "alice",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + timedelta(minutes=10),
            **(claims or {}),
        }
        full = {k: v for k, v in full.items() if v is not None}
        return jwt.encode(
            full, self.private, algorithm=self.kind, headers={"kid": self.kid, **header}
        )


class Provider:
    """The identity provider's JWKS endpoint: ``publish`` rotates, ``fetches`` counts."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps({"keys": [k.jwk for k in provider.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, *keys: Key) -> None:
        self.keys = list(keys)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    p.thread.start()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {k: Key(f"{k.lower()}-1", k) for k in ("RS256", "ES256", "EdDSA")}


def jwks_settings(base: Settings, provider: Provider, **update: Any) -> Settings:
    return base.model_copy(
        update={
            "jwks_url": provider.url,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwks_refresh_cooldown": 0,
            **update,
        }
    )


@pytest.fixture
async def idp_client(
    settings: Settings, astore: AsyncStore, provider: Provider, keys: dict[str, Key]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the provider's JWKS configured (and the shared secret kept too)."""
    provider.publish(*keys.values())
    app = create_app(jwks_settings(settings, provider), store=astore)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kind", ["RS256", "ES256", "EdDSA"])
async def test_provider_tokens_are_accepted(
    idp_client: httpx.AsyncClient, keys: dict[str, Key], kind: str
) -> None:
    created = await idp_client.post(
        "/v1/conversations", json={"title": kind}, headers=bearer(keys[kind].token())
    )
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == "alice"


async def test_shared_secret_tokens_still_work_beside_the_jwks(
    idp_client: httpx.AsyncClient,
) -> None:
    now = utcnow()
    claims = {"sub": "bob", "iss": ISSUER, "aud": AUDIENCE, "exp": now + timedelta(minutes=1)}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert (await idp_client.get("/v1/conversations", headers=bearer(token))).status_code == 200


def _hs256_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """What PyJWT refuses to make: an HS256 token whose HMAC key is a public key's PEM."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


BAD = {
    "wrong aud": lambda k: k["RS256"].token({"aud": "another-api"}),
    "no aud": lambda k: k["RS256"].token({"aud": None}),
    "wrong iss": lambda k: k["ES256"].token({"iss": "https://evil.example/"}),
    "no exp": lambda k: k["RS256"].token({"exp": None}),
    "exp 10**30": lambda k: k["RS256"].token({"exp": 10**30}),
    "lives 2 days": lambda k: k["ES256"].token({"exp": utcnow() + timedelta(days=2)}),
    "expired": lambda k: k["EdDSA"].token({"exp": utcnow() - timedelta(seconds=5)}),
    "nbf in the future": lambda k: k["RS256"].token({"nbf": utcnow() + timedelta(hours=1)}),
    "iat in the future": lambda k: k["RS256"].token({"iat": utcnow() + timedelta(hours=1)}),
    "no sub": lambda k: k["RS256"].token({"sub": None}),
    "unknown kid": lambda k: k["RS256"].token(kid="never-published"),
    "no kid": lambda k: jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": utcnow() + timedelta(minutes=1)},
        k["RS256"].private,
        algorithm="RS256",
    ),
    "kid of another key type": lambda k: k["ES256"].token(kid=k["RS256"].kid),
    "alg none": lambda k: jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}, None, algorithm="none"
    ),
    "HS256 with the RSA public key as secret": lambda k: _hs256_with(
        k["RS256"].public_pem(),
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**31},
        k["RS256"].kid,
    ),
    "HS256 with the RSA JWK as secret": lambda k: _hs256_with(
        json.dumps(k["RS256"].jwk).encode(),
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**31},
        k["RS256"].kid,
    ),
    "signed by an unpublished key with a published kid": lambda k: Key(
        k["RS256"].kid, "RS256"
    ).token(),
}


@pytest.mark.parametrize("make", BAD.values(), ids=BAD.keys())
async def test_bad_provider_tokens_are_401(
    idp_client: httpx.AsyncClient, keys: dict[str, Key], make: Any
) -> None:
    response = await idp_client.post("/v1/conversations", json={}, headers=bearer(make(keys)))
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    page = await idp_client.get("/v1/conversations", headers=bearer(keys["RS256"].token()))
    assert page.json()["data"] == []


@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
async def test_the_shared_secret_attack_suite_is_still_401(
    idp_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await idp_client.get("/v1/conversations", headers=headers)
    assert_error(response, 401, "unauthorized")


async def test_hs256_with_the_public_key_is_401_with_jwks_only(
    settings: Settings, astore: AsyncStore, provider: Provider, keys: dict[str, Key]
) -> None:
    """No shared secret at all: HS256 is simply not an accepted algorithm."""
    provider.publish(*keys.values())
    only_jwks = jwks_settings(settings, provider, jwt_secret_key=None)
    transport = httpx.ASGITransport(app=create_app(only_jwks, store=astore))
    forged = BAD["HS256 with the RSA public key as secret"](keys)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/conversations", headers=bearer(forged))
        assert_error(response, 401, "unauthorized")
        assert "'HS256' is not accepted" in response.json()["error"]["message"]
        good = await client.get("/v1/conversations", headers=bearer(keys["RS256"].token()))
        assert good.status_code == 200


async def test_rotation_new_kid_is_fetched_and_rotated_out_key_is_refused(
    idp_client: httpx.AsyncClient, provider: Provider, keys: dict[str, Key]
) -> None:
    old = keys["RS256"]
    assert (await idp_client.get("/v1/conversations", headers=bearer(old.token()))).is_success
    new = Key("rs256-2", "RS256")
    provider.publish(new, keys["ES256"])  # the provider rotates: the old key is gone
    fetches = provider.fetches
    response = await idp_client.get("/v1/conversations", headers=bearer(new.token()))
    assert response.status_code == 200, response.text
    assert provider.fetches == fetches + 1  # the unknown kid refetched the set, once
    again = await idp_client.get("/v1/conversations", headers=bearer(new.token()))
    assert again.status_code == 200 and provider.fetches == fetches + 1  # cached now
    refused = await idp_client.get("/v1/conversations", headers=bearer(old.token()))
    assert_error(refused, 401, "unauthorized")
    assert "unknown key" in refused.json()["error"]["message"]


async def test_unknown_kids_refetch_at_most_once_per_cooldown(
    settings: Settings, astore: AsyncStore, provider: Provider, keys: dict[str, Key]
) -> None:
    provider.publish(*keys.values())
    app = create_app(jwks_settings(settings, provider, jwks_refresh_cooldown=300), store=astore)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.get("/v1/conversations", headers=bearer(keys["ES256"].token()))
        assert ok.status_code == 200
        fetches = provider.fetches
        for i in range(20):
            token = keys["RS256"].token(kid=f"made-up-{i}")
            response = await client.get("/v1/conversations", headers=bearer(token))
            assert_error(response, 401, "unauthorized")
    assert provider.fetches == fetches  # fetched just now: no refetch during the cooldown


async def test_unreachable_jwks_is_503_not_a_crash(
    settings: Settings, astore: AsyncStore, keys: dict[str, Key]
) -> None:
    unreachable = settings.model_copy(
        update={"jwks_url": "http://127.0.0.1:9/jwks.json", "jwt_audience": AUDIENCE}
    )
    transport = httpx.ASGITransport(app=create_app(unreachable, store=astore))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/conversations", headers=bearer(keys["RS256"].token()))
    assert_error(response, 503, "unavailable")


def test_jwks_algorithms_must_be_asymmetric(settings: Settings, provider: Provider) -> None:
    with pytest.raises(ConfigurationError, match="CONVOSTORE_JWKS_ALGORITHMS"):
        create_app(jwks_settings(settings, provider, jwks_algorithms="RS256,HS256"))
