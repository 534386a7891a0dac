"""Bound the request body: Content-Length is checked up front, the stream as it arrives."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from convostore.server.errors import error_response

__all__ = ["BodySizeLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit.

    An ``HTTPException`` on purpose: FastAPI re-raises those from its body read (anything
    else becomes a 400), so the app's error handlers answer with the usual 413 JSON.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: must be at most {limit} bytes")


def _reply_too_large(limit: int) -> ASGIApp:
    return error_response(
        413, "payload_too_large", f"body: must be at most {limit} bytes", field="body"
    )


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: reject bodies over ``max_bytes`` with 413 before reading them.

    ``per_path`` gives some paths their own limit (the import upload is far larger than
    any JSON request).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await _reply_too_large(limit)(scope, receive, send)
                    return
                if declared < 0:
                    await error_response(400, "bad_request", "invalid Content-Length header")(
                        scope, receive, send
                    )
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app's body read: the app's handlers turn it into a 413.
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Only reached if the app let it escape (e.g. a route reading the raw stream).
            if started:
                raise
            await _reply_too_large(limit)(scope, receive, send)
