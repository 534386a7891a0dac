"""uvicorn's HTTP protocol with ``TCP_NODELAY`` on every connection, whatever the socket.

With ``--workers N`` uvicorn binds the listening socket itself with protocol number 0, and
asyncio only sets ``TCP_NODELAY`` on accepted sockets whose protocol is ``IPPROTO_TCP``:
each keep-alive response then waits for the client's delayed ACK (Nagle), about 40 ms per
request (uvicorn issue #3149). One worker is unaffected (asyncio binds that socket).
"""

from __future__ import annotations

import asyncio
import socket

try:  # the implementation uvicorn's "auto" would pick
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol  # type: ignore[assignment]

__all__ = ["NoDelayHTTPProtocol"]


class NoDelayHTTPProtocol(_Protocol):
    """Sets ``TCP_NODELAY`` on the connection, then behaves as uvicorn's own protocol."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the peer is already gone: uvicorn handles the closed transport
                pass
        super().connection_made(transport)
