"""Fixtures for the REST API: an app over the test database, an HTTP client, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI

from convostore import AsyncStore
from convostore.config import Settings
from convostore.db import make_engine
from convostore.migrate import upgrade
from convostore.server import create_app
from convostore.server.auth import create_access_token
from tests.conftest import POOLED, pooled_url

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
    """The one error shape: {"error": {"code", "message", "type", "param", "field"?}} (ours
    and OpenAI's envelope), naming the field."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    assert body["error"]["param"] == body["error"].get("field")
    if field is not None:
        assert body["error"]["field"] == field
        assert field in body["error"]["message"]


#: The databases a real ``convostore serve`` is started on, one per test module.
SERVED_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), POOLED]


@pytest.fixture(scope="module", params=SERVED_BACKENDS)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: Callable[[str], str],
) -> Iterator[str]:
    """A real ``convostore serve`` process for the module on each database (a fresh one:
    SQLite, PostgreSQL, and PostgreSQL through PgBouncer in transaction mode): its ``/v1``
    base URL, what an OpenAI client's ``base_url`` is."""
    from tests.realserver import running_server

    workdir = tmp_path_factory.mktemp(f"served-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'convostore.db'}"
    else:
        url = pg_database(f"convostore_served_{Path(str(request.node.path)).stem}")
    if request.param == "pgbouncer":  # migrated directly: a pooled URL cannot migrate
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        url = pooled_url(url, request.getfixturevalue("pgbouncer_port"))
    with running_server(workdir, url, secret=SECRET) as base:
        yield f"{base}/v1"


def token(user: str) -> str:
    """A bearer token for ``user``: an OpenAI client's ``api_key``."""
    return create_access_token(user, secret=SECRET)
