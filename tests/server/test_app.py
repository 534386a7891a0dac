"""The application itself: start-up rules, body limits, readiness, error shape, extras."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from convostore import AsyncStore
from convostore.config import Settings
from convostore.errors import ConfigurationError, MissingExtraError
from convostore.server import create_app
from convostore.server.auth import create_access_token
from convostore.server.errors import STATUS_BY_ERROR
from tests.server.conftest import SECRET, Auth, assert_error


@pytest.mark.parametrize(
    ("secret", "algorithm", "match"),
    [
        (None, "HS256", "JWT_SECRET_KEY is not set"),
        ("", "HS256", "JWT_SECRET_KEY is not set"),
        ("short", "HS256", "at least 32 bytes"),
        ("x" * 40, "HS512", "at least 64 bytes"),
        (SECRET, "RS256", "JWT_ALGORITHM"),
        (SECRET, "none", "JWT_ALGORITHM"),
    ],
)
def test_refuses_to_start_without_a_usable_secret(
    secret: str | None, algorithm: str, match: str
) -> None:
    settings = Settings(jwt_secret_key=secret, jwt_algorithm=algorithm)
    with pytest.raises(ConfigurationError, match=match):
        create_app(settings)


def test_lifespan_opens_and_closes_its_store(db_url: str, auth: Auth) -> None:
    app = create_app(Settings(database_url=db_url, jwt_secret_key=SECRET))
    with TestClient(app) as client:
        assert isinstance(app.state.store, AsyncStore)
        created = client.post("/v1/conversations", json={"title": "x"}, headers=auth())
        assert created.status_code == 201
        assert client.get("/readyz").json() == {"status": "ready"}
    assert app.state.store is None


def test_store_unopened_is_503_not_500() -> None:
    app = create_app(Settings(jwt_secret_key=SECRET))
    client = TestClient(app)  # no `with`: the lifespan never runs
    assert_error(client.get("/readyz"), 503, "unavailable")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_readyz_is_503_when_the_database_is_down(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        garbage = tmp_path / "not-a-database.db"
        garbage.write_bytes(b"this is not a SQLite file" * 100)
        url = f"sqlite:///{garbage}"
    else:
        url = "postgresql://root@127.0.0.1:1/nothing"  # nothing listens on port 1
    async with AsyncStore(url) as store:
        app = create_app(Settings(jwt_secret_key=SECRET), store=store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/readyz")
    assert_error(response, 503, "unavailable")
    assert "database" in response.json()["error"]["message"]


async def test_body_over_limit_by_content_length(client: httpx.AsyncClient, auth: Auth) -> None:
    big = {"title": "t", "messages": [{"role": "user", "content": "x" * (64 * 1024)}]}
    response = await client.post("/v1/conversations", json=big, headers=auth())
    assert_error(response, 413, "payload_too_large", "body")
    assert (await client.get("/v1/conversations", headers=auth())).json()["data"] == []


async def test_body_over_limit_when_streamed_without_length(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "t", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}]}'

    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post("/v1/conversations", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large", "body")


async def test_body_under_limit_is_fine(client: httpx.AsyncClient, auth: Auth) -> None:
    message = {"role": "user", "content": "hi", "metadata": {"blob": "x" * (32 * 1024)}}
    ok = {"title": "t", "messages": [message]}
    assert (await client.post("/v1/conversations", json=ok, headers=auth())).status_code == 201


async def test_unknown_route_and_method_use_the_error_shape(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    assert_error(await client.get("/v2/nothing", headers=auth()), 404, "not_found")
    assert_error(await client.put("/v1/conversations", headers=auth()), 405, "method_not_allowed")


@pytest.fixture
def broken_sqlite(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A SQLite database whose messages table is gone: every message query fails."""
    target = tmp_path / "broken.db"
    target.write_bytes(sqlite_template.read_bytes())
    engine = create_engine(f"sqlite:///{target}")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE messages"))
    engine.dispose()
    yield f"sqlite:///{target}"


async def test_unexpected_failure_is_500_without_a_stack_trace(
    broken_sqlite: str, auth: Auth
) -> None:
    async with AsyncStore(broken_sqlite) as store:
        app = create_app(Settings(jwt_secret_key=SECRET), store=store)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            conv = await client.post("/v1/conversations", json={}, headers=auth())
            response = await client.get(
                f"/v1/conversations/{conv.json()['id']}/messages", headers=auth()
            )
    assert_error(response, 500, "internal_error")
    assert (
        "Traceback" not in response.text and "messages" not in response.json()["error"]["message"]
    )


def test_error_table_is_the_documented_one() -> None:
    from convostore.errors import ConflictError, NotFoundError, UnavailableError, ValidationError

    assert STATUS_BY_ERROR == {
        NotFoundError: 404,
        ValidationError: 400,
        ConflictError: 409,
        UnavailableError: 503,
    }


def test_openapi_documents_every_route_and_bearer_auth() -> None:
    schema = create_app(Settings(jwt_secret_key=SECRET)).openapi()
    paths = schema["paths"]
    assert {
        "/v1/conversations",
        "/v1/conversations/{conversation_id}",
        "/v1/conversations/{conversation_id}/messages",
        "/v1/conversations/{conversation_id}/messages/batch",
        "/v1/conversations/{conversation_id}/messages/last",
        "/v1/conversations/{conversation_id}/history",
        "/v1/users/me",
        "/healthz",
        "/readyz",
    } <= set(paths)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in paths["/v1/conversations"]["get"]["responses"]
    assert "ErrorResponse" in schema["components"]["schemas"]


def test_importing_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        m for m in sys.modules if m == "convostore.server" or m.startswith("convostore.server.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(MissingExtraError, match=r"convostore\[server\]") as info:
        importlib.import_module("convostore.server")
    assert info.value.extra == "server"


@pytest.mark.postgres
async def test_a_503_does_not_quote_the_driver(caplog: pytest.LogCaptureFixture) -> None:
    """The driver's message names the host and port: logged, never sent to the client."""
    url = "postgresql://root@127.0.0.1:1/nothing"  # nothing listens on port 1
    async with AsyncStore(url) as store:
        app = create_app(Settings(jwt_secret_key=SECRET), store=store)
        transport = httpx.ASGITransport(app=app)
        token = create_access_token("alice", secret=SECRET)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            with caplog.at_level("WARNING", logger="convostore"):
                response = await client.get(
                    "/v1/conversations", headers={"Authorization": f"Bearer {token}"}
                )
    assert_error(response, 503, "unavailable")
    message = response.json()["error"]["message"]
    assert "127.0.0.1" not in message and "port" not in message and "1/nothing" not in message
    assert "database is unavailable" in message
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # the detail is logged
