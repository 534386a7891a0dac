"""``convostore db``: migrate, check and verify the schema."""

from __future__ import annotations

import typer
from rich.table import Table

from convostore import migrate
from convostore.cli._common import (
    DatabaseUrl,
    MigrationUrl,
    console,
    err_console,
    friendly_errors,
)
from convostore.db import make_engine
from convostore.verify import verify as run_verify

app = typer.Typer(help="Migrate, check and verify the database schema.", no_args_is_help=True)


@app.command()
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    database_url: MigrationUrl = None,
) -> None:
    """Apply the shipped migrations up to REVISION (default: head)."""
    with friendly_errors():
        engine = make_engine(migrate.migration_url(database_url))
        before = migrate.current(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current(engine)
        engine.dispose()
    console.print(f"database at revision [bold]{after}[/bold] (was {before or 'empty'})")


@app.command()
def downgrade(
    revision: str = typer.Argument("base", help="Target revision; 'base' removes all tables."),
    database_url: MigrationUrl = None,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Revert migrations down to REVISION (default: base, which drops convostore's tables)."""
    if not yes:
        typer.confirm(f"Downgrade to {revision}? Data in dropped tables is lost.", abort=True)
    with friendly_errors():
        engine = make_engine(migrate.migration_url(database_url))
        migrate.downgrade(engine, revision)
        after = migrate.current(engine)
        engine.dispose()
    console.print(f"database at revision [bold]{after or 'base'}[/bold]")


@app.command()
def current(database_url: DatabaseUrl = None) -> None:
    """Print the revision the database is at."""
    with friendly_errors():
        engine = make_engine(database_url)
        rev = migrate.current(engine)
        engine.dispose()
    console.print(f"current: {rev or 'empty'}; head: {migrate.head()}")


@app.command()
def check(database_url: DatabaseUrl = None) -> None:
    """Fail unless the database is at head and matches the models exactly (no drift)."""
    with friendly_errors():
        engine = make_engine(database_url)
        rev = migrate.current(engine)
        diffs = migrate.check(engine) if rev == migrate.head() else []
        engine.dispose()
    if rev != migrate.head():
        err_console.print(f"[red]not at head[/red]: at {rev or 'empty'}, head is {migrate.head()}")
        raise typer.Exit(1)
    if diffs:
        for d in diffs:
            err_console.print(f"[red]drift:[/red] {d}")
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: at head ({rev}), schema matches the models")


@app.command()
def verify(database_url: DatabaseUrl = None) -> None:
    """Run the schema checks on a live database and print a report (changes nothing)."""
    with friendly_errors():
        engine = make_engine(database_url)
        checks = run_verify(engine)
        engine.dispose()
    table = Table(title=f"convostore verify ({engine.url.render_as_string()})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for c in checks:
        table.add_row(c.name, "[green]ok[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
    console.print(table)
    failed = [c for c in checks if not c.ok]
    if failed:
        err_console.print(f"[red]{len(failed)} of {len(checks)} checks failed[/red]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(checks)} checks passed[/green]")
