"""The REST service: FastAPI over :class:`convostore.AsyncStore`, JWT bearer auth.

    from convostore.server import create_app

    app = create_app()          # settings from the environment (DATABASE_URL, JWT_SECRET_KEY)
    # uvicorn "convostore.server:create_app" --factory

Needs the ``server`` extra (``pip install 'convostore[server]'``); importing this package
without it raises :class:`convostore.errors.MissingExtraError` naming the extra.
"""

from __future__ import annotations

from convostore.errors import require_extra

for _module in ("fastapi", "jwt", "uvicorn"):
    require_extra(_module, "server", "The REST server")

from convostore.server.app import create_app  # noqa: E402

__all__ = ["create_app"]
