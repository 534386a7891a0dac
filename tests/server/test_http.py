"""``TCP_NODELAY`` on every accepted connection with ``--workers N``.

uvicorn binds the listening socket itself in that mode, and asyncio sets ``TCP_NODELAY``
only on accepted sockets whose protocol is ``IPPROTO_TCP``. Before uvicorn 0.55 the socket
had protocol number 0, so every keep-alive response waited for the client's delayed ACK,
about 40 ms per request (uvicorn issue #3149); ``uvicorn>=0.55`` is the floor for this.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request
    raise AssertionError("unreachable")


async def test_a_socket_bound_for_workers_gives_connections_tcp_nodelay() -> None:
    config = uvicorn.Config(_app, host="127.0.0.1", port=0)
    listener = config.bind_socket()  # what `--workers N` hands to each worker
    assert listener.proto == socket.IPPROTO_TCP
    listener.listen()  # asyncio's create_server does this in the worker
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        protocol = H11Protocol(config=config, server_state=ServerState(), app_state={})
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=accepted)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
    finally:
        accepted.close()
        client.close()
        listener.close()


def test_serve_passes_the_workers_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    from convostore.cli import serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(serve, "_prepare_database", lambda url, migrate, direct=None: None)
    monkeypatch.setenv("JWT_SECRET_KEY", "s" * 64)
    serve.serve(workers=2, database_url="sqlite://")
    assert seen["workers"] == 2 and seen["factory"] is True
