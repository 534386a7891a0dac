"""Dependency aliases for routes: ``StoreDep`` (the app's AsyncStore), ``CurrentUser``, and the
query parameters several routes share (``AfterCursor``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from convostore.errors import ValidationError
from convostore.schemas import MAX_CURSOR_LENGTH
from convostore.server.auth import Authenticator, Principal, bearer_scheme
from convostore.server.errors import ApiError
from convostore.server.ratelimit import RateLimiter, is_write
from convostore.store import AsyncStore

__all__ = [
    "AfterCursor",
    "CurrentUser",
    "StoreDep",
    "get_current_user",
    "get_principal",
    "get_store",
    "reject_unknown_query",
]


def get_store(request: Request) -> AsyncStore:
    """The store opened by the application's lifespan (or handed to ``create_app``)."""
    store: AsyncStore | None = request.app.state.store
    if store is None:
        raise ApiError(503, "unavailable", "the store is not open (application not started)")
    return store


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Who the request is from (bearer JWT or API key; 401 otherwise), counted against the
    rate limits (429 before the route runs, so nothing past a limit is done)."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.principal(request, credentials, get_store(request))
    limiter: RateLimiter = request.app.state.rate_limiter
    write = is_write(request.method)
    if principal.key is not None:
        await limiter.hit("key", f"key:{principal.key.id}", write)
    # A backend acting for users: each user still gets no more than the per-user limits.
    if principal.key is None or principal.key.can_act_for_users:
        await limiter.hit("user", f"user:{principal.user_id}", write)
    request.state.principal = principal
    return principal


async def get_current_user(principal: Annotated[Principal, Depends(get_principal)]) -> str:
    """The user id the request acts for."""
    return principal.user_id


def reject_unknown_query(request: Request) -> None:
    """A query parameter the operation does not document is a 400, not silently ignored
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
