"""The application factory: ``create_app(settings)`` or ``create_app(store=...)``.

    uvicorn --factory convostore.server.app:create_app     # settings from the environment

The lifespan opens the :class:`~convostore.AsyncStore` (unless one is handed in, which
then stays the caller's to close). Without ``JWT_SECRET_KEY`` the factory refuses to build
an app: ``convostore serve --dev`` generates a throw-away secret for local use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from convostore import __version__
from convostore.config import Settings
from convostore.errors import ConfigurationError
from convostore.server.auth import check_secret
from convostore.server.deps import reject_unknown_query
from convostore.server.errors import install_error_handlers, method_table, query_table
from convostore.server.limits import BodySizeLimitMiddleware
from convostore.server.routes import api_router
from convostore.store import AsyncStore

__all__ = ["create_app"]

DESCRIPTION = """\
The conversation database behind a stateless AI chat endpoint.

Authenticate with `Authorization: Bearer <JWT>` (HS256 by default, signed with
`JWT_SECRET_KEY`; the `sub` claim is the user id). Every read and write is scoped to that
user: another user's conversation answers 404, exactly like a missing one.

Errors always look like
`{"error": {"code": "validation_error", "message": "title: ...", "field": "title"}}`.
"""


def create_app(settings: Settings | None = None, *, store: AsyncStore | None = None) -> FastAPI:
    """Build the API. ``store``: serve this (already open) store instead of opening one."""
    settings = settings if settings is not None else Settings()
    if settings.jwt_secret_key is None or not settings.jwt_secret_key.get_secret_value():
        raise ConfigurationError(
            "JWT_SECRET_KEY is not set: the server will not start without a secret to verify "
            "tokens (for local development run `convostore serve --dev`)"
        )
    check_secret(settings.jwt_secret_key.get_secret_value(), settings.jwt_algorithm)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            yield
            return
        opened = AsyncStore(
            settings.database_url,
            read_urls=settings.database_read_urls,
            direct_url=settings.database_direct_url,
            replica_wait_timeout=settings.replica_wait_timeout,
            max_content_length=settings.max_content_length,
        )
        app.state.store = opened
        try:
            yield
        finally:
            app.state.store = None
            await opened.aclose()

    app = FastAPI(
        title="convostore",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.store = store
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={"/v1/import": settings.max_import_bytes},
    )
    app.include_router(api_router)
    app.state.allowed_methods = method_table(app)
    app.state.query_params = query_table(app)
    return app
