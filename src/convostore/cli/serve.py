"""``convostore serve`` (the REST service) and ``convostore token`` (mint a JWT)."""

from __future__ import annotations

import copy
import os
import secrets
from typing import Annotated, Any

import typer

from convostore.cli._common import DatabaseUrl, console, err_console, friendly_errors
from convostore.config import Settings
from convostore.errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEV_USER = "alice"


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    migrate: Annotated[
        bool, typer.Option("--migrate", help="Bring the schema to head before serving.")
    ] = False,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Development: without JWT_SECRET_KEY, generate a random secret for this process; "
            "the history browser (/ui/) mints a token for any user id in one click.",
        ),
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart on code changes (development only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    purge_every: Annotated[
        int | None,
        typer.Option(
            "--purge-every",
            min=1,
            metavar="MINUTES",
            help="Purge expired conversations in the background every MINUTES "
            "(CONVOSTORE_PURGE_EVERY).",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the REST API (FastAPI on uvicorn). Needs JWT_SECRET_KEY or CONVOSTORE_JWKS_URL,
    unless --dev."""
    with friendly_errors():
        import uvicorn

        from convostore.server.auth import Authenticator, check_algorithm
        from convostore.server.ratelimit import RateLimiter
        from convostore.server.webui import DEV_ENV

        if database_url:
            os.environ["DATABASE_URL"] = database_url
        if purge_every is not None:
            # Workers and the reloader are child processes: they read it from the environment.
            os.environ["CONVOSTORE_PURGE_EVERY"] = str(purge_every)
        # The history browser's one-click token exists only under --dev (its workers and
        # the reloader read this from the environment; an inherited value never counts).
        if dev:
            os.environ[DEV_ENV] = "1"
        else:
            os.environ.pop(DEV_ENV, None)
        settings = Settings()
        check_algorithm(settings.jwt_algorithm)
        generated: str | None = None
        has_secret = settings.jwt_secret_key is not None and bool(
            settings.jwt_secret_key.get_secret_value()
        )
        if not has_secret and not settings.jwks_url:
            if not dev:
                raise ConfigurationError(
                    "JWT_SECRET_KEY is not set: refusing to start without a secret to verify "
                    "tokens. Set it (e.g. `export JWT_SECRET_KEY=$(openssl rand -hex 32)`), "
                    "set CONVOSTORE_JWKS_URL to your identity provider's keys, "
                    "or pass --dev for a throw-away secret"
                )
            generated = secrets.token_hex(32)
            # Workers and the reloader are child processes: they read it from the environment.
            os.environ["JWT_SECRET_KEY"] = generated
            settings = Settings()
        # Every auth and rate-limit setting is checked here, with a readable error.
        Authenticator(settings)
        RateLimiter(settings)
        _prepare_database(settings.database_url, migrate, settings.database_direct_url)
    url = f"http://{host}:{port}"
    console.print(f"convostore serving [bold]{url}[/bold]  (API docs: {url}/docs)")
    console.print(f"history browser: [bold]{url}/ui/[/bold]")
    if generated is not None:
        console.print(
            "[yellow]--dev:[/yellow] generated a random JWT secret for this process. "
            "To mint a token, in another shell:"
        )
        typer.echo(f"  export JWT_SECRET_KEY={generated}")
    elif settings.jwt_secret_key is not None and settings.jwt_secret_key.get_secret_value():
        typer.echo("Mint a token (uses JWT_SECRET_KEY):")
    else:
        typer.echo(f"Tokens of the identity provider at {settings.jwks_url}, or an API key:")
        typer.echo(f'  curl -H "Authorization: Bearer $TOKEN" {url}/v1/conversations')
    if settings.jwt_secret_key is not None and settings.jwt_secret_key.get_secret_value():
        typer.echo(f"  TOKEN=$(convostore token --user {DEV_USER})")
        typer.echo(f'  curl -H "Authorization: Bearer $TOKEN" {url}/v1/conversations')
    uvicorn.run(
        "convostore.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        log_level=log_level,
        log_config=_log_config(),
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus convostore's own loggers at INFO on the same handler (so the
    requests an API key makes for a user are in the server log, as the docs promise)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["convostore"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _prepare_database(url: str, migrate: bool, direct_url: str | None = None) -> None:
    """Migrate once, here, before any worker starts; otherwise warn if not at head.

    Migrations take ``direct_url`` (DATABASE_DIRECT_URL) when set: never a pooler."""
    from convostore import migrate as migrations
    from convostore.db import make_engine

    engine = make_engine(direct_url or url if migrate else url)
    try:
        if migrate:
            migrations.upgrade(engine)
            console.print(f"database migrated to [bold]{migrations.head()}[/bold]")
        elif migrations.current(engine) != migrations.head():
            err_console.print(
                "[yellow]warning:[/yellow] the database is not at the newest schema; "
                "run `convostore db upgrade` or pass --migrate"
            )
    finally:
        engine.dispose()


def token(
    user: Annotated[str, typer.Option("--user", help="User id to put in the token's `sub`.")],
    expires_in: Annotated[
        int, typer.Option("--expires-in", min=1, help="Lifetime in seconds.")
    ] = 3600,
) -> None:
    """Print a JWT for USER signed with JWT_SECRET_KEY (for curl and local testing)."""
    with friendly_errors():
        from convostore.server.auth import create_access_token

        settings = Settings()
        if settings.jwt_secret_key is None or not settings.jwt_secret_key.get_secret_value():
            raise ConfigurationError(
                "JWT_SECRET_KEY is not set (`convostore serve --dev` prints the one it generated)"
            )
        if expires_in > settings.jwt_max_lifetime:
            raise ConfigurationError(
                f"--expires-in: the server refuses tokens living over "
                f"{settings.jwt_max_lifetime} s (CONVOSTORE_JWT_MAX_LIFETIME)"
            )
        # What the server checks when configured, so the token passes those checks too.
        claims = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience}
        minted = create_access_token(
            user,
            secret=settings.jwt_secret_key.get_secret_value(),
            algorithm=settings.jwt_algorithm,
            expires_in=expires_in,
            extra_claims={k: v for k, v in claims.items() if v is not None},
        )
    typer.echo(minted)
