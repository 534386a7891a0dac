"""Every error the API returns, in one JSON shape, mapped from one table.

    {"error": {"code": "validation_error", "message": "title: must be ...", "field": "title",
               "type": "invalid_request_error", "param": "title"}}

``code`` is stable and machine-readable; ``message`` names the field; ``field`` is present
when one input is to blame. ``type`` and ``param`` (the same as ``field``) make it OpenAI's
error envelope too, so the official clients raise the matching ``BadRequestError``,
``NotFoundError``, ``AuthenticationError``... with this message. Store exceptions map to
statuses in :data:`STATUS_BY_ERROR`; invalid input is a 400, as OpenAI answers it (FastAPI's
own request validation too); unexpected exceptions become a 500 without a stack trace (it
is logged instead).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from convostore.errors import (
    ConflictError,
    ConvostoreError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from convostore.server.schemas import public_conversation_id

__all__ = ["STATUS_BY_ERROR", "ApiError", "ErrorBody", "ErrorResponse", "install_error_handlers"]

log = logging.getLogger("convostore.server")

#: The one table from store exceptions to HTTP statuses (checked in MRO order).
STATUS_BY_ERROR: dict[type[ConvostoreError], int] = {
    NotFoundError: 404,
    ValidationError: 400,
    ConflictError: 409,
    UnavailableError: 503,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code``, a message naming the field, and the field
    (also as OpenAI's ``param``, with OpenAI's ``type``)."""

    code: str
    message: str
    type: str = Field(description="OpenAI's error type, e.g. `invalid_request_error`.")
    field: str | None = None
    param: str | None = Field(default=None, description="The same as `field` (OpenAI's name).")
    #: With a 429: seconds until a retry can succeed (also the ``Retry-After`` header).
    retry_after: int | None = None


class ErrorResponse(BaseModel):
    """Every non-2xx response body."""

    error: ErrorBody


class ApiError(Exception):
    """An HTTP error raised by the server itself (auth, readiness, body size)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.headers, self.retry_after = field, headers, retry_after


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    """The JSON response for an error, in the one shape."""
    body: dict[str, Any] = {"code": code, "message": message, "type": error_type(status)}
    body["param"] = field
    if field is not None:
        body["field"] = field
    if retry_after is not None:
        body["retry_after"] = retry_after
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status."""
    if status >= 500:
        return "server_error"
    return _TYPE_BY_STATUS.get(status, "invalid_request_error")


def status_of(exc: ConvostoreError) -> int:
    """Look ``exc`` up in :data:`STATUS_BY_ERROR`; anything else is a server error."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "messages", 0, "content")`` -> ``"messages[0].content"``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


def describe_validation(errors: Sequence[Any]) -> tuple[str, str]:
    """(field, message) for the first of FastAPI's validation errors."""
    err = errors[0]
    field = field_path(err.get("loc", ()))
    msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    # Our models' own validators already name the field: "content: must not be empty".
    head, sep, rest = msg.partition(": ")
    if sep and head.isidentifier() and " " not in head:
        field = f"{field}.{head}" if field != "body" else head
        msg = rest
    if err.get("type") == "missing":
        msg = "is required"
    elif err.get("type") == "json_invalid":
        field, msg = "body", f"is not valid JSON ({err.get('ctx', {}).get('error', msg)})"
    return field, f"{field}: {msg}"


async def _convostore_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConvostoreError)
    status = status_of(exc)
    if status == 500:
        log.error("unexpected convostore error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")
    message = exc.message
    if isinstance(exc, NotFoundError) and exc.kind == "conversation":
        message = f"conversation {public_conversation_id(exc.ident)} not found"
    return error_response(status, exc.code, message, getattr(exc, "field", None))


async def _request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field, message = describe_validation(exc.errors())
    return error_response(400, "validation_error", message, field)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, exc.field, exc.headers, retry_after=exc.retry_after
    )


def method_table(app: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    """(path regex, "GET, POST") for every documented path, for correct ``Allow`` headers."""
    table = []
    for template, operations in app.openapi().get("paths", {}).items():
        regex, _, _ = compile_path(template)
        table.append((regex, ", ".join(sorted(m.upper() for m in operations))))
    return table


def query_table(app: FastAPI) -> list[tuple[re.Pattern[str], str, frozenset[str]]]:
    """(path regex, METHOD, documented query parameter names) for every operation."""
    table = []
    for template, operations in app.openapi().get("paths", {}).items():
        regex, _, _ = compile_path(template)
        for method, op in operations.items():
            names = frozenset(p["name"] for p in op.get("parameters", ()) if p.get("in") == "query")
            table.append((regex, method.upper(), names))
    return table


def allowed_methods(request: Request) -> str:
    """Every method served at this path (Starlette would list only the first route's)."""
    for regex, methods in getattr(request.app.state, "allowed_methods", ()):
        if regex.match(request.url.path):
            return str(methods)
    return ""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, "error" if status < 500 else "internal_error")
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    field = "body" if status == 413 else None
    headers = dict(exc.headers or {})
    if status == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return error_response(status, code, detail, field, headers=headers)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""
    app.add_exception_handler(ConvostoreError, _convostore_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route can return."""
    text = {
        400: "Invalid input (`error.field` and `error.param` name it), or a body that "
        "could not be decoded (e.g. not UTF-8 JSON).",
        401: "Missing, malformed, expired or wrongly signed bearer token, or an unknown or "
        "revoked API key.",
        403: "An `X-Convostore-User` header without an API key that may act for users.",
        404: "No such resource for this user (another user's looks exactly like a missing one).",
        409: "The request conflicts with stored data.",
        413: "Request body larger than the configured limit.",
        429: "Rate limit reached; retry after `Retry-After` seconds (also "
        "`error.retry_after`). Nothing of the request was done.",
        503: "The database is unreachable (or, with a JWKS, the identity provider's keys).",
    }
    if 401 in statuses:  # every authenticated route: the other outcomes of authentication
        statuses = tuple(sorted({*statuses, 403, 429, 503}))
    return {s: {"model": ErrorResponse, "description": text[s]} for s in statuses}
