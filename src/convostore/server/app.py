"""The application factory: ``create_app(settings)`` or ``create_app(store=...)``.

    uvicorn --factory convostore.server.app:create_app     # settings from the environment

The lifespan opens the :class:`~convostore.AsyncStore` (unless one is handed in, which
then stays the caller's to close). Without ``JWT_SECRET_KEY`` or ``CONVOSTORE_JWKS_URL`` the
factory refuses to build an app: ``convostore serve --dev`` generates a throw-away secret
for local use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from convostore import __version__
from convostore.config import Settings
from convostore.server.auth import Authenticator
from convostore.server.deps import reject_unknown_query
from convostore.server.errors import install_error_handlers, method_table, query_table
from convostore.server.limits import BodySizeLimitMiddleware
from convostore.server.ratelimit import RateLimiter
from convostore.server.routes import api_router
from convostore.server.webui import dev_mode_from_env, install_ui
from convostore.store import AsyncStore

__all__ = ["create_app"]

log = logging.getLogger("convostore.purge")

DESCRIPTION = """\
The conversation database behind a stateless AI chat endpoint.

Authenticate with `Authorization: Bearer <JWT>` (HS256 signed with `JWT_SECRET_KEY`, or a
token of the identity provider whose JWKS is configured; the `sub` claim is the user id by
default), or `Authorization: Bearer csk_...` with an API key (a key that may act for users
names the user in `X-Convostore-User`). Every read and write is scoped to that user: another
user's conversation answers 404, exactly like a missing one. Reads and writes are rate
limited per user and per key (429 with `Retry-After`).

Errors always look like `{"error": {"code": "validation_error", "message": "title: ...",
"field": "title", "type": "invalid_request_error", "param": "title"}}` (OpenAI's envelope
too); invalid input is a 400.

The OpenAI Conversations API is served here too (`/v1/conversations`, `.../items`): point
the official clients at `base_url=http://host:port/v1` with the token as `api_key`.
"""


def create_app(
    settings: Settings | None = None, *, store: AsyncStore | None = None, dev: bool | None = None
) -> FastAPI:
    """Build the API. ``store``: serve this (already open) store instead of opening one.
    ``dev``: also mint development tokens for the history browser (default: whether
    ``convostore serve --dev`` started this process)."""
    settings = settings if settings is not None else Settings()
    # Both refuse a bad configuration here, before anything is served.
    authenticator = Authenticator(settings)
    rate_limiter = RateLimiter(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            async with _purging(store, settings.purge_every):
                yield
            return
        opened = AsyncStore(
            settings.database_url,
            read_urls=settings.database_read_urls,
            direct_url=settings.database_direct_url,
            replica_wait_timeout=settings.replica_wait_timeout,
            max_content_length=settings.max_content_length,
            stream_lease_seconds=settings.stream_lease_seconds,
            retention=settings.retention,
            temporary_retention=settings.temporary_retention,
        )
        app.state.store = opened
        try:
            async with _purging(opened, settings.purge_every):
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
    app.state.authenticator = authenticator
    app.state.rate_limiter = rate_limiter
    app.state.store = store
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={"/v1/import": settings.max_import_bytes},
    )
    app.include_router(api_router)
    install_ui(app, settings, dev=dev_mode_from_env() if dev is None else dev)
    app.state.allowed_methods = method_table(app)
    app.state.query_params = query_table(app)
    return app


async def purge_forever(store: AsyncStore, minutes: float) -> None:
    """Purge expired conversations every ``minutes`` (``serve --purge-every``).

    A failed run is logged and retried at the next tick; several workers (or servers)
    doing this at once is safe: each batch skips the rows another purger holds.
    """
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            report = await store.purge_expired()
        except Exception:  # never let one bad run stop the loop (or the server)
            log.exception("background purge failed")
            continue
        if report.conversations:
            log.info(
                "purged %d expired conversations (%d messages)",
                report.conversations,
                report.messages,
            )


@asynccontextmanager
async def _purging(store: AsyncStore, minutes: float | None) -> AsyncIterator[None]:
    if not minutes:
        yield
        return
    task = asyncio.create_task(purge_forever(store, minutes), name="convostore-purge")
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
