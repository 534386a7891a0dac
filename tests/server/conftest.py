"""Fixtures for the REST API: an app over the test database, an HTTP client, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI

from convostore import AsyncStore
from convostore.config import Settings
from convostore.server import create_app
from convostore.server.auth import create_access_token

SECRET = "test-secret-" + "0123456789abcdef" * 4  # long enough for HS512 too

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, jwt_secret_key=SECRET, max_body_bytes=64 * 1024)


@pytest.fixture
def app(settings: Settings, astore: AsyncStore) -> FastAPI:
    return create_app(settings, store=astore)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def auth() -> Auth:
    """``auth("alice")`` -> headers with a valid bearer token for alice."""

    def headers(user: str = "alice", **kwargs: object) -> dict[str, str]:
        token = create_access_token(user, secret=SECRET, **kwargs)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    return headers


class ResponseLike(Protocol):
    """httpx's and the TestClient's responses."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_error(response: ResponseLike, status: int, code: str, field: str | None = None) -> None:
    """The one error shape: {"error": {"code", "message", "field"?}}, naming the field."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field
        assert field in body["error"]["message"]
