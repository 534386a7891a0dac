"""``TCP_NODELAY`` on every accepted connection, on a listening socket bound as uvicorn's
``--workers`` mode binds it (protocol number 0, which asyncio skips)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from convostore.server.http import NoDelayHTTPProtocol, _Protocol


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request
    raise AssertionError("unreachable")


async def _nodelay_of(protocol_class: type[asyncio.Protocol]) -> int:
    config = uvicorn.Config(_app, host="127.0.0.1", port=0)
    listener = config.bind_socket()  # what `--workers N` hands to each worker
    assert listener.proto == 0
    listener.listen()  # asyncio's create_server does this in the worker
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=accepted)
        value = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        transport.close()
        return value
    finally:
        accepted.close()
        client.close()
        listener.close()


async def test_accepted_connections_get_tcp_nodelay() -> None:
    assert await _nodelay_of(NoDelayHTTPProtocol) != 0


async def test_uvicorns_own_protocol_does_not_on_such_a_socket() -> None:
    # The bug the class exists for; if uvicorn fixes it, this fails and the class can go.
    assert await _nodelay_of(_Protocol) == 0


def test_serve_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from convostore.cli import serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(serve, "_prepare_database", lambda url, migrate: None)
    monkeypatch.setenv("JWT_SECRET_KEY", "s" * 64)
    serve.serve(workers=2, database_url="sqlite://")
    assert seen["http"] is NoDelayHTTPProtocol and seen["workers"] == 2
