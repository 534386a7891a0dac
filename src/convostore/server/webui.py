"""The history browser: static files at ``/ui/`` (``/`` redirects there), and in
``convostore serve --dev`` only, a one-click token for a chosen user id.

The page is public; everything it shows comes from the REST API with the bearer token the
person signed in with, so what one user can see is exactly what the API lets them see.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from convostore.config import Settings
from convostore.models import MAX_ID_LENGTH
from convostore.server.auth import create_access_token
from convostore.server.errors import ApiError

__all__ = ["DEV_ENV", "UI_DIR", "dev_mode_from_env", "install_ui"]

UI_DIR = Path(__file__).parent / "ui"
#: Set by ``convostore serve --dev`` for its workers (removed without ``--dev``); read from
#: the process environment only, never from a ``.env`` file.
DEV_ENV = "CONVOSTORE_SERVE_DEV"
#: Lifetime of a dev token (capped by CONVOSTORE_JWT_MAX_LIFETIME).
DEV_TOKEN_SECONDS = 3600


def dev_mode_from_env() -> bool:
    return os.environ.get(DEV_ENV) == "1"


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class _UiFiles(StaticFiles):
    """Static files that are never cached stale (the page and its script change together
    on an upgrade) and that tell browsers not to sniff types or be framed."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            # Nothing here takes a body: a path that is no file is simply not found (so a
            # POST to /ui/dev-token without --dev is a 404, as with any other unknown path).
            _full_path, stat = self.lookup_path(path)
            if stat is None:
                raise HTTPException(status_code=404)
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        return response


def _dev_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    def secret() -> str:
        key = settings.jwt_secret_key
        if key is None or not key.get_secret_value():
            raise ApiError(404, "not_found", "no JWT secret to mint a development token with")
        return key.get_secret_value()

    @router.get("/dev")
    async def dev_info() -> dict[str, Any]:
        """Tells the page that this server mints development tokens."""
        secret()
        return {"dev": True}

    @router.post("/dev-token")
    async def dev_token(body: DevTokenRequest) -> dict[str, Any]:
        """A token for any user id: development only (``convostore serve --dev``)."""
        lifetime = min(DEV_TOKEN_SECONDS, settings.jwt_max_lifetime)
        claims = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience}
        token = create_access_token(
            body.user_id,
            secret=secret(),
            algorithm=settings.jwt_algorithm,
            expires_in=lifetime,
            extra_claims={k: v for k, v in claims.items() if v is not None},
        )
        return {"token": token, "user_id": body.user_id, "expires_in": lifetime}

    return router


def install_ui(app: FastAPI, settings: Settings, *, dev: bool) -> None:
    """Serve the history browser; the dev token routes only when ``dev``."""

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(url="/ui/", status_code=307)

    @app.get("/ui", include_in_schema=False)
    async def ui_without_slash() -> RedirectResponse:
        return RedirectResponse(url="/ui/", status_code=307)

    if dev:
        app.include_router(_dev_router(settings))
    # After the routes above: a route is matched before the mount.
    app.mount("/ui", _UiFiles(directory=UI_DIR, html=True), name="ui")
