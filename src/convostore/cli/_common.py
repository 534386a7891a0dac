"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import exc as sa_exc

from convostore.errors import ConvostoreError

console = Console()
err_console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        help="Database URL (postgresql://..., sqlite:///file.db). Default: ./convostore.db",
        show_default=False,
    ),
]

#: The cursor of a paged listing, as the previous page printed it.
After = Annotated[str | None, typer.Option(help="Cursor printed at the end of the previous page.")]

#: For migrations: DATABASE_DIRECT_URL first, so they bypass a pooler in DATABASE_URL.
MigrationUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar=["DATABASE_DIRECT_URL", "DATABASE_URL"],
        help="Database URL to migrate (default: DATABASE_DIRECT_URL, else DATABASE_URL, else "
        "./convostore.db); never a pooled one.",
        show_default=False,
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Print convostore errors as one red line and exit 1, never a stack trace."""
    try:
        yield
    except ConvostoreError as exc:
        # Escaped: messages name fields like "messages[0].content", which rich reads as markup.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except sa_exc.SQLAlchemyError as exc:
        # Unreachable server, unmigrated database, ...: the driver's first line says which.
        cause = getattr(exc, "orig", None) or exc
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        err_console.print(f"[red]database error:[/red] {escape(detail)}")
        if "no such table" in detail or "does not exist" in detail:
            err_console.print("is the schema migrated? run `convostore db upgrade`")
        raise typer.Exit(1) from None
