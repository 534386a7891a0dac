"""The request body limit (``server/limits.py``) at its boundary, sized and chunked, both
in-process and behind a real socket (uvicorn's own HTTP parsing in front of it)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.realserver import running_server
from tests.server.conftest import SECRET, Auth, assert_error

LIMIT = 4096


def body_of(size: int) -> bytes:
    """A valid conversation-create body of exactly ``size`` bytes (the padding in a
    message's metadata: a conversation's is limited to OpenAI's 16 short pairs)."""

    def create(pad: str) -> bytes:
        message = {"role": "user", "content": "hi", "metadata": {"pad": pad}}
        return json.dumps({"title": "t", "messages": [message]}).encode()

    body = create("x" * (size - len(create(""))))
    assert len(body) == size
    return body


def chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("limits")
    url = f"sqlite:///{workdir / 'limits.db'}"
    env = {"CONVOSTORE_MAX_BODY_BYTES": str(LIMIT)}
    with running_server(Path(workdir), url, secret=SECRET, env=env) as base:
        yield base


@pytest.mark.parametrize("streamed", [False, True], ids=["sized", "chunked"])
def test_the_limit_behind_a_real_socket(server: str, auth: Auth, streamed: bool) -> None:
    def post(size: int) -> httpx.Response:
        body = body_of(size)
        headers = {**auth(), "Content-Type": "application/json"}
        content = chunked(body) if streamed else body
        response = httpx.post(f"{server}/v1/conversations", content=content, headers=headers)
        sent = response.request.headers
        assert ("transfer-encoding" in sent) == streamed and ("content-length" in sent) != streamed
        return response

    before = len(httpx.get(f"{server}/v1/conversations", headers=auth()).json()["data"])
    assert post(LIMIT).status_code == 201
    over = post(LIMIT + 1)
    assert_error(over, 413, "payload_too_large", "body")
    assert f"at most {LIMIT} bytes" in over.json()["error"]["message"]
    assert_error(post(2 * LIMIT), 413, "payload_too_large", "body")
    after = httpx.get(f"{server}/v1/conversations", headers=auth()).json()["data"]
    assert len(after) == before + 1  # only the body at the limit was stored


async def test_the_limit_in_process_at_the_boundary(client: httpx.AsyncClient, auth: Auth) -> None:
    limit = 64 * 1024  # the ``settings`` fixture's limit
    headers = {**auth(), "Content-Type": "application/json"}
    for streamed in (False, True):
        for size, status in ((limit, 201), (limit + 1, 413)):
            body = body_of(size)
            content = stream(body) if streamed else body
            response = await client.post("/v1/conversations", content=content, headers=headers)
            assert ("content-length" in response.request.headers) != streamed
            assert response.status_code == status, (streamed, size, response.text)


async def stream(body: bytes) -> AsyncIterator[bytes]:
    for part in chunked(body, 8192):
        yield part


@pytest.mark.parametrize("value", ["abc", "-5", "1.5"])
async def test_an_invalid_content_length_is_a_400(
    client: httpx.AsyncClient, auth: Auth, value: str
) -> None:
    headers = {**auth(), "Content-Type": "application/json", "Content-Length": value}
    response = await client.post("/v1/conversations", content=b"{}", headers=headers)
    assert_error(response, 400, "bad_request")
    assert (await client.get("/v1/conversations", headers=auth())).json()["data"] == []


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """The Content-Length check answers up front: the (short) body is never looked at."""
    limit = 64 * 1024
    headers = {**auth(), "Content-Type": "application/json", "Content-Length": str(limit + 1)}
    response = await client.post("/v1/conversations", content=b'{"title": "t"}', headers=headers)
    assert_error(response, 413, "payload_too_large", "body")


def test_a_long_system_prompt_fits_a_post_but_not_a_url(server: str, auth: Auth) -> None:
    """The limit docs/rest.md states: uvicorn refuses a request head of over 16 KiB that it
    has not yet read whole, in plain text, before convostore sees it; so long values belong
    in ``POST /history``'s body."""
    created = httpx.post(f"{server}/v1/conversations", json={"title": "t"}, headers=auth())
    path = f"/v1/conversations/{created.json()['id']}/history"
    prompt = "p" * 3000  # the 4 KiB body limit of this server holds it
    assert httpx.post(server + path, json={"system_prompt": prompt}, headers=auth()).is_success
    assert httpx.get(server + path, params={"system_prompt": prompt}, headers=auth()).is_success
    # A head of 20 KiB that has not ended yet (no blank line): uvicorn gives up at 16 KiB.
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET {path}?system_prompt={'p' * 20_000} HTTP/1.1\r\nHost: x\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.decode("latin-1").lower()
    assert head.startswith("http/1.1 400") and "content-type: text/plain" in head
