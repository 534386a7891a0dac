"""Dependency aliases for routes: ``StoreDep`` (the app's AsyncStore), ``CurrentUser``, and the
query parameters several routes share (``AfterCursor``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from convostore.errors import ValidationError
from convostore.schemas import MAX_CURSOR_LENGTH
from convostore.server.auth import bearer_scheme, user_from
from convostore.server.errors import ApiError
from convostore.store import AsyncStore

__all__ = [
    "AfterCursor",
    "CurrentUser",
    "StoreDep",
    "get_current_user",
    "get_store",
    "reject_unknown_query",
]


def get_store(request: Request) -> AsyncStore:
    """The store opened by the application's lifespan (or handed to ``create_app``)."""
    store: AsyncStore | None = request.app.state.store
    if store is None:
        raise ApiError(503, "unavailable", "the store is not open (application not started)")
    return store


def get_current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The user id from the bearer token; 401 otherwise."""
    return user_from(request, credentials)


def reject_unknown_query(request: Request) -> None:
    """A query parameter the operation does not document is a 422, not silently ignored
    (``?limt=5`` is a typo the client wants to hear about)."""
    if not request.query_params:
        return
    for regex, method, names in getattr(request.app.state, "query_params", ()):
        if method == request.method and regex.match(request.url.path):
            for name in request.query_params:
                if name not in names:
                    expected = ", ".join(sorted(names)) or "none"
                    raise ValidationError(
                        name or "query", f"unknown query parameter (expected: {expected})"
                    )
            return


StoreDep = Annotated[AsyncStore, Depends(get_store)]
CurrentUser = Annotated[str, Depends(get_current_user)]
#: The keyset cursor of a paged listing: the previous page's ``next_cursor``.
AfterCursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CURSOR_LENGTH,
        description="The `next_cursor` of the previous page.",
    ),
]
